"""Layer fusion: a CAM over several layers at once, each layer's map normalised (ReLU, scaled to
[0, 1]), resized to the finest layer's resolution and averaged (pytorch-grad-cam's
aggregate_multi_layers), all layers tapped by one forward + backward pass."""

import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from explain import METHODS, Explainer
from explain import formulas as F
from explain.errors import MethodNotApplicable
from explain_testkit import gap_cnn, random_image

CAMS = ["gradcam", "gradcam-guided", "gradcam++", "xgradcam", "layercam", "hirescam"]


def test_fusing_one_map_is_the_unfused_map(rng):
    raw = rng.normal(size=(7, 9)).astype(np.float32)
    for mode in ("relu", "minmax"):
        fused, _ = F.fuse([raw], mode=mode)
        np.testing.assert_array_equal(fused, F.normalize(raw, (7, 9), mode)[0])


def test_one_layer_as_a_list_is_the_unfused_result(gap_explainer, rng):
    image = random_image(rng, 32, 32)
    plain = gap_explainer.explain(image, CAMS + ["eigencam"], "c1")
    for layer in (["c1"], ("c1", "c1")):
        listed = gap_explainer.explain(image, CAMS + ["eigencam"], layer)
        for m in plain:
            assert listed[m].layer == "c1"
            np.testing.assert_array_equal(listed[m].heatmap, plain[m].heatmap)


def _hand_gradcam(model, x):
    """Grad-CAM of the logit of the top class at c1 (32x32) and r2 (16x16), by hand: the model's
    layers called one by one, a GradientTape per layer."""
    c1, pool, c2, r2, head = (model.get_layer(n) for n in ("c1", "pool", "c2", "r2", "head"))
    x = tf.constant(x, tf.float32)
    maps = []
    for which in (0, 1):
        with tf.GradientTape() as tape:
            a1 = c1(x)
            a2 = r2(c2(pool(a1)))
            logits = tf.matmul(tf.reduce_mean(a2, axis=(1, 2)), head.kernel) + head.bias
            t = int(tf.argmax(logits[0]))
            s = logits[0, t]
        A = (a1, a2)[which]
        G = tape.gradient(s, A)[0].numpy()
        w = G.mean(axis=(0, 1))
        maps.append(np.maximum(np.tensordot(A[0].numpy(), w, axes=([-1], [0])), 0))
    return maps, t


def test_fused_gradcam_is_the_mean_of_the_normalised_resized_maps(gap_model, gap_explainer, rng):
    image = random_image(rng, 32, 32)
    (m1, m2), t = _hand_gradcam(gap_model, image.astype(np.float32)[None] / 255.0)
    assert m1.shape == (32, 32) and m2.shape == (16, 16)
    m1, m2 = m1 / m1.max(), m2 / m2.max()
    expect = (m1 + cv2.resize(m2.astype(np.float32), (32, 32), interpolation=cv2.INTER_LINEAR)) / 2
    r = gap_explainer.explain(image, ["gradcam"], ["r2", "c1"])["gradcam"]
    assert r.target == t and r.layer == "c1 + r2" and r.extra["layers"] == ["c1", "r2"]
    assert r.raw.shape == (32, 32)
    np.testing.assert_allclose(r.raw, expect, atol=2e-4)
    np.testing.assert_allclose(r.heatmap, expect / expect.max(), atol=2e-4)
    # not the max (torch-cam's fuse) nor either layer alone
    assert np.abs(r.raw - np.maximum(m1, cv2.resize(m2.astype(np.float32), (32, 32)))).max() > 0.05


def test_six_gradient_cams_over_two_layers_cost_one_traced_pass(rng):
    ex = Explainer(gap_cnn(seed=3), preprocess=lambda x: x / 255.0)
    assert ex.cost(CAMS, ["r2", "c1"]) == {m: int(m == "gradcam") for m in CAMS}
    assert ex.cost(CAMS + ["eigencam"], ["c1", "r2"])["eigencam"] == 0   # A from the same pass
    ex.warmup(["c1", "r2"], CAMS)
    for target in (None, 1):
        results = ex.explain(random_image(rng, 20, 30), CAMS + ["eigencam"], ["r2", "c1"], target)
        assert {r.layer for r in results.values()} == {"c1 + r2"}
    assert [k for k in ex.passes.traced() if k[0] in ("cam", "tap")] == [("cam", ("c1", "r2"), "logit")]


def test_taps_of_several_layers_share_one_forward(rng):
    ex = Explainer(gap_cnn(seed=3), preprocess=lambda x: x / 255.0)
    assert ex.cost(["eigencam"], ["c1", "c2", "r2"]) == {"eigencam": 1}
    r = ex.explain(random_image(rng, 24, 24), ["eigencam"], ["c1", "c2", "r2"])["eigencam"]
    assert r.layer == "c1 + c2 + r2" and r.raw.shape == (32, 32)
    assert [k for k in ex.passes.traced() if k[0] in ("cam", "tap")] == [("tap", ("c1", "c2", "r2"), "logit")]


@pytest.mark.parametrize("method", ["activations", "cam", "scorecam", "ablationcam"])
def test_methods_that_take_one_layer_say_so(gap_explainer, rng, method):
    assert not METHODS[method].fuses
    with pytest.raises(MethodNotApplicable, match="takes one layer"):
        gap_explainer.explain(random_image(rng, 16, 16), ["gradcam", method], ["c1", "r2"])


def test_cli_takes_several_layers(tmp_path):
    from PIL import Image

    from models.cli import explain_main as run

    model, image, out = tmp_path / "tiny.keras", tmp_path / "img.png", tmp_path / "out"
    gap_cnn(seed=6).save(model)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(image)
    code = run([str(image), "--model", str(model), "--method", "gradcam", "layercam",
                "--layer", "r2", "c1", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {m: s["layer"] for m, s in summary["methods"].items()} == {"gradcam": "c1 + r2",
                                                                       "layercam": "c1 + r2"}
    heat = np.load(out / "gradcam.npy")
    assert heat.shape == (30, 45) and 0 <= heat.min() <= heat.max() <= 1
