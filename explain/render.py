"""Heatmaps to pictures: colour maps, overlays and web encodings (PNG/JPEG, data URIs).

OpenCV colour maps return BGR; everything here is RGB, like the rest of camlens.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from PIL import Image

from explain.errors import ExplainError

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,   # perceptually uniform (as are the next three)
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,   # also readable with red-green colour blindness
}

#: Diverging colour maps for signed maps in [-1, 1]: anchor colours (RGB) from -1 to 1, evenly
#: spaced. rdbu: ColorBrewer's RdBu, blue = against (-), near-white = 0, red = for (+).
DIVERGING: dict[str, list[str]] = {
    "rdbu": ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
             "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"],
}


def _lut(anchors: list[str]) -> np.ndarray:
    """(256, 3) uint8 RGB table, linear between the anchors."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in anchors], np.float64)
    at = np.linspace(0, 255, len(anchors))
    return np.stack([np.interp(np.arange(256), at, rgb[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


_LUTS = {name: _lut(anchors) for name, anchors in DIVERGING.items()}


def lut(colormap: str) -> np.ndarray:
    """(256, 3) uint8 RGB: the colour of each 8-bit level in `colormap` (COLORMAPS or DIVERGING),
    the table `colorize` / `colorize_signed` apply, for a browser to apply the same."""
    if colormap in _LUTS:
        return _LUTS[colormap]
    if colormap not in COLORMAPS:
        raise ExplainError(f"unknown colormap {colormap!r}; choose from: {', '.join([*COLORMAPS, *_LUTS])}")
    return colorize(np.linspace(0, 1, 256, dtype=np.float32)[None], colormap)[0]


def luts_hex() -> dict[str, str]:
    """Every colormap's table as one hex string (6 digits a level): what the page sends the
    browser once (assets/display.js colours the maps with it)."""
    return {name: lut(name).tobytes().hex() for name in [*COLORMAPS, *_LUTS]}


def colorize_signed(values: np.ndarray, colormap: str = "rdbu") -> np.ndarray:
    """float map in [-1, 1] (H, W) -> uint8 RGB (H, W, 3) with a diverging map (0: near-white)."""
    if colormap not in _LUTS:
        raise ExplainError(f"unknown diverging colormap {colormap!r}; choose from: {', '.join(_LUTS)}")
    v = np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    if v.ndim != 2:
        raise ExplainError(f"a signed map must be 2-D, got shape {v.shape}")
    return _LUTS[colormap][np.round((np.clip(v, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)]


def overlay_signed(image: np.ndarray, values: np.ndarray, colormap: str = "rdbu",
                   opacity: float = 0.5) -> np.ndarray:
    """Blend a signed map in [-1, 1] over a uint8 RGB image, each pixel's opacity times |value|:
    where the map is zero the photo shows through unchanged."""
    image, v = _fitted(image, values)
    v = np.clip(np.nan_to_num(v), -1.0, 1.0)
    a = (float(np.clip(opacity, 0.0, 1.0)) * np.abs(v))[..., None]
    out = image.astype(np.float32) * (1.0 - a) + colorize_signed(v, colormap).astype(np.float32) * a
    return np.round(out).astype(np.uint8)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """float heatmap in [0, 1] (H, W) -> uint8 RGB (H, W, 3)."""
    if colormap not in COLORMAPS:
        raise ExplainError(f"unknown colormap {colormap!r}; choose from: {', '.join(COLORMAPS)}")
    h = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if h.ndim != 2:
        raise ExplainError(f"a heatmap must be 2-D, got shape {h.shape}")
    u8 = np.round(np.clip(h, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """Blend the coloured heatmap over a uint8 RGB image: (1 - opacity) * image + opacity * colour.
    A heatmap of another size is resized to the image."""
    image, h = _fitted(image, heatmap)
    a = float(np.clip(opacity, 0.0, 1.0))
    return cv2.addWeighted(image, 1.0 - a, colorize(h, colormap), a, 0.0)


def _fitted(image: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the uint8 RGB image checked, the float map resized to it: bilinear)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ExplainError("overlay needs a uint8 RGB image (H x W x 3)")
    v = np.asarray(values, np.float32)
    if v.shape != image.shape[:2]:
        v = cv2.resize(v, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return image, v


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 85) -> bytes:
    """uint8 RGB (or grey) image -> PNG or JPEG bytes (Pillow)."""
    fmt = fmt.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise ExplainError(f"unknown image format {fmt!r}; use png or jpeg")
    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image, np.uint8))
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=3)
    else:
        pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def data_uri(image: np.ndarray, fmt: str = "png") -> str:
    """uint8 RGB image -> "data:image/png;base64,..." for <img src> / Plotly go.Image."""
    mime = "jpeg" if fmt.lower() in ("jpeg", "jpg") else "png"
    return f"data:image/{mime};base64," + base64.b64encode(encode_image(image, fmt)).decode("ascii")
