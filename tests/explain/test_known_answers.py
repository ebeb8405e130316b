"""Known-answer tests: maps computed by hand or by an independent computation."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import Explainer
from explain import formulas as F
from explain_testkit import gap_cnn, random_image

L = keras.layers


def hand_model():
    """2x2 RGB input -> 1x1 conv picking R and G -> Flatten -> Dense(2, softmax).

    Weights are set so that the gradient of class 0's logit w.r.t. the conv output is
    G_R = [[1, 2], [3, 4]] and G_G = -1 everywhere.
    """
    inp = keras.Input((2, 2, 3))
    x = L.Conv2D(2, 1, use_bias=False, name="conv")(inp)
    x = L.Flatten()(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    m = keras.Model(inp, out)
    m.get_layer("conv").set_weights([np.array([[1, 0], [0, 1], [0, 0]], np.float32).reshape(1, 1, 3, 2)])
    v = np.zeros((8, 2), np.float32)
    v[:, 0] = [1, -1, 2, -1, 3, -1, 4, -1]   # flatten order (i, j, k)
    m.get_layer("head").set_weights([v, np.zeros(2, np.float32)])
    return m


def test_hand_computed_cams():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = [[10, 0], [0, 20]]   # A_R
    image[..., 1] = 5                    # A_G
    ex = Explainer(hand_model())
    assert ex.default_layer == "conv"
    r = ex.explain(image, ["gradcam", "hirescam", "layercam", "xgradcam", "gradcam++"], target=0)
    # Grad-CAM: w_R = mean(G_R) = 2.5, w_G = -1 -> 2.5 A_R - A_G (the pre-softmax logit's gradient;
    # the softmax's would be scaled by p(1-p) and mix in class 1)
    np.testing.assert_allclose(r["gradcam"].raw, [[20, -5], [-5, 45]], rtol=1e-6)
    np.testing.assert_allclose(r["gradcam"].heatmap, [[20 / 45, 0], [0, 1]], rtol=1e-6)
    np.testing.assert_allclose(r["hirescam"].raw, [[5, -5], [-5, 75]], rtol=1e-6)
    np.testing.assert_allclose(r["layercam"].raw, [[10, 0], [0, 80]], rtol=1e-6)
    # XGrad-CAM: w_R = (10*1 + 20*4) / 30 = 3, w_G = sum(5 * -1) / 20 = -1
    np.testing.assert_allclose(r["xgradcam"].raw, [[25, -5], [-5, 55]], rtol=1e-5)
    # Grad-CAM++: alpha = g^2 / (2 g^2 + 30 g^3) for the R channel (sum A_R = 30), G channel has
    # no positive gradient -> w_R = sum_g g / (2 + 30 g) ... times relu(g)
    w_r = sum(g * g * g / (2 * g * g + 30 * g ** 3) for g in (1, 2, 3, 4))
    np.testing.assert_allclose(r["gradcam++"].raw, [[10 * w_r, 0], [0, 20 * w_r]], rtol=1e-5)
    assert all(res.target == 0 and res.layer == "conv" for res in r.values())


def test_hand_computed_eigen_grad_cam():
    """Eigen-Grad-CAM: the first principal component of A * G. Here A_R * G_R = [[10, 0], [0, 80]]
    and A_G * G_G = -5 everywhere, which centring removes: the component is the R channel, and
    the map is A_R * G_R minus its mean 22.5, signed to agree with mean_k(A * G) (positive here).
    The counterfactual (-G) flips it."""
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = [[10, 0], [0, 20]]
    image[..., 1] = 5
    ex = Explainer(hand_model())
    r = ex.explain(image, ["eigengradcam"], target=0)["eigengradcam"]
    np.testing.assert_allclose(r.raw, [[-12.5, -22.5], [-22.5, 57.5]], rtol=1e-5)
    np.testing.assert_allclose(r.heatmap, [[0, 0], [0, 1]], atol=1e-6)
    cf = ex.explain(image, ["eigengradcam"], target=0, counterfactual=True)["eigengradcam"]
    np.testing.assert_allclose(cf.raw, -r.raw, rtol=1e-5)


def test_gradcam_equals_cam_up_to_scale_on_gap_dense(gap_explainer, rng):
    image = random_image(rng, 40, 30)
    r = gap_explainer.explain(image, ["cam", "gradcam"])
    h, w = r["cam"].raw.shape
    # d logit_c / dA_kij = W_kc / (h w) for GAP + Dense, so Grad-CAM = CAM / (h w) exactly
    np.testing.assert_allclose(r["gradcam"].raw * h * w, r["cam"].raw, rtol=1e-4,
                               atol=1e-5 * np.abs(r["cam"].raw).max())
    np.testing.assert_allclose(r["gradcam"].heatmap, r["cam"].heatmap, atol=1e-4)
    assert r["cam"].layer == "r2"


def quadrant_model(seed=1):
    """The score depends only on the top-left quadrant: the layer's output is cropped to it."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = L.MaxPooling2D(2, name="pool")(x)              # 16x16: the explained layer
    x = L.Cropping2D(((0, 8), (0, 8)), name="crop")(x)  # keep the top-left 8x8 cells
    x = L.Flatten()(x)
    out = L.Dense(3, name="logits")(x)
    return keras.Model(inp, out)


def _mass_inside(heatmap, limit):
    return heatmap[:limit, :limit].sum() / heatmap.sum()


def test_one_quadrant_model():
    """HiResCAM, Layer-CAM, gradients and occlusion put >= 90% of their mass in the quadrant grown
    by the receptive-field margin; Grad-CAM does not.

    Margin: two 3x3 convs then a 2x2 pool: a quadrant cell reaches 2 input pixels past the
    quadrant (rows/cols < 18); occlusion adds its patch (4): rows/cols < 21. Grad-CAM averages
    the gradients over all 16x16 positions, so each channel's weight multiplies that channel's
    activations everywhere: on an image with the same statistics everywhere its map spreads over
    the whole image (HiResCAM paper, Draelos & Carin 2020), and only ~1/3 of its mass is inside.
    """
    ex = Explainer(quadrant_model(), preprocess=lambda x: x / 255.0)
    assert ex.default_layer == "crop"   # the last layer with spatial size > 1
    image = random_image(np.random.default_rng(3), 32, 32)
    r = ex.explain(image, ["hirescam", "layercam", "gradients", "integrated-gradients", "guided-backprop",
                           "occlusion", "gradcam"], layer="pool", occlusion_patch=4, occlusion_stride=2)
    for m in ("hirescam", "layercam", "gradients", "integrated-gradients", "guided-backprop"):
        assert _mass_inside(r[m].heatmap, 18) >= 0.9, m
    assert _mass_inside(r["occlusion"].heatmap, 21) >= 0.9
    assert r["gradcam"].heatmap.sum() > 0
    assert _mass_inside(r["gradcam"].heatmap, 18) < 0.6
    assert _mass_inside(r["gradcam"].heatmap, 18) < _mass_inside(r["hirescam"].heatmap, 18) - 0.3


def test_gradcam_pp_closed_form_matches_nested_tapes():
    """Paper alpha (Chattopadhyay et al. eq. 19) with 2nd and 3rd derivatives of Y = exp(S) from
    nested tapes, on a network whose head is piecewise linear, equals the closed form."""
    keras.utils.set_random_seed(5)
    conv = L.Conv2D(3, 3, padding="same", activation="relu", name="conv")
    flat, d1, d2 = L.Flatten(), L.Dense(6, activation="relu"), L.Dense(3)
    inp = keras.Input((5, 5, 3))
    model = keras.Model(inp, d2(d1(flat(conv(inp)))))
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(7), 5, 5)
    res = ex.explain(image, ["gradcam++"], target=1)["gradcam++"]

    x = tf.constant(ex.prepare(image))
    A = tf.constant(conv(x))
    with tf.GradientTape() as t3:
        t3.watch(A)
        with tf.GradientTape() as t2:
            t2.watch(A)
            with tf.GradientTape() as t1:
                t1.watch(A)
                Y = tf.exp(d2(d1(flat(A)))[0, 1])
            g1 = tf.reshape(t1.gradient(Y, A), [-1])
        d2y = tf.linalg.diag_part(tf.reshape(t2.jacobian(g1, A), [75, 75]))
    d3y = tf.linalg.diag_part(tf.reshape(t3.jacobian(d2y, A), [75, 75]))
    d1y, d2y, d3y = (np.reshape(v.numpy(), (5, 5, 3)).astype(np.float64) for v in (g1, d2y, d3y))
    a = A.numpy()[0].astype(np.float64)
    denom = 2 * d2y + a.sum(axis=(0, 1)) * d3y
    alpha = np.where(denom != 0, d2y / np.where(denom != 0, denom, 1), 0)
    weights = (alpha * np.maximum(d1y, 0)).sum(axis=(0, 1))
    paper_map = (a * weights).sum(axis=-1)
    assert np.abs(paper_map).max() > 0
    # dY/dA = exp(S) G: the paper's map is the closed form's times exp(S)
    np.testing.assert_allclose(res.raw * float(Y), paper_map, rtol=1e-4, atol=1e-6 * np.abs(paper_map).max())
    G = d1y / float(Y)
    np.testing.assert_allclose(F.gradcam_pp_alpha(a, G), alpha, rtol=1e-4, atol=1e-9)


def test_eigencam_is_first_principal_component():
    rng = np.random.default_rng(0)
    pattern = rng.random((4, 5))
    A = pattern[..., None] * np.array([1.0, 2.0, 0.5]) + 3.0   # rank one after centring
    m = F.eigencam(A)
    c = pattern - pattern.mean()
    np.testing.assert_allclose(m / np.abs(m).max(), c / np.abs(c).max(), atol=1e-9)


@pytest.mark.parametrize("shape", [(12, 12, 32), (3, 4, 64)])   # hw > K and hw <= K
def test_eigencam_matches_the_svd_on_full_rank_activations(shape):
    rng = np.random.default_rng(1)
    A = rng.random(shape) * np.linspace(0.2, 3.0, shape[-1])
    M = A.reshape(-1, shape[-1]) - A.reshape(-1, shape[-1]).mean(axis=0)
    u, s, vt = np.linalg.svd(M, full_matrices=False)
    expected = (M @ vt[0]).reshape(shape[:2])
    expected = expected if np.sum(expected * A.mean(axis=-1)) >= 0 else -expected
    np.testing.assert_allclose(F.eigencam(A), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_eigencam_with_nearly_tied_top_components_is_still_exact():
    """sigma2 = 0.99999 sigma1: power iteration cannot separate them in its budget; the eigh
    fallback still returns the first component."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(36, 6))
    q, _ = np.linalg.qr(X - X.mean(axis=0))                     # orthonormal, zero-mean columns
    r, _ = np.linalg.qr(rng.normal(size=(4, 4)))                # right singular vectors
    M = (q[:, :4] * np.array([5.0, 4.99995, 1.0, 0.5])) @ r.T   # singular values, nearly tied top
    m = F.eigencam(M.reshape(6, 6, 4) + 1.0).ravel()
    np.testing.assert_allclose(np.abs(m), np.abs(5.0 * q[:, 0]), atol=1e-6)


def test_scorecam_weights_are_softmax_of_masked_scores():
    """Score-CAM by hand: mask the input with each channel's normalised upsampled map, score it,
    softmax the scores, weight the channels."""
    ex = Explainer(quadrant_model(), preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(3), 32, 32)
    r = ex.explain(image, ["scorecam", "activations"], layer="pool", scorecam_top_k=3,
                   activations_top_k=6)
    sc = r["scorecam"]
    A = np.moveaxis(r["activations"].extra["maps"], 0, -1)       # top-6 channels by mean
    chans = r["activations"].extra["channels"]
    assert sc.extra["channels"] == chans[:3]
    x = ex.prepare(image)
    scores = []
    for k in range(3):
        a = A[..., k]
        m = cv2.resize((a - a.min()) / (a.max() - a.min()), (32, 32), interpolation=cv2.INTER_LINEAR)
        scores.append(ex.model(x * m[None, :, :, None]).numpy()[0, sc.target])
    expected = F.weighted_sum(A[..., :3], F.softmax(np.array(scores)))
    np.testing.assert_allclose(sc.raw, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def test_gap_cnn_cam_on_grey_model():
    ex = Explainer(gap_cnn(channels=1, seed=2), preprocess=lambda x: x / 255.0)
    assert ex.channels == 1
    r = ex.explain(random_image(np.random.default_rng(1), 20, 24), ["cam", "gradcam"])
    assert r["cam"].heatmap.shape == (20, 24)
    np.testing.assert_allclose(r["gradcam"].heatmap, r["cam"].heatmap, atol=1e-4)
