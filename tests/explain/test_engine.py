"""The Explainer's contract: shapes, ranges, targets, scores, warnings, progress, cancel, sharing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import METHODS, Explainer, MethodResult
from explain import formulas as F
from explain.errors import Cancelled
from explain_testkit import gap_cnn, random_image

FAST = dict(smoothgrad_samples=3, ig_steps=4, occlusion_patch=8, occlusion_stride=8, scorecam_top_k=4)
L = keras.layers


def test_every_method_round_trips_a_non_square_image(gap_explainer, rng):
    image = random_image(rng, 37, 53)
    results = gap_explainer.explain(image, list(METHODS), **FAST)
    assert list(results) == list(METHODS)
    targets = {r.target for r in results.values()}
    assert targets == {gap_explainer.predict(image, top=1)[0].index}
    for m, r in results.items():
        assert isinstance(r, MethodResult) and r.method == m
        assert r.heatmap.shape == (37, 53) and r.heatmap.dtype == np.float32, m
        assert np.isfinite(r.heatmap).all() and r.heatmap.min() >= 0 and r.heatmap.max() <= 1, m
        assert r.raw.dtype == np.float32 and r.raw.ndim == 2, m
        assert r.seconds >= 0
        assert (r.layer is not None) == METHODS[m].needs_layer, m
    assert results["gradcam"].raw.shape == (16, 16)          # the layer's own resolution
    assert results["gradients"].raw.shape == (32, 32)        # the model input's
    act = results["activations"].extra
    assert act["maps"].shape == (8, 16, 16) and len(act["channels"]) == 8   # top_k 16 > 8 channels


@pytest.mark.parametrize("shape", [(480, 640), (97, 1000), (2000, 90)])
def test_shrinking_a_photo_does_not_alias(gap_explainer, rng, shape):
    """Per-pixel black/white noise has no detail a 32x32 input can show: an anti-aliased shrink
    averages it to flat grey (std ~5-10 here), point sampling keeps it (plain bilinear: std ~85),
    also for very wide and very tall images."""
    noise = np.repeat((rng.integers(0, 2, shape) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    pix = gap_explainer.pixels(noise)
    assert pix.shape == (32, 32, 3)
    assert abs(pix.mean() - 127.5) < 8 and pix.std() < 20, (pix.mean(), pix.std())


def test_heatmaps_of_one_call_are_independent_arrays(gap_explainer, rng):
    res = gap_explainer.explain(random_image(rng, 40, 30), ["gradcam", "hirescam"])
    before = res["hirescam"].heatmap.copy()
    res["gradcam"].heatmap[:] = 0.5
    np.testing.assert_array_equal(res["hirescam"].heatmap, before)


def test_predict_rows(gap_explainer, rng):
    preds = gap_explainer.predict(random_image(rng, 50, 40), top=3)
    assert len(preds) == 3
    probs = [p.probability for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert preds[0].label == f"class {preds[0].index}"
    assert len(gap_explainer.predict(random_image(rng, 5, 5), top=10)) == 4


def test_explicit_target_and_counterfactual(gap_explainer, rng):
    image = random_image(rng, 32, 32)
    r = gap_explainer.explain(image, ["gradcam", "hirescam"], target=2)
    cf = gap_explainer.explain(image, ["gradcam", "hirescam", "gradients"], target=2, counterfactual=True)
    assert r["gradcam"].target == 2 and cf["gradcam"].target == 2
    np.testing.assert_allclose(cf["gradcam"].raw, -r["gradcam"].raw, rtol=1e-6)
    np.testing.assert_allclose(cf["hirescam"].raw, -r["hirescam"].raw, rtol=1e-6)
    assert any("counterfactual" in w for w in cf["gradients"].warnings)


def test_probability_score_and_saturation_warning():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(2, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inp, out)
    model.get_layer("conv").set_weights([np.full((3, 3, 3, 2), 1.0, np.float32), np.zeros(2, np.float32)])
    model.get_layer("head").set_weights([np.array([[30.0, -30.0], [30.0, -30.0]], np.float32),
                                         np.zeros(2, np.float32)])
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = np.full((8, 8, 3), 200, np.uint8)
    logit = ex.explain(image, ["gradcam"])["gradcam"]
    prob = ex.explain(image, ["gradcam"], score="probability")["gradcam"]
    assert logit.target == 0 and not logit.warnings
    assert any("saturated" in w for w in prob.warnings)
    p = ex.predict(image, top=1)[0].probability
    # d p / d logit = p (1 - p): the probability map is the logit map scaled down by that
    np.testing.assert_allclose(prob.raw, logit.raw * p * (1 - p), rtol=1e-3)


def test_all_zero_input_gives_zero_maps_not_nan():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv")(inp)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(3, use_bias=False)(x))
    ex = Explainer(model)
    results = ex.explain(np.zeros((16, 16, 3), np.uint8), list(METHODS), **FAST)
    for m, r in results.items():
        assert np.isfinite(r.heatmap).all() and np.isfinite(r.raw).all(), m
    for m in ("gradcam", "gradcam++", "hirescam", "cam", "activations", "eigencam"):
        assert not results[m].heatmap.any(), m
        assert any("zero" in w or "constant" in w for w in results[m].warnings), m


def test_normalize_flags_degenerate_maps():
    h, w = F.normalize(np.array([[np.nan, 1.0]], np.float32), (3, 4))
    assert h.shape == (3, 4) and not h.any() and "non-finite" in w[0]
    h, w = F.normalize(np.full((2, 2), -1.0), (2, 2))
    assert not h.any() and "zero" in w[0]
    h, w = F.normalize(np.array([[5.0, 5.0 + 1e-6]]), (1, 2), "minmax")
    np.testing.assert_allclose(h, [[0, 1]])
    assert "stretched" in w[0]
    h, w = F.normalize(np.array([[4.0, 4.0001]]), (1, 2), "relu")
    assert "near-constant" in w[0]
    h, w = F.normalize(np.array([[0.0, 2.0], [1.0, 4.0]]), (2, 2))
    np.testing.assert_allclose(h, [[0, 0.5], [0.25, 1]])
    assert not w


def test_progress_and_cancel(gap_explainer, rng):
    image = random_image(rng, 32, 32)
    seen = []
    gap_explainer.explain(image, ["gradcam", "occlusion"], progress=seen.append,
                          occlusion_patch=8, occlusion_stride=4, batch_size=8)
    assert seen[0] == pytest.approx(0.0) and seen[-1] == pytest.approx(1.0) and len(seen) > 4
    assert all(a <= b + 1e-9 for a, b in zip(seen, seen[1:]))

    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3
    with pytest.raises(Cancelled):
        gap_explainer.explain(image, ["occlusion"], cancel=cancel, occlusion_patch=4,
                              occlusion_stride=2, batch_size=4)
    assert len(calls) == 4   # stopped at the first poll that said so


def test_cost_counts_shared_passes_once(gap_explainer):
    cost = gap_explainer.cost(["gradcam", "hirescam", "gradcam++", "eigencam", "gradients",
                               "guided-backprop", "guided-gradcam"])
    assert cost == {"gradcam": 1, "hirescam": 0, "gradcam++": 0, "eigencam": 0, "gradients": 1,
                    "guided-backprop": 1, "guided-gradcam": 0}
    assert gap_explainer.cost(["eigencam", "activations"]) == {"eigencam": 1, "activations": 0}
    assert gap_explainer.cost(["occlusion"], occlusion_patch=8, occlusion_stride=8) == {"occlusion": 17}
    assert gap_explainer.cost(["scorecam"], scorecam_top_k=5) == {"scorecam": 6}
    assert gap_explainer.cost(["smoothgrad", "integrated-gradients"], smoothgrad_samples=10,
                              ig_steps=20) == {"smoothgrad": 11, "integrated-gradients": 21}


def test_gradient_cams_share_one_traced_pass(rng):
    ex = Explainer(gap_cnn(seed=3), preprocess=lambda x: x / 255.0)
    cams = ["gradcam", "gradcam-guided", "gradcam++", "xgradcam", "layercam", "hirescam"]
    ex.warmup()
    key = ("cam", ex.default_layer, "logit")
    traced = ex.passes.fn(*key)
    # A concrete function is one trace: it cannot retrace, only reject incompatible inputs.
    assert isinstance(traced, tf.types.experimental.ConcreteFunction)
    for i, target in enumerate((None, 1, 2)):
        ex.explain(random_image(rng, 20 + i, 30), cams, target=target)
    assert [k for k in ex.passes.traced() if k[0] == "cam"] == [key]
    assert ex.passes.fn(*key) is traced


def test_integrated_gradients_completeness(gap_explainer, rng):
    image = random_image(rng, 32, 32)
    r = gap_explainer.explain(image, ["integrated-gradients"], ig_steps=64, ig_baseline="black")
    ig = r["integrated-gradients"]
    assert ig.extra["completeness_error"] < 0.05 and not ig.warnings
    for baseline in ("grey", "mean", "blur", "noise"):
        out = gap_explainer.explain(image, ["integrated-gradients"], ig_steps=4, ig_baseline=baseline)
        assert np.isfinite(out["integrated-gradients"].heatmap).all()
