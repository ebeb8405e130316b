"""What the engine returns: predictions and one result per method."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prediction:
    index: int
    label: str
    probability: float


@dataclass
class MethodResult:
    method: str
    heatmap: np.ndarray            # float32 (H, W) in [0, 1] at the input image's own size (a row of
    #                                one block shared by the call's heatmaps)
    raw: np.ndarray                # float32 (h, w) unnormalised, at its native resolution
    seconds: float
    target: int
    layer: str | None
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    signed: bool = False           # raw's sign means evidence for (+) and against (-) the score
    mode: str = "relu"             # how heatmap came from raw (explain.formulas.normalize)

    def signed_map(self) -> np.ndarray:
        """The map whose sign is the evidence for (+) or against (-) the score (see signed_map)."""
        return signed_map(self.raw, self.extra)


def signed_map(raw: np.ndarray, extra: dict | None = None) -> np.ndarray:
    """The signed map of a result: LIME's signed superpixel weights (whatever its `lime_sign`
    made of `raw`), else `raw` itself."""
    extra = extra or {}
    if extra.get("weights") is not None and extra.get("segments") is not None:
        return np.asarray(extra["weights"], np.float32)[np.asarray(extra["segments"])]
    return np.asarray(raw, np.float32)
