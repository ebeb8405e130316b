"""Colour maps (RGB order), overlays and web encodings."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from explain.errors import ExplainError
from explain.render import COLORMAPS, colorize, colorize_signed, data_uri, encode_image, overlay, overlay_signed


def test_colorize_is_rgb():
    ramp = np.array([[0.0, 1.0]], np.float32)
    jet = colorize(ramp, "jet")
    assert jet.shape == (1, 2, 3) and jet.dtype == np.uint8
    assert jet[0, 0, 2] > 100 and jet[0, 0, 0] == 0      # jet low = blue
    assert jet[0, 1, 0] > 100 and jet[0, 1, 2] == 0      # jet high = red
    vir = colorize(ramp, "viridis")
    assert vir[0, 1, 1] > 200 and vir[0, 1, 2] < 60      # viridis high = yellow
    assert set(COLORMAPS) == {"jet", "turbo", "viridis", "inferno", "magma", "plasma", "cividis"}
    civ = colorize(ramp, "cividis")
    assert civ[0, 0, 2] > civ[0, 0, 0] and civ[0, 1, 0] > 200 and civ[0, 1, 2] < 100   # blue -> yellow
    with pytest.raises(ExplainError):
        colorize(ramp, "rainbow")


def test_overlay_blends_and_resizes():
    image = np.full((6, 9, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert overlay(image, heat, opacity=0.0).tolist() == image.tolist()
    full = overlay(image, heat, "turbo", opacity=1.0)
    assert full.shape == image.shape
    np.testing.assert_array_equal(full, colorize(_resized(heat, 6, 9), "turbo"))
    half = overlay(image, np.zeros((6, 9)), "jet", 0.5).astype(int)
    assert np.abs(half - (image.astype(int) + colorize(np.zeros((6, 9)), "jet")) / 2).max() <= 1


def _resized(h, H, W):
    import cv2
    return cv2.resize(h, (W, H), interpolation=cv2.INTER_LINEAR)


def test_encodings_round_trip():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    png = encode_image(image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    jpg = encode_image(image, "jpeg", quality=90)
    assert jpg[:2] == b"\xff\xd8"
    uri = data_uri(image)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    assert data_uri(image, "jpeg").startswith("data:image/jpeg;base64,")


def test_signed_maps_are_red_for_and_blue_against():
    values = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]], np.float32)
    rgb = colorize_signed(values).astype(int)
    assert rgb[0, 0, 2] > rgb[0, 0, 0] + 60 and rgb[0, 1, 2] > rgb[0, 1, 0] + 60     # blue below 0
    assert rgb[0, 4, 0] > rgb[0, 4, 2] + 60 and rgb[0, 3, 0] > rgb[0, 3, 2] + 60     # red above 0
    assert (rgb[0, 2] > 230).all()                                                   # near-white at 0
    with pytest.raises(ExplainError):
        colorize_signed(values, "jet")


def test_signed_overlay_leaves_the_photo_where_the_map_is_zero():
    image = np.full((4, 4, 3), 90, np.uint8)
    values = np.zeros((4, 4), np.float32)
    values[0, 0], values[3, 3] = 1.0, -1.0
    out = overlay_signed(image, values, opacity=1.0).astype(int)
    assert out[1:3, 1:3].tolist() == image[1:3, 1:3].tolist()
    assert out[0, 0, 0] > out[0, 0, 2] and out[3, 3, 2] > out[3, 3, 0]
