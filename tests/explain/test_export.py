"""explain.export: a result's picture at full size with its title strip and colour bar."""
import time

import numpy as np
import pytest

from explain import export
from explain.render import colorize, colorize_signed

GREY = (128, 128, 128)


def picture(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def ink(region: np.ndarray) -> int:
    """Pixels that are not the white background."""
    return int(np.any(region != 255, axis=-1).sum())


def test_the_picture_is_kept_at_full_size_between_the_strips():
    pic = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    started = time.perf_counter()
    out, layout = export.compose(pic, title="Grad-CAM", explained="sports car rather than convertible",
                                 caption="Red: the parts that raised the score.", model="EfficientNet-Lite0")
    assert time.perf_counter() - started < 1.0
    left, top, right, bottom = layout.picture
    assert out.shape[1] == 1024 and (right - left, bottom - top) == (1024, 768)
    assert top > 0 and out.shape[0] > bottom            # a strip above, the bar below
    assert out.shape[0] == layout.size[1] and out.shape[1] == layout.size[0]
    assert np.array_equal(out[top:bottom, left:right], pic)   # the picture itself, untouched


def test_a_narrow_picture_is_centred_not_scaled():
    out, layout = export.compose(picture(96, 96), title="CAM", model="Vehicles")
    left, top, right, bottom = layout.picture
    assert out.shape[1] == export.MIN_WIDTH and right - left == 96 and bottom - top == 96
    assert left == (export.MIN_WIDTH - 96) // 2
    assert np.all(out[top:bottom, left:right] == GREY)


def test_text_is_drawn_in_the_title_strip():
    out, layout = export.compose(picture(300, 600), title="Grad-CAM", explained="truck", caption="Red: for truck.",
                                 model="Tiny")
    strip = out[:layout.picture[1]]
    assert ink(strip) > 500            # letters, not an empty band
    blank, blank_layout = export.compose(picture(300, 600), title="")
    assert ink(blank[:blank_layout.picture[1]]) == 0      # the same strip without text is white
    # Each line adds height: the class, the caption and the model each take a line.
    assert layout.picture[1] > export.compose(picture(300, 600), title="Grad-CAM")[1].picture[1]


def test_long_text_wraps_inside_the_canvas():
    long = "a very long caption " * 30
    out, layout = export.compose(picture(200, 500), title="Grad-CAM", caption=long)
    short, short_layout = export.compose(picture(200, 500), title="Grad-CAM", caption="short")
    assert layout.picture[1] > short_layout.picture[1] + 3 * 10     # several lines
    pad = max(12, round(out.shape[1] / 55))
    assert ink(out[:layout.picture[1], out.shape[1] - pad + 2:]) == 0   # nothing runs off the right


@pytest.mark.parametrize("colormap", ["jet", "viridis"])
def test_the_colour_bar_holds_the_colormap_from_low_to_high(colormap):
    out, layout = export.compose(picture(200, 640), title="Grad-CAM", colormap=colormap)
    l, t, r, b = layout.bar
    bar = out[t:b, l:r].astype(int)
    ramp = colorize(np.linspace(0, 1, r - l, dtype=np.float32)[None], colormap)[0].astype(int)
    assert np.abs(bar[(b - t) // 2] - ramp).max() <= 1
    lo, hi = colorize(np.array([[0.0, 1.0]], np.float32), colormap)[0]
    assert np.abs(bar[0, 0] - lo).max() <= 1 and np.abs(bar[0, -1] - hi).max() <= 1
    labels = out[b:, :]
    assert ink(labels[:, : out.shape[1] // 4]) > 20 and ink(labels[:, -out.shape[1] // 4:]) > 20   # both ends


def test_a_signed_map_gets_the_diverging_bar_with_a_middle_label():
    out, layout = export.compose(picture(200, 640), title="Integrated gradients", signed=True)
    l, t, r, b = layout.bar
    bar = out[t:b, l:r].astype(int)
    lo, mid, hi = colorize_signed(np.array([[-1.0, 0.0, 1.0]], np.float32))[0].astype(int)
    assert np.abs(bar[0, 0] - lo).max() <= 1 and np.abs(bar[0, -1] - hi).max() <= 1
    assert np.abs(bar[0, (r - l) // 2] - mid).max() <= 4
    centre = out[b:, out.shape[1] // 2 - 20: out.shape[1] // 2 + 20]
    assert ink(centre) > 5             # the "0" under the middle
