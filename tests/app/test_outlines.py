"""LIME's outlines: SVG paths around the chosen superpixels, scaled to the figure."""
import numpy as np

from callbacks import outlines


def test_outline_paths_follow_the_superpixel_at_the_figure_scale():
    labels = np.zeros((10, 20), np.int32)
    labels[2:6, 4:10] = 1
    (path,) = outlines.outline_paths(labels, [1], (40, 10))   # drawn at twice the width
    xs = [float(p.split(",")[0]) for p in path[1:-2].split(" L")]
    ys = [float(p.split(",")[1]) for p in path[1:-2].split(" L")]
    assert path.startswith("M") and path.endswith("Z")
    # pixel centres 4.5..9.5 (x) and 2.5..5.5 (y), x doubled: exact in binary floating point
    assert (min(xs), max(xs), min(ys), max(ys)) == (9.0, 19.0, 2.5, 5.5)


def test_outlines_colour_evidence_for_and_against():
    labels = np.repeat(np.arange(4, dtype=np.int32), 16).reshape(8, 8)   # four bands of rows
    extra = {"segments": labels, "top_positive": [1, 2], "top_negative": [3]}
    shapes = outlines.outlines(extra, (64, 64))
    colors = [s["color"] for s in shapes]
    assert colors.count(outlines.OUTLINE_COLORS["top_positive"]) == 2
    assert colors.count(outlines.OUTLINE_COLORS["top_negative"]) == 1
    assert outlines.outlines({}, (64, 64)) == []
