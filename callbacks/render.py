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
from explain import METHODS, captions
from explain.errors import ExplainError
from explain.render import COLORMAPS, colorize, colorize_signed, encode_image, overlay, overlay_signed
from explain.result import signed_map
from layouts.figures import Panel, coarse, wrap

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


#: The diverging colour map signed entries are drawn with when the display's "signed" is on.
SIGNED_COLORMAP = "rdbu"


def drawn_signed(entry: dict, display: dict) -> bool:
    """Whether this entry is drawn as a signed map (-1..1, diverging colours)."""
    return bool(display.get("signed")) and bool(entry.get("signed"))


def peak(entry: dict, signed: bool = False) -> float:
    """The map's maximum in its own units (what per-map scaling divides by): the positive maximum,
    or the largest |value| for a map shown by its size ("magnitude") or drawn signed."""
    raw = signed_map(entry["raw"], entry.get("extra")) if signed else np.asarray(entry["raw"], np.float32)
    finite = raw[np.isfinite(raw)]
    if signed or entry.get("mode") == "magnitude":
        finite = np.abs(finite)
    return float(max(finite.max(), 0.0)) if finite.size else 0.0


def shared_factors(entries: dict[str, dict], display: dict | None = None) -> dict[str, float]:
    """Per method, its peak over the largest peak of its scale group (declared: maps of one group
    share units, e.g. activation x gradient for the CAMs). Maps of no group keep their own scale."""
    display = display or {}
    peaks = {m: peak(e, drawn_signed(e, display)) for m, e in entries.items()
             if "error" not in e and METHODS[m].scale_group}
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


def display_signed(entry: dict, size: tuple[int, int], factor: float = 1.0) -> np.ndarray:
    """The entry's signed map at `size` (w, h) in [-1, 1]: raw / max |raw|, times its shared-scale
    factor (0 stays 0: blue is evidence against, red for)."""
    raw = signed_map(entry["raw"], entry.get("extra"))
    raw = np.where(np.isfinite(raw), raw, 0).astype(np.float32)
    scale = float(np.abs(raw).max()) if raw.size else 0.0
    values = raw / scale if scale > 0 else np.zeros_like(raw)
    if values.shape[::-1] != tuple(size):
        shrink = size[0] < values.shape[1] or size[1] < values.shape[0]
        values = cv2.resize(values, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.clip(values * factor, -1, 1)


def clean_display(cmap, opacity, view, scale, signed=False) -> dict:
    """The display options as sent by the browser, checked: a value the page cannot send (a forged
    request) raises ExplainError with a plain reason instead of failing deeper down."""
    cmap = cmap or "jet"
    if cmap not in COLORMAPS:
        raise ExplainError(f"Unknown colormap {cmap!r}: choose one of {', '.join(COLORMAPS)}.")
    try:
        opacity = 0.5 if opacity is None else float(opacity)
    except (TypeError, ValueError):
        raise ExplainError(f"Opacity must be a number from 0 to 1, not {opacity!r}.") from None
    if not 0 <= opacity <= 1:   # also NaN
        raise ExplainError(f"Opacity must be a number from 0 to 1, not {opacity!r}.")
    view, scale = view or "overlay", scale or "map"
    if view not in ("overlay", "heatmap") or scale not in ("map", "shared"):
        raise ExplainError(f"Unknown view {view!r} or colour scale {scale!r}.")
    return {"cmap": cmap, "opacity": opacity, "view": view, "scale": scale, "signed": bool(signed)}


def picture(base: np.ndarray, heatmap: np.ndarray, colormap: str, opacity: float, view: str,
            signed: bool = False) -> np.ndarray:
    if signed:
        return colorize_signed(heatmap, SIGNED_COLORMAP) if view == "heatmap" else \
            overlay_signed(base, heatmap, SIGNED_COLORMAP, opacity)
    return colorize(heatmap, colormap) if view == "heatmap" else overlay(base, heatmap, colormap, opacity)


def shown(base: np.ndarray, entry: dict, display: dict, factor: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """(picture, the values drawn at the picture's size, drawn signed) for one entry on `base`."""
    h, w = base.shape[:2]
    signed = drawn_signed(entry, display)
    values = display_signed(entry, (w, h), factor) if signed else display_heatmap(entry, (w, h), factor)
    return picture(base, values, display["cmap"], display["opacity"], display["view"], signed), values, signed


def when(entry: dict) -> str:
    """How long the map took (and the fused layers): the figure's small print, not its caption."""
    seconds = entry.get("seconds", 0.0)
    text = "< 1 ms (shared pass)" if seconds < 5e-4 else f"{seconds * 1000:.0f} ms" if seconds < 1 \
        else f"{seconds:.1f} s"
    if entry.get("extra", {}).get("layers"):   # a map fused over several layers: name them
        text += " · " + " + ".join(entry["extra"]["layers"])
    return text


def subtitle(entry: dict, label: str | None, contrast: str | None = None, signed: bool = False,
             cmap: str = "jet", score: str = "logit", counterfactual: bool = False) -> str:
    """What the map shows, in plain words (explain.captions), wrapped for a figure's width."""
    # Wrapped as if the colour were the longest colour word, then that word replaced: every
    # colormap's caption has the same lines, so the browser swaps them without a redraw.
    longest = max(COLORMAPS, key=lambda c: len(captions.hot(c)))
    text = captions.describe(METHODS[entry["method"]], label, mode=entry.get("mode", "relu"), contrast=contrast,
                             counterfactual=counterfactual, probability=score == "probability",
                             signed=signed, colormap=longest)
    return wrap(text, 62).replace(captions.hot(longest), captions.hot(cmap), 1) if not signed else wrap(text, 62)


#: Bytes of grey PNG per map we accept before falling back to a grey JPEG (noisy pixel maps).
GRAY_BUDGET = 60_000


def gray_uri(values: np.ndarray, signed: bool = False) -> str:
    """A map as an 8-bit grey picture for the browser to colour (assets/display.js): [0, 1] -> 0..255,
    or a signed map's -1..1 -> 0..255 (128: zero). PNG, or JPEG when the PNG is over GRAY_BUDGET."""
    v = np.nan_to_num(np.asarray(values, np.float32))
    u8 = np.round((np.clip(v, -1, 1) + 1) * 127.5 if signed else np.clip(v, 0, 1) * 255).astype(np.uint8)
    data = encode_image(u8, "png")
    if len(data) <= GRAY_BUDGET:
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(u8, "jpeg", quality=90)).decode("ascii")


def panel(stored: StoredImage, entry: dict, display: dict, labels: list[str], factor: float,
          revision: str, factors: dict | None = None, model: str = "", score: str = "logit",
          counterfactual: bool = False) -> Panel:
    """One figure: the photo, and the map as grey pixels the browser colours with the display
    options (assets/display.js), with every fact it needs in the figure's meta: the shared-scale
    factors with the Signed switch off and on (`factors`; `factor` is the one for `display`), the
    captions for each colormap and for the signed drawing, the hover values. The server draws no
    colours: a display change costs no request."""
    method = entry["method"]
    name = METHODS[method].name
    label = labels[entry["target"]] if 0 <= entry.get("target", -1) < len(labels) else None
    contrast = entry.get("contrast")
    contrast = (labels[contrast] if 0 <= contrast < len(labels) else str(contrast)) if contrast is not None else None
    note = " · ".join(t for t in (model, when(entry)) if t)
    if entry.get("extra", {}).get("maps") is not None:   # a grid of channel maps (activations)
        return activation_panel(entry, display, name, revision, note)
    base = stored.display
    h, w = base.shape[:2]
    width, height = stored.image.shape[1], stored.image.shape[0]
    factors = factors or {"off": factor, "on": factor}
    signable = bool(entry.get("signed"))
    signed = drawn_signed(entry, display)
    unsigned_values = display_heatmap(entry, (w, h))
    signed_values = display_signed(entry, (w, h)) if signable else None
    captions_ = {c: subtitle(entry, label, contrast, False, c, score, counterfactual) for c in COLORMAPS}
    if signable:
        captions_["signed"] = subtitle(entry, label, contrast, True, SIGNED_COLORMAP, score, counterfactual)
    warnings = list(entry.get("warnings", []))
    meta = {
        "kind": "overlay", "gray": gray_uri(unsigned_values),
        "gray_signed": gray_uri(signed_values, signed=True) if signable else None,
        "factor": {"off": round(float(factors["off"]), 6), "on": round(float(factors["on"]), 6)},
        "group": METHODS[method].scale_group, "captions": captions_, "warnings": [wrap(w_) for w_ in warnings],
        "hover": _rounded(coarse(unsigned_values)),
        "hover_signed": _rounded(coarse(signed_values)) if signable else None,
        "legend": {"off": list(captions.legend(False)), "on": list(captions.legend(True))},
    }
    shown_factor = factor if display.get("scale") == "shared" else 1.0
    meta["drawn"] = {"signed": signed, "factor": round(float(shown_factor), 6),
                     "cmap": SIGNED_COLORMAP if signed else display["cmap"]}
    hover = np.clip((signed_values if signed else unsigned_values), -1, 1)
    hover = np.clip(coarse(hover) * shown_factor, -1 if signed else 0, 1)
    shown_warnings = list(warnings)
    if display.get("scale") == "shared" and factor < 0.25:   # on the shared scale, say why the map looks faint
        shown_warnings.insert(0, shared_note(factor))
    return Panel(method=method, title=name, note=note,
                 subtitle=captions_["signed"] if signed else captions_[display.get("cmap", "jet")],
                 caption_lines=max(c.count("<br>") + 1 for c in captions_.values()),
                 image_uri=jpeg_uri(base, PHOTO_BUDGET), width=width, height=height, shown_width=w, shown_height=h,
                 hover=hover, colormap=SIGNED_COLORMAP if signed else display["cmap"],
                 signed=signed, warnings=shown_warnings, filename=f"camlens-{method}", revision=revision,
                 outlines=outlines(entry.get("extra", {}), (width, height)), meta=meta,
                 opacity=display.get("opacity", 0.5), view=display.get("view", "overlay"),
                 legend=captions.legend(signed))


#: JPEG bytes for the photo under each figure: with the grey map it keeps a figure under 200 KB.
PHOTO_BUDGET = 110_000


def shared_note(factor: float) -> str:
    return f"shared scale: this map's peak is {factor:.0%} of the largest in its family"


def _rounded(values: np.ndarray) -> list:
    """Coarse hover values as JSON (3 decimals; NaN -> None)."""
    return [[None if not np.isfinite(v) else round(float(v), 3) for v in row] for row in values]


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


def activation_panel(entry: dict, display: dict, name: str, revision: str, note: str = "") -> Panel:
    """The strongest feature maps of the layer as a grid; hover names the channel. The grid goes as
    grey + alpha (gaps transparent, drawn white) for the browser to colour like the other maps."""
    maps = np.asarray(entry["extra"]["maps"], np.float32)
    channels = entry["extra"].get("channels", list(range(len(maps))))
    k = len(maps)
    cols = math.ceil(math.sqrt(k))
    tile = max(16, min(160, (640 // cols) - 2))
    grid, rows, cols = mosaic(maps, tile)
    height, width = grid.shape
    gray = np.round(np.nan_to_num(grid, nan=0.0) * 255).astype(np.uint8)
    alpha = np.where(np.isnan(grid), 0, 255).astype(np.uint8)
    gray_uri_ = "data:image/png;base64," + base64.b64encode(encode_image(np.dstack([gray, alpha]), "png")).decode()
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
    subtitle_ = f"{k} strongest channels · {entry['layer']}"
    meta = {"kind": "mosaic", "gray": gray_uri_, "gray_signed": None, "factor": {"off": 1.0, "on": 1.0},
            "group": None, "captions": {c: subtitle_ for c in COLORMAPS}, "warnings": [wrap(w_) for w_ in entry.get("warnings", [])],
            "hover": None, "hover_signed": None, "legend": {"off": ["low", "high"], "on": ["low", "high"]},
            "drawn": {"signed": False, "factor": 1.0, "cmap": display["cmap"]}}
    return Panel(method=entry["method"], title=name, subtitle=subtitle_, note=note,
                 image_uri="", width=width, height=height, shown_width=width,
                 shown_height=height, hover=hover, hover_text=text, hover_label="activation",
                 colormap=display["cmap"], warnings=list(entry.get("warnings", [])),
                 filename=f"camlens-{entry['method']}", revision=revision, meta=meta, view="heatmap",
                 legend=("low", "high"))


def full_picture(stored: StoredImage, entry: dict, display: dict, factor: float = 1.0) -> np.ndarray:
    """Full-resolution picture of one result for the ZIP (activations: the feature-map grid)."""
    if entry.get("extra", {}).get("maps") is not None:
        grid, _, _ = mosaic(np.asarray(entry["extra"]["maps"], np.float32), 128)
        out = colorize(np.nan_to_num(grid, nan=0.0), display["cmap"])
        out[np.isnan(grid)] = 255
        return out
    return shown(stored.image, entry, display, factor)[0]
