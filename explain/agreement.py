"""Do the shown maps agree? Two small matrices for any number of heatmaps (pure NumPy).

- rank correlation (Spearman): the Pearson correlation of the maps' pixel ranks (ties averaged),
  1 = the same ordering of pixels, -1 = the reverse, 0 = unrelated. A constant map has no
  ranking: 1 with another constant map, 0 with anything else (as explain.metrics.spearman).
- top-k overlap: the intersection over union of each pair's hottest `top` share of pixels (ties
  broken by a fixed seeded order, so a flat map picks the same pixels each time).

Maps of different sizes are brought to the first map's size; large maps are shrunk (area
filter) to at most `max_pixels` first, so twelve 640x480 maps take milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

#: Share of the hottest pixels compared by the top-k overlap.
TOP_SHARE = 0.10
#: Maps are shrunk to about this many pixels before ranking.
MAX_PIXELS = 128 * 128


@dataclass(frozen=True)
class Agreement:
    names: list[str]
    spearman: np.ndarray    # (n, n), symmetric, 1 on the diagonal
    overlap: np.ndarray     # (n, n) IoU of the top `top` pixels, 1 on the diagonal
    top: float


def _shrink(maps: list[np.ndarray], max_pixels: int) -> np.ndarray:
    import cv2

    H, W = maps[0].shape[:2]
    scale = min(1.0, float(np.sqrt(max_pixels / (H * W))))
    h, w = max(1, int(round(H * scale))), max(1, int(round(W * scale)))
    out = np.empty((len(maps), h * w), np.float64)
    for i, m in enumerate(maps):
        m = np.nan_to_num(np.asarray(m, np.float32))
        if m.shape != (h, w):
            interp = cv2.INTER_AREA if m.shape[0] >= h and m.shape[1] >= w else cv2.INTER_LINEAR
            m = cv2.resize(m, (w, h), interpolation=interp)
        out[i] = m.ravel()
    return out


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's rankdata 'average')."""
    order = np.argsort(v, kind="stable")
    sv = v[order]
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
    ends = np.r_[starts[1:], v.size]
    avg = (starts + ends + 1) / 2.0          # mean of ranks start+1 .. end
    ranks = np.empty(v.size, np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def rank_correlations(flat: np.ndarray) -> np.ndarray:
    """Spearman matrix of the rows of `flat` (n, pixels)."""
    n = len(flat)
    flat_rows = np.ptp(flat, axis=1) == 0
    ranks = np.array([_ranks(row) for row in flat])
    ranks -= ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt((ranks ** 2).sum(axis=1))
    norm[flat_rows] = 1.0
    rho = (ranks @ ranks.T) / np.outer(norm, norm)
    for i in range(n):
        for j in range(n):
            if flat_rows[i] or flat_rows[j]:
                rho[i, j] = 1.0 if flat_rows[i] and flat_rows[j] else 0.0
    return np.clip(rho, -1.0, 1.0)


def top_overlaps(flat: np.ndarray, top: float = TOP_SHARE, seed: int = 0) -> np.ndarray:
    """IoU matrix of the rows' hottest `top` share of pixels."""
    n, size = flat.shape
    k = max(1, int(round(top * size)))
    tie = np.random.default_rng(seed).random(size)
    hot = np.zeros((n, size), bool)
    for i, row in enumerate(flat):
        hot[i, np.lexsort((tie, -row))[:k]] = True
    inter = hot.astype(np.float64) @ hot.T.astype(np.float64)
    union = 2 * k - inter
    return inter / union


def agreement(maps: Mapping[str, np.ndarray], top: float = TOP_SHARE,
              max_pixels: int = MAX_PIXELS) -> Agreement:
    """Spearman and top-`top` IoU matrices of the maps (name -> 2-D array), in their order."""
    if not 0 < top <= 1:
        raise ValueError("top must be in (0, 1]")
    names = list(maps)
    if not names:
        return Agreement([], np.zeros((0, 0)), np.zeros((0, 0)), top)
    flat = _shrink([np.asarray(maps[m]) for m in names], max_pixels)
    return Agreement(names, rank_correlations(flat), top_overlaps(flat, top), top)
