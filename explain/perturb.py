"""The perturbation core shared by Score-CAM, occlusion (and later RISE, LIME, SHAP, deletion /
insertion): build masked inputs in batches, run the compiled model on them, hand back the outputs.

A mask is an (h, w) float array in [0, 1]: 1 keeps the image, 0 shows the baseline, in between
blends. Masks may have any resolution; the compiled forward upsamples them bilinearly to the model
input (so Score-CAM sends layer-sized maps and RISE its small grids; explain.passes compiles that
blend). The blend happens in model-input space: x_masked = baseline + (x - baseline) * mask, the same as blending pixels when
the preprocessing is affine (it almost always is).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from explain.errors import Cancelled


class MaskSource(Protocol):
    """Anything with a length that slices into (n, h, w) float32 masks (a NumPy array works)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> np.ndarray: ...


def run_batches(n: int, compute: Callable[[int, int], object], *, batch_size: int = 16,
                progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> list:
    """Call compute(start, stop) over [0, n) in batches; progress(fraction) after each batch,
    cancel() polled before each batch (raises Cancelled)."""
    batch_size = max(1, int(batch_size))
    out = []
    for start in range(0, n, batch_size):
        if cancel is not None and cancel():
            raise Cancelled()
        stop = min(n, start + batch_size)
        out.append(compute(start, stop))
        if progress is not None:
            progress(stop / n)
    return out


class OcclusionMasks:
    """Lazily built occlusion masks (Zeiler & Fergus 2014): a patch x patch square of zeros slid
    with `stride`, the last row/column flush with the border so every pixel is covered."""

    def __init__(self, size: tuple[int, int], patch: int, stride: int):
        H, W = size
        self.size, self.patch = (H, W), patch
        ys = _starts(H, patch, stride)
        xs = _starts(W, patch, stride)
        self.positions: Sequence[tuple[int, int]] = [(y, x) for y in ys for x in xs]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: slice) -> np.ndarray:
        pos = self.positions[index]
        m = np.ones((len(pos),) + self.size, np.float32)
        for i, (y, x) in enumerate(pos):
            m[i, y:y + self.patch, x:x + self.patch] = 0.0
        return m

    def combine(self, drops: np.ndarray) -> np.ndarray:
        """Per-pixel mean score drop over the patches covering that pixel."""
        total = np.zeros(self.size, np.float64)
        count = np.zeros(self.size, np.float64)
        p = self.patch
        for d, (y, x) in zip(drops, self.positions):
            total[y:y + p, x:x + p] += d
            count[y:y + p, x:x + p] += 1
        return (total / np.maximum(count, 1)).astype(np.float32)


def _starts(length: int, patch: int, stride: int) -> list[int]:
    last = max(0, length - patch)
    starts = list(range(0, last + 1, max(1, stride)))
    if starts[-1] != last:
        starts.append(last)
    return starts
