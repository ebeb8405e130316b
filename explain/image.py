"""Decode an uploaded file into the uint8 RGB array every other part of camlens expects.

Uploads come from strangers, so this is the one place that distrusts them: a byte limit before
decoding, a pixel limit read from the header before any pixel is decompressed (decompression
bombs), an allow-list of formats (no Ghostscript-backed EPS, no exotic plugins), and a one-line
`ImageError` for everything else. What people really upload is then normalised: EXIF rotation,
alpha flattened on white, grayscale/palette/CMYK/16-bit/float converted, first frame of animations.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explain.errors import ImageError

#: Formats accepted from uploads (Pillow names; Pillow's JPEG opener also reads cameras' MPO files).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 15 * 2**20
    max_pixels: int = 40_000_000


def load_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """`data` (a whole file) -> uint8 (H, W, 3) RGB, or ImageError with a message for a person."""
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > limits.max_bytes:
        raise ImageError(f"The file is {len(data) / 2**20:.1f} MB; the limit is "
                         f"{limits.max_bytes / 2**20:g} MB.")
    with warnings.catch_warnings():
        # Pillow warns (then raises) past its own global limit; ours, checked below, is what counts.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise ImageError(f"This file is not an image camlens can read ({_NAMES}).") from None
        except Image.DecompressionBombError:
            raise _too_many_pixels(None, limits) from None
        except Exception as error:  # noqa: BLE001 - a broken header can raise anything
            raise _corrupt(error) from None
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageError("The image has no pixels.")
        if width * height > limits.max_pixels:
            raise _too_many_pixels((width, height), limits)
        try:
            image.seek(0)  # animated GIF/WebP/PNG: the first frame
            image.load()
            image = ImageOps.exif_transpose(image)
        except Image.DecompressionBombError:
            raise _too_many_pixels((width, height), limits) from None
        except Exception as error:  # noqa: BLE001 - truncated data raises OSError, others vary
            raise _corrupt(error) from None
    return _to_rgb(image)


def _too_many_pixels(size, limits: ImageLimits) -> ImageError:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.1f} MP" if size else "too large"
    return ImageError(f"The image is {what}; the limit is {limits.max_pixels / 1e6:g} MP.")


def _corrupt(error: Exception) -> ImageError:
    reason = (" ".join(str(error).split()) or type(error).__name__)[:120]
    return ImageError(f"The image is truncated or corrupt ({reason}).")


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 RGB; transparency is flattened onto white (what viewers show)."""
    mode = image.mode
    if mode == "F" or mode.startswith("I"):
        return _gray_to_rgb(_high_depth_to_uint8(np.asarray(image), mode))
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float gray -> 0..255. 16-bit divides by 257 (65535 -> 255, so a dark
    16-bit image stays dark); floats in [0, 1] scale by 255; anything else stretches min..max."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if mode == "F" and 0 <= low and high <= 1:
        scaled = values * 255
    elif mode != "F" and 0 <= low and high <= 65535:
        scaled = values / 257
    else:
        scaled = (values - low) / max(high - low, 1e-12) * 255
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
