"""Fixtures for the models tests: tiny real Keras models, a user folder, a private KERAS_HOME."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Scene seeds no training run used (models.train draws 0.. and 5_000_000..).
FRESH_SEEDS = 7_000_000


def tiny_classifier(input_shape=(32, 32, 3), classes=3, seed=0):
    """A real conv classifier with random weights: conv -> GAP -> Dense softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache (KERAS_HOME/models), so nothing from ~/.keras leaks in."""
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A models folder with good, grayscale, CIFAR-style .h5 files and six broken ones.

    lambda.keras carries a Lambda whose code would create `ran.txt` if it ever executed."""
    import keras

    folder = tmp_path / "user_models"
    folder.mkdir()
    good = tiny_classifier((32, 32, 3), 3, seed=1)
    good.save(folder / "good.keras")
    (folder / "good.keras.json").write_text(json.dumps({
        "display_name": "Good one", "labels": ["ant", "bee", "cat"], "preprocessing": "-1-1",
        "default_layer": "conv", "description": "A **tiny** model."}))
    tiny_classifier((28, 28, 1), 10, seed=2).save(folder / "digits.keras")
    tiny_classifier((32, 32, 3), 10, seed=3).save(folder / "cifar.h5")

    marker = folder / "ran.txt"
    inp = keras.Input((16, 16, 3))
    touch = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t * 2.0)[1]")
    x = keras.layers.Lambda(touch)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(2)(x)).save(folder / "lambda.keras")
    marker.unlink()

    data = (folder / "good.keras").read_bytes()
    (folder / "corrupt.keras").write_bytes(data[: len(data) // 2])
    inp = keras.Input((20,))
    keras.Model(inp, keras.layers.Dense(3)(inp)).save(folder / "vector.keras")
    inp = keras.Input((16, 16, 3))
    keras.Model(inp, keras.layers.Conv2D(2, 1)(inp)).save(folder / "segmenter.keras")
    good.save_weights(folder / "only.weights.h5")
    (folder / "only.weights.h5").rename(folder / "weightsonly.h5")
    tiny_classifier((32, 32, 3), 3, seed=4).save(folder / "badside.keras")
    (folder / "badside.keras.json").write_text(json.dumps({"labels": ["a", "b"]}))
    (folder / "notes.txt").write_text("not a model")
    return folder


@pytest.fixture
def make_classifier():
    """The tiny_classifier factory, for tests that build their own."""
    return tiny_classifier


@pytest.fixture(scope="session")
def fresh_scenes():
    """scenes(n, size=128, **make_scene options) -> (images, labels) from unused seeds."""
    from models.scenes import make_scene

    def scenes(n, size=128, start=FRESH_SEEDS, **kw):
        drawn = [make_scene(start + i, size, **kw) for i in range(n)]
        return [s.image for s in drawn], np.array([s.label for s in drawn])

    return scenes
