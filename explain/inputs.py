"""Input preparation: any uint8 RGB photo -> the model's input, and the fill images that
perturbation methods and metrics hide pixels with."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from explain.errors import ExplainError, ImageError

#: What a hidden pixel turns into (a number is a constant grey level).
FILLS = ("black", "grey", "mean", "blur", "noise")


def pixels(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB image of any size -> float32 (H, W, 3) in 0..255 at `size` (Gaussian-pyramid
    halving while both sides are 2x or more too large, then bilinear, or an area filter when one
    side is still 2x too large: no aliasing, a quarter of an area filter's cost)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ImageError("the image must be a uint8 RGB array")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ImageError(f"the image must be H x W x 3 (RGB); got shape {image.shape}")
    image = image[..., :3]
    H, W = size
    while image.shape[0] >= 2 * H and image.shape[1] >= 2 * W:
        image = cv2.pyrDown(image)
    if image.shape[:2] != (H, W):
        skewed = image.shape[0] >= 2 * H or image.shape[1] >= 2 * W
        image = cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA if skewed else cv2.INTER_LINEAR)
    return image.astype(np.float32)


def to_input(pix: np.ndarray, size: tuple[int, int], channels: int,
             preprocess: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """float32 (N, H, W, 3) pixels in 0..255 -> model input (grey conversion, preprocess)."""
    p = np.array(pix, np.float32, copy=True)   # preprocess functions often work in place
    if channels == 1:
        p = (p @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    if preprocess is not None:
        p = np.asarray(preprocess(p), np.float32)
    want = (len(pix),) + tuple(size) + (channels,)
    if p.shape != want:
        raise ExplainError(f"preprocess returned shape {p.shape}, expected {want}")
    return p


def fill(pix: np.ndarray, how, rng: np.random.Generator, blur_sigma: float) -> np.ndarray:
    """A baseline/fill image in pixel space (0..255) of the same shape as `pix`."""
    if isinstance(how, (int, float)) and not isinstance(how, bool):
        return np.full_like(pix, float(how))
    if how == "black":
        return np.zeros_like(pix)
    if how in ("grey", "gray"):
        return np.full_like(pix, 128.0)
    if how == "mean":
        return np.broadcast_to(pix.mean(axis=(0, 1)), pix.shape).astype(np.float32)
    if how == "blur":
        return cv2.GaussianBlur(pix, (0, 0), sigmaX=max(1.0, blur_sigma))
    if how == "noise":
        return rng.uniform(0, 255, pix.shape).astype(np.float32)
    raise ExplainError(f"unknown fill/baseline {how!r}; use {', '.join(FILLS)}")
