"""Outlines of regions over a figure: a LIME result's top superpixels, green for the evidence for
the class and red against it (the view of the seed app). Drawing only: the engine returns the
superpixel labels and which ones count, this turns them into SVG paths for layouts.figures."""

from __future__ import annotations

import cv2
import numpy as np


def outline_paths(labels: np.ndarray, ids, size: tuple[int, int]) -> list[str]:
    """SVG paths (in `size` = (width, height) pixel coordinates) around the superpixels `ids`, for
    drawing the chosen superpixels' outlines over the image (the seed's LIME view)."""
    h, w = labels.shape
    sx, sy = size[0] / w, size[1] / h
    paths = []
    for i in ids:
        mask = (labels == int(i)).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            pts = c[:, 0, :].astype(np.float64)
            if len(pts) < 2:
                continue
            # pixel (x, y) spans [x, x+1): outline the pixel's centre line, scaled to the image
            xy = [f"{(x + 0.5) * sx:.1f},{(y + 0.5) * sy:.1f}" for x, y in pts]
            paths.append("M" + " L".join(xy) + " Z")
    return paths


#: Outline colours of the seed's LIME view: evidence for the target, against it.
OUTLINE_COLORS = {"top_positive": "#00e676", "top_negative": "#ff1744"}


def outlines(extra: dict, size: tuple[int, int]) -> list[dict]:
    """{"path", "color"} outlines of a LIME result's top positive (green) and negative (red)
    superpixels, in `size` = (width, height) pixel coordinates (layouts.figures.Panel.outlines)."""
    labels = extra.get("segments")
    if labels is None:
        return []
    labels = np.asarray(labels)
    return [{"path": path, "color": color} for key, color in OUTLINE_COLORS.items()
            for path in outline_paths(labels, extra.get(key, []), size)]
