"""Guided backprop: the ReLU rule applies to ReLU layers and ReLU activations alike, and the
user's model is left exactly as it was."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import Explainer
from explain_testkit import random_image

L = keras.layers


def relu_everywhere_model():
    """ReLU as a conv's activation, as a ReLU layer and as an Activation layer."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(4, 3, name="c2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.Conv2D(4, 3, name="c3")(x)
    x = L.Activation("relu", name="relu3")(x)
    x = L.Flatten()(x)
    out = L.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inp, out)


@tf.custom_gradient
def _guided_relu(z):
    return tf.nn.relu(z), lambda dy: dy * tf.cast(dy > 0, dy.dtype) * tf.cast(z > 0, dy.dtype)


def _reference(model, x, target):
    """Guided backprop written out with the layers' weights and a guided ReLU."""
    def conv(name, h):
        k, b = model.get_layer(name).get_weights()
        return tf.nn.conv2d(h, k, 1, "VALID") + b
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = _guided_relu(conv("c1", x))
        h = _guided_relu(conv("c2", h))
        h = _guided_relu(conv("c3", h))
        k, b = model.get_layer("head").get_weights()
        logit = tf.matmul(tf.reshape(h, [1, -1]), k) + b
        s = logit[0, target]
    return tape.gradient(s, x).numpy()[0]


def _model_gradient(model, x, target):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)[0, target]
    return tape.gradient(y, x).numpy()


def test_guided_backprop_matches_reference_and_leaves_model_unchanged():
    model = relu_everywhere_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(5), 12, 12)
    x = ex.prepare(image)
    before = _model_gradient(model, x, 1)
    out_before = model(x).numpy()

    guided, _, t = ex.input_gradients(x, 1, guided=True)
    ref = _reference(model, x, 1)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(guided[0], ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    vanilla, _, _ = ex.input_gradients(x, 1)
    assert not np.allclose(vanilla, guided, atol=1e-6 * np.abs(ref).max())  # the rule changed things

    r = ex.explain(image, ["guided-backprop", "guided-gradcam"], target=1, layer="relu3")
    # normalised by its peak: 1 up to float32 rounding of x / max (1 ulp seen on AMD EPYC)
    assert r["guided-backprop"].heatmap.max() == pytest.approx(1.0, abs=1e-6)

    # the user's model: same activations, same outputs, same gradients as before
    assert model.get_layer("c1").activation is keras.activations.relu
    assert model.get_layer("head").activation is keras.activations.softmax
    np.testing.assert_array_equal(model(x).numpy(), out_before)
    np.testing.assert_array_equal(_model_gradient(model, x, 1), before)


def test_model_without_relu_is_flagged():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(3, 3, activation="tanh", name="conv")(inp)
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    r = ex.explain(random_image(np.random.default_rng(0), 8, 8), ["guided-backprop", "gradients"])
    assert any("no ReLU" in w for w in r["guided-backprop"].warnings)
    np.testing.assert_allclose(r["guided-backprop"].raw, r["gradients"].raw, rtol=1e-6)
