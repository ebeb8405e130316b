"""Your own models folder: good files work, broken ones give one clear message each."""
import json
import os
import shutil

import numpy as np
import pytest

from models import ModelUnavailable, Registry
from models.files import PREPROCESSING


@pytest.fixture
def registry(user_dir, keras_home):
    return Registry(models_dir=user_dir)


def _user(registry):
    return {i.name: i for i in registry.list() if i.source == "user"}


def test_folder_lists_every_model_file_with_working_entries_and_clear_messages(registry):
    users = _user(registry)
    assert sorted(users) == ["badside.keras", "cifar.h5", "corrupt.keras", "digits.keras",
                             "good.keras", "lambda.keras", "segmenter.keras", "vector.keras",
                             "weightsonly.h5"]
    assert {n for n, i in users.items() if i.available} == {"good.keras", "digits.keras",
                                                            "cifar.h5"}
    good = users["good.keras"]
    assert (good.display_name, good.input_size, good.channels, good.num_classes) == (
        "Good one", (32, 32), 3, 3)
    assert good.preprocessing == PREPROCESSING["-1-1"][1] and good.default_layer == "conv"
    assert good.card == "A **tiny** model." and good.reason is None
    digits = users["digits.keras"]
    assert (digits.input_size, digits.channels, digits.num_classes) == ((28, 28), 1, 10)
    assert digits.display_name == "digits.keras" and digits.preprocessing == "x / 255"

    reasons = {n: users[n].reason for n in users if not users[n].available}
    assert "Lambda" in reasons["lambda.keras"] and "safe mode" in reasons["lambda.keras"]
    assert "truncated or corrupt" in reasons["corrupt.keras"]
    assert "not a batch of images" in reasons["vector.keras"]
    assert "not class scores" in reasons["segmenter.keras"]
    assert "weights only" in reasons["weightsonly.h5"]
    assert "2 labels but the model has 3 outputs" in reasons["badside.keras"]
    for name, reason in reasons.items():
        assert name in reason and "\n" not in reason


def test_lambda_code_never_runs(registry, user_dir):
    registry.list()
    with pytest.raises(ModelUnavailable, match="Lambda"):
        registry.explainer("lambda.keras")
    assert not (user_dir / "ran.txt").exists()
    # Control: the same file loaded unsafely does run its code.
    import keras

    keras.saving.load_model(user_dir / "lambda.keras", safe_mode=False)
    assert (user_dir / "ran.txt").exists()


def test_grayscale_and_cifar_models_explain_rgb_pictures(registry, user_dir, make_classifier):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    digits = registry.explainer("digits.keras")
    assert digits.channels == 1 and digits.input_size == (28, 28)
    preds = digits.predict(picture, top=10)
    assert len(preds) == 10 and preds[0].label.startswith("class ")
    # The same scores as the model itself on the resized, gray, 0-1 scaled picture.
    import cv2
    import keras

    model = keras.saving.load_model(user_dir / "digits.keras")
    small = cv2.resize(picture, (28, 28), interpolation=cv2.INTER_AREA).astype(np.float32)
    gray = (small @ np.array([0.299, 0.587, 0.114], np.float32))[None, ..., None] / 255.0
    expected = model.predict(gray, verbose=0)[0]
    got = np.zeros(10)
    for p in preds:
        got[p.index] = p.probability
    assert np.allclose(got, expected, atol=1e-3)

    cifar = registry.explainer("cifar.h5")
    assert cifar.input_size == (32, 32) and len(cifar.predict(picture, top=10)) == 10
    good = registry.explainer("good.keras")
    assert [p.label for p in good.predict(picture, top=3)] != []
    assert set(registry.labels("good.keras")) == {"ant", "bee", "cat"}


def test_unavailable_file_explainer_raises_the_listed_reason(registry):
    reason = registry.info("corrupt.keras").reason
    with pytest.raises(ModelUnavailable) as err:
        registry.explainer("corrupt.keras")
    assert str(err.value) == reason


def test_checks_are_cached_until_the_file_changes(registry, user_dir, make_classifier):
    assert not registry.info("corrupt.keras").available
    before = registry._inspected[user_dir / "corrupt.keras"]
    registry.list()
    assert registry._inspected[user_dir / "corrupt.keras"] is before  # not checked again
    fixed = make_classifier((32, 32, 3), 4, seed=5)
    fixed.save(user_dir / "corrupt.keras")
    os.utime(user_dir / "corrupt.keras", ns=(1, 1))  # a different mtime, whatever the clock
    info = registry.info("corrupt.keras")
    assert info.available and info.num_classes == 4
    # A new file and a removed file show up without restarting.
    shutil.copy(user_dir / "good.keras", user_dir / "copy.keras")
    (user_dir / "vector.keras").unlink()
    names = {i.name for i in registry.list() if i.source == "user"}
    assert "copy.keras" in names and "vector.keras" not in names


@pytest.mark.parametrize("sidecar, message", [
    ({"preprocessing": "imagenet"}, "is not one of 0-1, -1-1, caffe, torch, none"),
    ({"labels": "a,b,c"}, "must be a list of strings"),
    ({"input_size": [64, 64]}, "disagrees with the model's fixed input 32x32"),
    ({"default_layer": "nope"}, "'nope' is not a layer"),
])
def test_sidecar_mistakes_are_named(tmp_path, keras_home, make_classifier, sidecar, message):
    make_classifier((32, 32, 3), 3).save(tmp_path / "m.keras")
    (tmp_path / "m.keras.json").write_text(json.dumps(sidecar))
    info = Registry(models_dir=tmp_path).info("m.keras")
    assert not info.available and message in info.reason


def test_free_size_model_uses_the_sidecar_size_and_thousand_outputs_get_imagenet_names(
        tmp_path, keras_home, make_classifier):
    make_classifier((None, None, 3), 1000).save(tmp_path / "free.keras")
    (tmp_path / "free.keras.json").write_text(json.dumps({"input_size": [40, 48],
                                                          "preprocessing": "caffe"}))
    reg = Registry(models_dir=tmp_path)
    info = reg.info("free.keras")
    assert info.available and info.input_size == (40, 48)
    assert reg.labels("free.keras")[817] == "sports car"
    assert reg.explainer("free.keras").input_size == (40, 48)


def test_models_dir_from_the_environment(user_dir, keras_home, monkeypatch):
    monkeypatch.setenv("CAMLENS_MODELS_DIR", str(user_dir))
    assert "good.keras" in {i.name for i in Registry().list()}
    monkeypatch.delenv("CAMLENS_MODELS_DIR")
    assert not [i for i in Registry().list() if i.source == "user"]


def test_preprocessing_modes_known_values():
    px = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    assert np.allclose(PREPROCESSING["0-1"][0](px), [0, 0.5, 1])
    assert np.allclose(PREPROCESSING["-1-1"][0](px), [-1, 0, 1])
    assert np.allclose(PREPROCESSING["caffe"][0](px), [255 - 103.939, 127.5 - 116.779, -123.68])
    assert np.allclose(PREPROCESSING["torch"][0](px),
                       [(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    assert np.allclose(PREPROCESSING["none"][0](px), px)
    gray = np.full((2, 4, 4, 1), 51.0, np.float32)
    assert PREPROCESSING["0-1"][0](gray).shape == (2, 4, 4, 1)
