"""CNN Fixations (Mopuri et al. 2019): backtracking by activations x weights, known answers."""

import keras
import numpy as np
import pytest

from explain import Explainer
from explain import fixations as FX
from explain.errors import ExplainError
from explain.graph import FlatGraph
from explain_testkit import random_image

L = keras.layers


def region_model():
    """conv(2 ch) -> MaxPool -> 1x1 conv -> GAP -> Dense: class 0 reads only channel 0, which
    responds only to the red channel (the test image is red only in one region)."""
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(2, 3, padding="same", activation="relu", use_bias=False, name="c1")(inp)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(2, 1, use_bias=False, name="c2")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    m = keras.Model(inp, out)
    k = np.zeros((3, 3, 3, 2), np.float32)
    k[:, :, 0, 0] = 1.0     # channel 0: red
    k[:, :, 1, 1] = 1.0     # channel 1: green
    m.get_layer("c1").set_weights([k])
    m.get_layer("c2").set_weights([np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2)])
    w = np.zeros((2, 2), np.float32)
    w[0, 0] = 1.0
    w[1, 1] = 1.0
    m.get_layer("head").set_weights([w, np.zeros(2, np.float32)])
    return m


def test_fixations_stay_in_the_only_region_the_class_reads():
    rng = np.random.default_rng(0)
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 1:] = rng.integers(1, 256, (16, 16, 2))      # green / blue everywhere
    image[4:9, 8:13, 0] = rng.integers(50, 256, (5, 5))     # red only in this region
    ex = Explainer(region_model(), preprocess=lambda x: x / 255.0)
    x = ex.prepare(image)
    points, counts = FX.backtrack(ex.graph, x, 0)
    assert len(points) > 5
    assert points[:, 0].min() >= 4 and points[:, 0].max() <= 8
    assert points[:, 1].min() >= 8 and points[:, 1].max() <= 12
    assert counts["head"] == 1 and counts["gap"] == 1   # only channel 0 of the GAP
    r = ex.explain(image, ["cnn-fixations"], target=0, fixations_sigma=0)["cnn-fixations"]
    assert r.target == 0 and r.raw.shape == (16, 16)
    assert r.raw[4:9, 8:13].sum() == r.raw.sum() > 0
    blurred = ex.explain(image, ["cnn-fixations"], target=0)["cnn-fixations"].heatmap
    assert blurred[4:9, 8:13].sum() > 0.6 * blurred.sum()


def hand_model():
    """3x3x2 input -> 2x2 valid conv (1 filter, no bias) -> Flatten -> Dense(2)."""
    inp = keras.Input((3, 3, 2))
    x = L.Conv2D(1, 2, use_bias=False, name="conv")(inp)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(2, use_bias=False, name="head")(x)
    m = keras.Model(inp, out)
    k = np.zeros((2, 2, 2, 1), np.float32)
    k[..., 0, 0] = [[1, 0], [0, 2]]
    k[..., 1, 0] = -0.5
    m.get_layer("conv").set_weights([k])
    w = np.zeros((4, 2), np.float32)
    w[:, 0] = [1, -1, 0, 0.5]
    w[:, 1] = [0, 0, 1, 0]
    m.get_layer("head").set_weights([w])
    return m


def test_hand_computed_backtracking():
    x = np.zeros((1, 3, 3, 2), np.float32)
    x[0, ..., 0] = [[1, 2, 0], [0, 3, 1], [4, 0, 2]]
    x[0, ..., 1] = 1.0
    # conv out: o00 = 1 + 2*3 - 2 = 5, o01 = 2 + 2*1 - 2 = 2, o10 = 0 + 0 - 2 = -2, o11 = 3 + 4 - 2 = 5
    # Dense class 0 contributions: 5, -2, 0, 2.5 -> o00 and o11.
    # o00's window (rows 0-1, cols 0-1): channel 0 a*w = [[1, 0], [0, 6]] (sum > 0) -> (1, 1);
    # channel 1 a*w = -0.5 each (sum < 0) -> dropped. o11's window: [[3, 0], [0, 4]] -> (2, 2).
    graph = FlatGraph(hand_model())
    points, counts = FX.backtrack(graph, x, 0)
    assert sorted(map(tuple, points.tolist())) == [(1, 1), (2, 2)]
    assert counts == {"head": 1, "flat": 2, "conv": 2}
    # class 1 reads only o10, whose contribution -2 * 1 is negative: no discriminative input, no
    # fixation (the paper keeps positive contributions only)
    points, counts = FX.backtrack(graph, x, 1)
    assert len(points) == 0 and counts == {"head": 1}


def test_unsupported_layer_is_named():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2DTranspose(2, 3, padding="same", name="upconv")(inp)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2)(x)
    ex = Explainer(keras.Model(inp, out))
    with pytest.raises(ExplainError, match=r"upconv.*Conv2DTranspose"):
        ex.explain(random_image(np.random.default_rng(0), 8, 8), ["cnn-fixations"])


@pytest.mark.parametrize("build, size", [
    (lambda: keras.applications.MobileNet(weights=None, input_shape=(96, 96, 3)), 96),
    (lambda: keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3)), 64),
])
def test_runs_on_keras_applications(build, size):
    keras.utils.set_random_seed(0)
    ex = Explainer(build(), preprocess=lambda x: x / 127.5 - 1.0)
    r = ex.explain(random_image(np.random.default_rng(0), size, size), ["cnn-fixations"])["cnn-fixations"]
    assert r.raw.shape == (size, size)
    assert np.isfinite(r.raw).all() and r.raw.max() > 0
    assert np.isfinite(r.heatmap).all()
