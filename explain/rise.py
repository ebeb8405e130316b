"""RISE (Petsiuk, Das & Saenko 2018, "RISE: Randomized input sampling for explanation of black-box
models", BMVC).

N random binary s x s grids (each cell on with probability p) are upsampled bilinearly to
(s + 1) x cell size and cropped at a random shift within one cell, so the masks are smooth and
not aligned to one grid; the model scores the image blended with a fill by each mask (through the
perturbation core) and the saliency is the score-weighted average mask,
S = sum_i (f_i - mean f) M_i / (N p).
The paper's sum has no `- mean f`; subtracting it only removes the constant mean(f) * E[M] / p
(exact for the expected mask, noise otherwise), which would otherwise lift every pixel by the mean
score and flatten the positive part of a logit map. With probabilities the ranking is the paper's.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from explain.errors import ExplainError


class RiseMasks:
    """The N masks, built lazily per batch from stored grids and shifts (a perturb MaskSource),
    so they can be rebuilt for the weighted sum without keeping N full-size masks in memory."""

    def __init__(self, size: tuple[int, int], n: int, cells: int, p: float, rng: np.random.Generator):
        if n < 1 or cells < 1 or not 0.0 < p < 1.0:
            raise ExplainError("RISE needs rise_masks >= 1, rise_cells >= 1 and 0 < rise_p < 1")
        H, W = size
        self.size, self.p = (H, W), float(p)
        self.cell = (math.ceil(H / cells), math.ceil(W / cells))
        self.grids = (rng.random((n, cells, cells)) < p).astype(np.float32)
        self.shifts = np.stack([rng.integers(0, self.cell[0], n), rng.integers(0, self.cell[1], n)], 1)
        self.up = ((cells + 1) * self.cell[0], (cells + 1) * self.cell[1])

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, index: slice) -> np.ndarray:
        H, W = self.size
        grids, shifts = self.grids[index], self.shifts[index]
        out = np.empty((len(grids), H, W), np.float32)
        for i, (g, (dy, dx)) in enumerate(zip(grids, shifts)):
            big = cv2.resize(g, (self.up[1], self.up[0]), interpolation=cv2.INTER_LINEAR)
            out[i] = big[dy:dy + H, dx:dx + W]
        return out

    def combine(self, scores: np.ndarray, chunk: int = 256) -> np.ndarray:
        """S = sum_i (s_i - mean s) M_i / (N p), masks rebuilt in chunks."""
        s = np.asarray(scores, np.float64)
        s = s - s.mean()
        total = np.zeros(self.size, np.float64)
        for start in range(0, len(self), chunk):
            stop = min(len(self), start + chunk)
            total += np.tensordot(s[start:stop], self[start:stop], axes=1)
        return (total / (len(self) * self.p)).astype(np.float32)
