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
    "viridis": cv2.COLORMAP_VIRIDIS,
}


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
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ExplainError("overlay needs a uint8 RGB image (H x W x 3)")
    h = np.asarray(heatmap, np.float32)
    if h.shape != image.shape[:2]:
        h = cv2.resize(h, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    a = float(np.clip(opacity, 0.0, 1.0))
    return cv2.addWeighted(image, 1.0 - a, colorize(h, colormap), a, 0.0)


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
