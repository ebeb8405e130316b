"""Ablation-CAM (Desai & Ramaswamy 2020): known answer on a linear head, agreement with a direct
unbatched implementation on a nested model with skip connections, cost and cancel."""

import keras
import numpy as np
import pytest

from explain import Explainer
from explain.errors import Cancelled
from explain_testkit import random_image

L = keras.layers


def linear_head_model(seed=3):
    """conv(relu) -> GAP -> Dense without bias or activation: logits linear in mean(A_k)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(3, use_bias=False, name="head")(x)
    return keras.Model(inp, out)


def nested_skip_model(seed=4):
    """stem conv -> backbone(conv a -> conv b -> Add(b, a) -> ReLU -> conv c) ; the head
    concatenates GAP(backbone) with GAP(stem): above layer "backbone/b", an add reads a tensor
    from below it inside the sub-model and a concat reads one from outside it."""
    keras.utils.set_random_seed(seed)
    binp = keras.Input((8, 8, 4))
    a = L.Conv2D(5, 3, padding="same", activation="relu", name="a")(binp)
    b = L.Conv2D(5, 3, padding="same", activation="relu", name="b")(a)
    s = L.Add(name="add")([b, a])
    s = L.ReLU(name="relu")(s)
    c = L.Conv2D(6, 3, padding="same", name="c")(s)
    backbone = keras.Model(binp, c, name="backbone")
    inp = keras.Input((16, 16, 3))
    stem = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="stem")(inp)
    f = backbone(stem)
    g = L.Concatenate(name="cat")([L.GlobalAveragePooling2D(name="gap")(f),
                                   L.GlobalAveragePooling2D(name="gap_stem")(stem)])
    out = L.Dense(3, activation="softmax", name="head")(g)
    return keras.Model(inp, out)


def test_linear_head_known_answer():
    model = linear_head_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(1), 16, 16)
    A = keras.Model(model.input, model.get_layer("conv").output)(ex.prepare(image)).numpy()[0]
    W = model.get_layer("head").get_weights()[0]          # (K, classes)
    m = A.mean(axis=(0, 1))
    y = m @ W
    c = int(np.argmax(y))
    assert y[c] > 0
    # linear head: y_c - y_c^k = W_kc mean(A_k)
    w = W[:, c] * m / y[c]
    expected = np.tensordot(A, w, axes=([-1], [0]))
    r = ex.explain(image, ["ablationcam"], layer="conv", target=c, ablationcam_top_k=0)["ablationcam"]
    assert r.layer == "conv" and r.target == c and not r.warnings
    np.testing.assert_allclose(r.raw, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(r.extra["weights"], w[r.extra["channels"]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.heatmap.max(), 1.0, atol=1e-3)


def _direct_ablationcam(model, x, target, k):
    """Unbatched reference: A of backbone/b from Keras sub-models, then for each kept channel the
    rest of the model applied by hand (Keras layer calls) on A with that channel zeroed."""
    backbone = model.get_layer("backbone")
    stem = keras.Model(model.input, model.get_layer("stem").output)(x)
    a = keras.Model(backbone.input, backbone.get_layer("a").output)(stem)
    A = keras.Model(backbone.input, backbone.get_layer("b").output)(stem).numpy()
    head = model.get_layer("head")

    def logits(Ab):
        s = backbone.get_layer("relu")(backbone.get_layer("add")([Ab, a]))
        f = backbone.get_layer("c")(s)
        g = model.get_layer("cat")([model.get_layer("gap")(f), model.get_layer("gap_stem")(stem)])
        return (g.numpy() @ head.kernel.numpy() + head.bias.numpy())[0]

    y = logits(A)[target]
    order = np.argsort(-A[0].mean(axis=(0, 1)), kind="stable")[:k]
    w = []
    for ch in order:
        Ak = A.copy()
        Ak[..., ch] = 0
        w.append((y - logits(Ak)[target]) / y)
    return np.tensordot(A[0][..., order], np.array(w), axes=([-1], [0])), order, y


@pytest.mark.parametrize("top_k", [0, 3])
def test_matches_direct_unbatched_implementation_on_nested_skip_model(top_k):
    model = nested_skip_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(2), 16, 16)
    x = ex.prepare(image)
    target = int(np.argmax(model(x).numpy()[0]))
    expected, order, y = _direct_ablationcam(model, x, target, top_k or 5)
    assert abs(y) > 1e-3
    results = [ex.explain(image, ["ablationcam"], layer="backbone/b", target=target,
                          ablationcam_top_k=top_k, batch_size=bs)["ablationcam"] for bs in (2, 16)]
    for r in results:
        assert r.extra["channels"] == [int(c) for c in order]
        np.testing.assert_allclose(r.raw, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(results[0].raw, results[1].raw, rtol=1e-5, atol=1e-6)
    # the resumed pass on the unmodified activations reproduces the model's outputs
    A = keras.Model(model.get_layer("backbone").input,
                    model.get_layer("backbone").get_layer("b").output)(
        keras.Model(model.input, model.get_layer("stem").output)(x)).numpy()
    below = ex.passes.fn("below", "backbone/b")(x.astype(np.float32))
    out = ex.passes.fn("ablate", "backbone/b")(A, list(below)).numpy()
    logits = keras.Model(model.input, model.get_layer("cat").output)(x).numpy() @ \
        model.get_layer("head").kernel.numpy() + model.get_layer("head").bias.numpy()
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)


def test_cost(gap_explainer):
    assert gap_explainer.cost(["ablationcam"], ablationcam_top_k=5) == {"ablationcam": 6}
    assert gap_explainer.cost(["ablationcam"], ablationcam_top_k=0) == {"ablationcam": 9}
    assert gap_explainer.cost(["scorecam", "ablationcam"], scorecam_top_k=4, ablationcam_top_k=3) \
        == {"scorecam": 5, "ablationcam": 3}


def test_progress_and_cancel(gap_explainer, rng):
    image = random_image(rng, 32, 32)
    seen = []
    gap_explainer.explain(image, ["ablationcam"], progress=seen.append, ablationcam_top_k=8,
                          batch_size=2)
    assert seen[0] == pytest.approx(0.0) and seen[-1] == pytest.approx(1.0) and len(seen) >= 6
    assert all(a <= b + 1e-9 for a, b in zip(seen, seen[1:]))

    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 4
    with pytest.raises(Cancelled):
        gap_explainer.explain(image, ["ablationcam"], cancel=cancel, ablationcam_top_k=8, batch_size=2)
    assert len(calls) == 5   # stopped at the first poll that said so, between batches
