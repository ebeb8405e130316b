"""Cached heatmaps -> pictures for the browser and the ZIP: overlay, colour scale, encoding.

Runs no model: everything here starts from the entries `work.compute` left in the cache, so
the display options (colormap, opacity, overlay or heatmap only, per-map or shared scale) only
cost a resize, a blend and a JPEG encode per figure (a few ms).
"""
from __future__ import annotations

import base64
import math

import cv2
import numpy as np

from callbacks.store import StoredImage
from callbacks.outlines import outlines
from explain import METHODS
from explain.render import colorize, encode_image, overlay
from layouts.figures import Panel, coarse

#: Bytes of JPEG per figure we aim under (base64 adds a third): keeps each figure's JSON < 200 KB.
JPEG_BUDGET = 120_000


def jpeg_uri(image: np.ndarray, budget: int = JPEG_BUDGET) -> str:
    """The best-quality JPEG under `budget` bytes (quality steps down, then the size)."""
    while True:
        for quality in (88, 78, 65, 50):
            data = encode_image(image, "jpeg", quality=quality)
            if len(data) <= budget:
                return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        h, w = image.shape[:2]
        image = cv2.resize(image, (max(1, w * 3 // 4), max(1, h * 3 // 4)), interpolation=cv2.INTER_AREA)


def peak(entry: dict) -> float:
    """The map's positive maximum in its own units (what per-map scaling divides by)."""
    raw = np.asarray(entry["raw"], np.float32)
    finite = raw[np.isfinite(raw)]
    return float(max(finite.max(), 0.0)) if finite.size else 0.0


def shared_factors(entries: dict[str, dict]) -> dict[str, float]:
    """Per method, its peak over the largest peak of its scale group (declared: maps of one group
    share units, e.g. activation x gradient for the CAMs). Maps of no group keep their own scale."""
    peaks = {m: peak(e) for m, e in entries.items() if "error" not in e and METHODS[m].scale_group}
    top: dict[str, float] = {}
    for m, p in peaks.items():
        group = METHODS[m].scale_group
        top[group] = max(top.get(group, 0.0), p)
    return {m: (p / top[METHODS[m].scale_group] if top[METHODS[m].scale_group] > 0 else 1.0)
            for m, p in peaks.items()}


def display_heatmap(entry: dict, size: tuple[int, int], factor: float = 1.0) -> np.ndarray:
    """The entry's [0, 1] heatmap at `size` (w, h), times its shared-scale factor."""
    heatmap = np.asarray(entry["heatmap"], np.float32)
    if heatmap.shape[::-1] != tuple(size):
        heatmap = cv2.resize(heatmap, size, interpolation=cv2.INTER_AREA)
    return np.clip(heatmap * factor, 0, 1)


def picture(base: np.ndarray, heatmap: np.ndarray, colormap: str, opacity: float, view: str) -> np.ndarray:
    return colorize(heatmap, colormap) if view == "heatmap" else overlay(base, heatmap, colormap, opacity)


def subtitle(entry: dict, label: str | None) -> str:
    """How long it took, and for which class (class-agnostic maps have none)."""
    seconds = entry.get("seconds", 0.0)
    when = "< 1 ms (shared pass)" if seconds < 5e-4 else f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
    target = f" · {label}" if label and METHODS[entry["method"]].needs_target else ""
    return when + target


def panel(stored: StoredImage, entry: dict, display: dict, labels: list[str], factor: float,
          revision: str) -> Panel:
    method = entry["method"]
    name = METHODS[method].name
    label = labels[entry["target"]] if 0 <= entry.get("target", -1) < len(labels) else None
    if entry.get("extra", {}).get("maps") is not None:   # a grid of channel maps (activations)
        return activation_panel(entry, display, name, revision)
    base = stored.display
    h, w = base.shape[:2]
    heatmap = display_heatmap(entry, (w, h), factor)
    shown = picture(base, heatmap, display["cmap"], display["opacity"], display["view"])
    width, height = stored.image.shape[1], stored.image.shape[0]
    warnings = list(entry.get("warnings", []))
    if factor < 0.25:  # on the shared scale, say why the map looks faint
        warnings.insert(0, f"shared scale: this map's peak is {factor:.0%} of the largest in its family")
    return Panel(method=method, title=name, subtitle=subtitle(entry, label), image_uri=jpeg_uri(shown),
                 width=width, height=height, shown_width=w, shown_height=h, hover=coarse(heatmap),
                 colormap=display["cmap"], warnings=warnings, filename=f"camlens-{method}", revision=revision,
                 outlines=outlines(entry.get("extra", {}), (width, height)))


def mosaic(maps: np.ndarray, tile: int, gap: int = 2) -> tuple[np.ndarray, int, int]:
    """(K, h, w) maps, each stretched to [0, 1], in a near-square grid of `tile`-px tiles, NaN gaps."""
    k = len(maps)
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    out = np.full((rows * (tile + gap) - gap, cols * (tile + gap) - gap), np.nan, np.float32)
    for i, m in enumerate(maps):
        lo, hi = float(np.min(m)), float(np.max(m))
        norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        r, c = divmod(i, cols)
        out[r * (tile + gap): r * (tile + gap) + tile, c * (tile + gap): c * (tile + gap) + tile] = \
            cv2.resize(norm.astype(np.float32), (tile, tile), interpolation=cv2.INTER_NEAREST)
    return out, rows, cols


def activation_panel(entry: dict, display: dict, name: str, revision: str) -> Panel:
    """The strongest feature maps of the layer as a grid; hover names the channel."""
    maps = np.asarray(entry["extra"]["maps"], np.float32)
    channels = entry["extra"].get("channels", list(range(len(maps))))
    k = len(maps)
    cols = math.ceil(math.sqrt(k))
    tile = max(16, min(160, (640 // cols) - 2))
    grid, rows, cols = mosaic(maps, tile)
    picture_ = colorize(np.nan_to_num(grid, nan=0.0), display["cmap"])
    picture_[np.isnan(grid)] = 255
    height, width = grid.shape
    # Hover: a few cells per tile, each naming its channel.
    per = 4
    hover = np.full((rows * per, cols * per), np.nan)
    text = [["" for _ in range(cols * per)] for _ in range(rows * per)]
    for i in range(k):
        r, c = divmod(i, cols)
        block = grid[r * (tile + 2): r * (tile + 2) + tile, c * (tile + 2): c * (tile + 2) + tile]
        hover[r * per:(r + 1) * per, c * per:(c + 1) * per] = coarse(block, per)[:per, :per]
        for y in range(r * per, (r + 1) * per):
            for x in range(c * per, (c + 1) * per):
                text[y][x] = f"channel {channels[i]}"
    return Panel(method=entry["method"], title=name, subtitle=f"{k} strongest channels · {entry['layer']}",
                 image_uri=jpeg_uri(picture_), width=width, height=height, shown_width=width,
                 shown_height=height, hover=hover, hover_text=text, hover_label="activation",
                 colormap=display["cmap"], warnings=list(entry.get("warnings", [])),
                 filename=f"camlens-{entry['method']}", revision=revision)


def full_picture(stored: StoredImage, entry: dict, display: dict, factor: float = 1.0) -> np.ndarray:
    """Full-resolution picture of one result for the ZIP (activations: the feature-map grid)."""
    if entry.get("extra", {}).get("maps") is not None:
        grid, _, _ = mosaic(np.asarray(entry["extra"]["maps"], np.float32), 128)
        out = colorize(np.nan_to_num(grid, nan=0.0), display["cmap"])
        out[np.isnan(grid)] = 255
        return out
    h, w = stored.image.shape[:2]
    heatmap = display_heatmap(entry, (w, h), factor)
    return picture(stored.image, heatmap, display["cmap"], display["opacity"], display["view"])
