"""Layer addressing (nested sub-models by path) and the errors a person sees for bad choices."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import Explainer
from explain.errors import ExplainError, ImageError, LayerError, MethodNotApplicable
from explain_testkit import flatten_cnn, random_image

L = keras.layers


def base_model():
    inp = keras.Input((24, 24, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    return keras.Model(inp, x, name="base")


def transfer_model(frozen=True):
    """Sequential([base, GAP, Dense]) with a functional base, frozen as in transfer learning."""
    keras.utils.set_random_seed(11)
    base = base_model()
    base.trainable = not frozen
    return keras.Sequential([keras.Input((24, 24, 3)), base, L.GlobalAveragePooling2D(),
                             L.Dense(5, activation="softmax")]), base


def test_nested_paths_listed_and_default():
    model, _ = transfer_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    layers = ex.spatial_layers()
    assert "base/conv_a" in layers and "base/conv_b" in layers
    assert ex.default_layer == "base/conv_b"
    assert ex.graph.resolve("base") == "base/conv_b"   # the sub-model itself = its last layer


def test_nested_layer_tensor_is_the_inner_layers_output():
    """The rebuilt graph reaches the inner layer: its tensor equals the base's own sub-model output,
    and the flat graph's final output equals the model's."""
    model, base = transfer_model()
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    x = ex.prepare(random_image(np.random.default_rng(0), 30, 20))
    out, taps = ex.graph.run(tf.constant(x), ("base/conv_a",), logits=False)
    ref = keras.Model(base.input, base.get_layer("conv_a").output)(x)
    np.testing.assert_allclose(taps["base/conv_a"].numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-7)


def test_frozen_nested_base_gradcam_and_cam():
    """Frozen weights are not watched by the tape; explanations must still have gradients, and
    CAM crosses the nested model's boundary to its GAP + Dense head."""
    model, _ = transfer_model(frozen=True)
    ex = Explainer(model, preprocess=lambda x: x / 255.0)
    image = random_image(np.random.default_rng(1), 24, 24)
    r = ex.explain(image, ["gradcam", "cam", "activations"], layer="base/conv_b")
    assert np.abs(r["gradcam"].raw).max() > 0
    h, w = r["cam"].raw.shape
    np.testing.assert_allclose(r["gradcam"].raw * h * w, r["cam"].raw, rtol=1e-4,
                               atol=1e-5 * np.abs(r["cam"].raw).max())
    r2 = ex.explain(image, ["gradcam", "activations"], layer="base/conv_a")
    assert r2["gradcam"].layer == "base/conv_a"
    assert r2["activations"].raw.shape == (24, 24) and r["activations"].raw.shape == (12, 12)
    with pytest.raises(MethodNotApplicable, match="GlobalAveragePooling"):
        ex.explain(image, ["cam"], layer="base/conv_a")


def test_functional_outer_model_with_nested_base():
    keras.utils.set_random_seed(2)
    base = base_model()
    inp = keras.Input((24, 24, 3))
    x = L.Rescaling(1 / 255.0)(inp)
    x = base(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3)(x)
    ex = Explainer(keras.Model(inp, out))
    r = ex.explain(random_image(np.random.default_rng(2), 24, 24), ["hirescam"], layer="base/conv_a")
    assert r["hirescam"].layer == "base/conv_a" and r["hirescam"].raw.shape == (24, 24)


def test_bad_layers_give_clear_errors():
    ex = Explainer(flatten_cnn())
    image = random_image(np.random.default_rng(0), 16, 16)
    with pytest.raises(LayerError, match="no layer 'nope'"):
        ex.explain(image, ["gradcam"], layer="nope")
    with pytest.raises(LayerError, match="no spatial output"):
        ex.explain(image, ["gradcam"], layer="logits")
    with pytest.raises(LayerError, match="no spatial output"):
        ex.explain(image, ["gradcam"], layer="flat")
    with pytest.raises(MethodNotApplicable, match="GlobalAveragePooling"):
        ex.explain(image, ["cam"])
    with pytest.raises(ExplainError, match="unknown method"):
        ex.explain(image, ["gradcam", "magic"])
    with pytest.raises(ExplainError, match="target"):
        ex.explain(image, ["gradcam"], target=3)
    with pytest.raises(ExplainError, match="unknown option"):
        ex.explain(image, ["gradcam"], patch=3)
    with pytest.raises(ExplainError, match="must be a number"):
        ex.explain(image, ["smoothgrad"], smoothgrad_samples="many")
    with pytest.raises(ExplainError, match="fill"):
        ex.explain(image, ["occlusion"], occlusion_fill="purple")
    with pytest.raises(ExplainError, match="score"):
        ex.explain(image, ["gradcam"], score="loss")
    with pytest.raises(ImageError):
        ex.explain(image.astype(np.float32), ["gradcam"])
    with pytest.raises(ImageError):
        ex.explain(np.zeros((4, 4, 5), np.uint8), ["gradcam"])
    for err in (LayerError, MethodNotApplicable):
        assert issubclass(err, ExplainError)


def test_models_without_spatial_layers_or_graph():
    inp = keras.Input((8, 8, 3))
    ex = Explainer(keras.Model(inp, L.Dense(2)(L.Flatten()(inp))))
    assert ex.spatial_layers() == [] and ex.default_layer is None
    ex.warmup()   # nothing to trace for CAMs: must not fail (the registry warms every model)
    image = random_image(np.random.default_rng(0), 8, 8)
    with pytest.raises(LayerError, match="no layer with a spatial output"):
        ex.explain(image, ["gradcam"])
    assert ex.explain(image, ["gradients"])["gradients"].heatmap.shape == (8, 8)
    with pytest.raises(ExplainError, match="build it"):
        Explainer(keras.Sequential([L.Dense(2)]))
    two = keras.Input((4, 4, 2))
    with pytest.raises(ExplainError, match="channels"):
        Explainer(keras.Model(two, L.Dense(2)(L.Flatten()(two))))
