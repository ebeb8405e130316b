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
