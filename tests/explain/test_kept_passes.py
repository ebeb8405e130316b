"""Kept passes (explain.kept): a pass traced by one Explainer is loaded, not traced, by the next one
of the same architecture; it computes exactly what a fresh trace computes, on the loading model's
own weights; a damaged or planted file is dropped and the pass traced."""
import hashlib
import json
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import Explainer
from explain.kept import KeptPasses
from explain_testkit import gap_cnn, random_image

METHODS = ["gradcam", "gradcam++", "eigencam", "cam", "gradients", "guided-backprop", "occlusion"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """One architecture saved once: every load has the same layer and variable names."""
    path = tmp_path_factory.mktemp("kept-model") / "gap.keras"
    gap_cnn(seed=3).save(path)
    return path


def fresh(model_file, folder, seed=None):
    model = keras.saving.load_model(model_file)
    if seed is not None:   # same architecture, other weights
        rng = np.random.default_rng(seed)
        model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return Explainer(model, preprocess=lambda x: x / 255.0, kept_passes=folder)


def kinds(explainer) -> dict:
    """Pass key -> 'kept' (loaded from a file) or 'traced'."""
    return {key: "kept" if getattr(fn, "kept", False) else "traced" for key, fn in explainer.passes._fns.items()}


def test_a_second_explainer_loads_the_passes_and_gets_the_same_maps(model_file, tmp_path):
    image = random_image(np.random.default_rng(0), 40, 50)
    first = fresh(model_file, tmp_path / "kept")
    expected = first.explain(image, METHODS)
    assert set(kinds(first).values()) == {"traced"}
    assert len(list((tmp_path / "kept").glob("*.pb"))) == len(first.passes._fns)

    second = fresh(model_file, tmp_path / "kept")
    got = second.explain(image, METHODS)
    assert set(kinds(second).values()) == {"kept"}, kinds(second)
    for m in METHODS:
        np.testing.assert_allclose(got[m].heatmap, expected[m].heatmap, atol=1e-5, err_msg=m)
        assert got[m].target == expected[m].target
    # Loaded passes keep the traced ones' signatures: any batch size, no retrace.
    g, out, t = second.passes.input_gradients(np.zeros((3, 32, 32, 3), np.float32), 1)
    assert g.shape == (3, 32, 32, 3) and out.shape == (3, 4) and t == 1


def test_fused_layers_and_contrast_keep_their_nesting(model_file, tmp_path):
    image = random_image(np.random.default_rng(1), 32, 32)
    kwargs = dict(layer=("c1", "r2"), target=2, contrast=0)
    expected = fresh(model_file, tmp_path / "kept").explain(image, ["gradcam", "layercam"], **kwargs)
    second = fresh(model_file, tmp_path / "kept")
    got = second.explain(image, ["gradcam", "layercam"], **kwargs)
    assert "kept" in kinds(second).values()
    for m in ("gradcam", "layercam"):
        np.testing.assert_allclose(got[m].heatmap, expected[m].heatmap, atol=1e-5, err_msg=m)


def test_a_kept_pass_reads_the_loading_models_weights(model_file, tmp_path):
    """The graph holds no weights: a model of the same architecture with other weights gets its
    own maps from the kept pass, equal to a fresh trace on it."""
    image = random_image(np.random.default_rng(2), 32, 32)
    fresh(model_file, tmp_path / "kept").explain(image, ["gradcam", "gradients"])
    other = fresh(model_file, tmp_path / "kept", seed=9)
    got = other.explain(image, ["gradcam", "gradients"])
    assert set(kinds(other).values()) == {"kept"}
    traced = fresh(model_file, None, seed=9).explain(image, ["gradcam", "gradients"])
    for m in ("gradcam", "gradients"):
        np.testing.assert_allclose(got[m].heatmap, traced[m].heatmap, atol=1e-5, err_msg=m)
        assert got[m].target == traced[m].target


def test_another_architecture_does_not_find_them(model_file, tmp_path):
    fresh(model_file, tmp_path / "kept").explain(random_image(np.random.default_rng(3), 32, 32), ["gradcam"])
    other = Explainer(gap_cnn(size=(40, 40), seed=3), preprocess=lambda x: x / 255.0, kept_passes=tmp_path / "kept")
    other.explain(random_image(np.random.default_rng(3), 40, 40), ["gradcam"])
    assert set(kinds(other).values()) == {"traced"}


def test_a_damaged_file_is_dropped_and_traced_again(model_file, tmp_path, caplog):
    image = random_image(np.random.default_rng(4), 32, 32)
    expected = fresh(model_file, tmp_path / "kept").explain(image, ["gradcam"])["gradcam"].heatmap
    (graph,) = (tmp_path / "kept").glob("*.pb")
    graph.write_bytes(b"\x00garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="camlens.kept"):
        second = fresh(model_file, tmp_path / "kept")
        got = second.explain(image, ["gradcam"])["gradcam"].heatmap
    assert set(kinds(second).values()) == {"traced"}
    assert "dropped" in caplog.text
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # ... and kept afresh: the next one loads again.
    third = fresh(model_file, tmp_path / "kept")
    third.explain(image, ["gradcam"])
    assert set(kinds(third).values()) == {"kept"}


def test_a_planted_graph_that_would_write_a_file_is_refused(model_file, tmp_path, caplog):
    """A graph with a valid card whose nodes write a file is refused before anything runs."""
    image = random_image(np.random.default_rng(5), 32, 32)
    fresh(model_file, tmp_path / "kept").explain(image, ["gradcam"])
    (card_path,) = (tmp_path / "kept").glob("*.json")
    victim = tmp_path / "planted.txt"

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.int32)], autograph=False)
    def evil(x, t, c):
        with tf.control_dependencies([tf.io.write_file(str(victim), "pwned")]):
            return tf.identity(x)

    concrete = evil.get_concrete_function()
    data = concrete.graph.as_graph_def().SerializeToString()
    card = json.loads(card_path.read_text())

    card.update(sha256=hashlib.sha256(data).hexdigest(), captures=[],
                inputs=[t.name for t in concrete.inputs], outputs=[concrete.outputs[0].name], nesting=None)
    card_path.with_suffix(".pb").write_bytes(data)
    card_path.write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING, logger="camlens.kept"):
        second = fresh(model_file, tmp_path / "kept")
        second.explain(image, ["gradcam"])
    assert "WriteFile" in caplog.text
    assert not victim.exists()
    assert set(kinds(second).values()) == {"traced"}


def test_the_folder_must_be_private(model_file, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ValueError, match="writable by other users"):
        KeptPasses(shared, keras.saving.load_model(model_file))


def test_the_folder_stays_within_its_size_limit(model_file, tmp_path):
    """Past max_bytes the oldest passes go, card and graph together; the newest always stays."""
    explainer = fresh(model_file, tmp_path / "kept")
    explainer.passes.kept.max_bytes = 1   # every new pass pushes the older ones out
    explainer.explain(random_image(np.random.default_rng(6), 32, 32), ["gradcam", "gradients"])
    graphs, cards = list((tmp_path / "kept").glob("*.pb")), list((tmp_path / "kept").glob("*.json"))
    assert len(graphs) == 1 and [c.stem for c in cards] == [graphs[0].stem]
