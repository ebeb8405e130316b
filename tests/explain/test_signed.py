"""Signed maps: integrated / expected gradients and gradients x input keep their sign in `raw`,
their [0, 1] heatmap is |raw| / max |raw| as before; a contrast B makes a map signed and, for the
maps linear in the score's gradient, equals map(target) - map(B)."""

import keras
import numpy as np
import pytest

from explain import METHODS, Explainer
from explain import formulas as F
from explain.result import signed_map
from explain_testkit import random_image

L = keras.layers


def linear_model(size=8, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    return keras.Model(inp, L.Dense(classes)(L.Flatten()(inp)))


def test_declared_signed_methods():
    signed = {m for m, info in METHODS.items() if info.signed}
    assert signed == {"integrated-gradients", "gradient-x-input", "lime", "shap", "expected-gradients"}


def test_magnitude_normalisation_is_the_size_of_a_signed_map():
    raw = np.array([[-4.0, 1.0], [2.0, 0.0]], np.float32)
    heatmap, warnings = F.normalize(raw, (2, 2), "magnitude")
    np.testing.assert_allclose(heatmap, np.abs(raw) / 4)
    assert not warnings
    assert F.normalize(np.zeros((2, 2)), (2, 2), "magnitude")[1]   # all zero: says so


def test_integrated_gradients_raw_is_signed_and_its_heatmap_is_unchanged(gap_explainer, rng):
    """The heatmap is what the old |sum_c attribution| gave: |raw| normalised."""
    image = random_image(rng, 32, 32)
    r = gap_explainer.explain(image, ["integrated-gradients"], ig_steps=8)["integrated-gradients"]
    assert r.signed and r.mode == "magnitude"
    assert (r.raw > 0).any() and (r.raw < 0).any()
    old, _ = F.normalize(np.abs(r.raw), (32, 32), "abs")
    np.testing.assert_allclose(r.heatmap, old, rtol=1e-6, atol=1e-7)


def test_gradient_x_input_on_a_linear_model_is_x_times_w():
    model = linear_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(4), 8, 8)
    r = ex.explain(image, ["gradient-x-input"], target=2)["gradient-x-input"]
    w = model.layers[-1].kernel.numpy()[:, 2].reshape(8, 8, 3)
    expected = (image / 255.0 * w).sum(axis=-1)
    np.testing.assert_allclose(r.raw, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.heatmap, np.abs(expected) / np.abs(expected).max(), rtol=1e-5, atol=1e-6)
    assert r.signed and (r.raw < 0).any()


def test_gradient_x_input_with_a_contrast_is_the_difference_of_the_weights():
    model = linear_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(5), 8, 8)
    r = ex.explain(image, ["gradient-x-input"], target=0, contrast=1)["gradient-x-input"]
    W = model.layers[-1].kernel.numpy()
    expected = (image / 255.0 * (W[:, 0] - W[:, 1]).reshape(8, 8, 3)).sum(axis=-1)
    np.testing.assert_allclose(r.raw, expected, rtol=1e-5, atol=1e-6)


LINEAR_IN_THE_GRADIENT = ("gradcam", "hirescam", "cam", "integrated-gradients", "gradient-x-input")


def test_contrast_is_the_difference_of_the_two_maps_and_signed(gap_explainer, rng):
    """Grad-CAM, HiResCAM, CAM, IG and gradients x input are linear in the score's gradient (or
    the head's weights), so explaining S_a - S_b gives map(a) - map(b) exactly, and swapping a and
    b flips the sign. The contrast run is signed even for maps declared unsigned (Grad-CAM)."""
    image = random_image(rng, 32, 32)
    opts = dict(ig_steps=4)
    a = gap_explainer.explain(image, list(LINEAR_IN_THE_GRADIENT), target=1, **opts)
    b = gap_explainer.explain(image, list(LINEAR_IN_THE_GRADIENT), target=3, **opts)
    ab = gap_explainer.explain(image, list(LINEAR_IN_THE_GRADIENT), target=1, contrast=3, **opts)
    ba = gap_explainer.explain(image, list(LINEAR_IN_THE_GRADIENT), target=3, contrast=1, **opts)
    for m in LINEAR_IN_THE_GRADIENT:
        scale = np.abs(ab[m].raw).max()
        assert scale > 0, m
        np.testing.assert_allclose(ab[m].raw, a[m].raw - b[m].raw, rtol=1e-3, atol=1e-4 * scale, err_msg=m)
        np.testing.assert_allclose(ba[m].raw, -ab[m].raw, rtol=1e-3, atol=1e-4 * scale, err_msg=m)
        assert ab[m].signed, m
    assert not a["gradcam"].signed and a["integrated-gradients"].signed


def test_contrast_leaves_magnitude_maps_unsigned(gap_explainer, rng):
    r = gap_explainer.explain(random_image(rng, 32, 32), ["gradients"], target=1, contrast=2)
    assert not r["gradients"].signed   # |dS/dx| has no sign to show


def test_lime_signed_map_is_its_signed_weights_whatever_lime_sign():
    seg = np.array([[0, 0], [1, 2]])
    w = np.array([0.5, -1.0, 0.0], np.float32)
    for shown in (w[seg], -w[seg], np.abs(w)[seg]):
        np.testing.assert_array_equal(signed_map(shown, {"weights": w, "segments": seg}), w[seg])
    raw = np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_array_equal(signed_map(raw, {}), raw)


def test_contrast_equal_to_the_target_is_refused(gap_explainer, rng):
    from explain.errors import ExplainError
    with pytest.raises(ExplainError, match="contrast must be another class"):
        gap_explainer.explain(random_image(rng, 32, 32), ["gradcam"], target=2, contrast=2)
