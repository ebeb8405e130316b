"""The Keras zoo from Keras' own cache: weights a test saves itself, and real ones if present."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import ModelUnavailable, Registry
from models.zoo import ZOO, imagenet_labels, imagenet_names

CAR_CLASSES = {"sports car", "convertible", "beach wagon", "cab", "limousine", "minivan",
               "jeep", "pickup", "racer", "car wheel", "grille", "Model T", "police van",
               "ambulance", "moving van", "tow truck", "go-kart", "golfcart", "car mirror"}


def test_imagenet_names_ship_in_the_repo():
    names = imagenet_names()
    assert len(names) == 1000 and len({w for w, _ in names}) == 1000
    assert names[0] == ("n01440764", "tench") and names[817] == ("n04285008", "sports_car")
    labels = imagenet_labels()
    assert labels[511] == "convertible" and labels[817] == "sports car"
    assert CAR_CLASSES <= set(labels)


def test_weights_in_the_cache_make_the_model_available_and_are_the_ones_loaded(keras_home):
    """MobileNet alpha 0.25 with random weights, saved where Keras' download would land."""
    import keras

    model = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(224, 224, 3))
    # A distinctive head bias (random-init features vanish, so the bias decides the scores):
    # had the registry not loaded this file, all 1000 classes would tie.
    head = model.get_layer("conv_preds")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.random.default_rng(0).normal(0, 3, bias.shape).astype(np.float32)])
    model.save(keras_home / "models" / "mobilenet_2_5_224_tf.h5")
    reg = Registry()
    info = reg.info("mobilenet-0.25")
    assert info.available and info.reason is None and info.input_size == (224, 224)
    ex = reg.explainer("mobilenet-0.25")
    assert ex.default_layer == "conv_pw_13_relu" and len(ex.labels) == 1000

    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = image[None].astype(np.float32) / 127.5 - 1.0  # MobileNet's own preprocessing
    expected = model.predict(x, verbose=0)[0]
    top = ex.predict(image, top=3)
    assert [p.index for p in top] == list(np.argsort(-expected)[:3])
    assert top[0].probability == pytest.approx(float(expected.max()), rel=1e-4)
    assert not reg.info("mobilenet-0.5").available  # only that one file is cached


def test_a_broken_cached_file_is_reported_not_raised_at_startup(keras_home):
    (keras_home / "models" / "mobilenet_5_0_224_tf.h5").write_bytes(b"not hdf5 at all")
    reg = Registry()
    assert reg.info("mobilenet-0.5").available  # listing only checks that the file exists
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        reg.explainer("mobilenet-0.5")
    info = reg.info("mobilenet-0.5")
    assert not info.available and "mobilenet_5_0_224_tf.h5" in info.reason
    with pytest.raises(ModelUnavailable) as again:  # not retried while the file is unchanged
        reg.explainer("mobilenet-0.5")
    assert str(again.value) == info.reason
    # A good file in its place (a new mtime) is picked up without a restart.
    import keras

    good = keras.applications.MobileNet(alpha=0.5, weights=None, input_shape=(224, 224, 3))
    good.save(keras_home / "models" / "mobilenet_5_0_224_tf.h5")
    os.utime(keras_home / "models" / "mobilenet_5_0_224_tf.h5", ns=(1, 1))
    assert reg.info("mobilenet-0.5").available
    assert reg.explainer("mobilenet-0.5").default_layer == "conv_pw_13_relu"


@pytest.mark.parametrize("spec", ZOO, ids=lambda s: s.name)
def test_each_family_preprocesses_its_own_way(spec):
    from models.zoo import preprocess_fn

    px = np.full((1, 2, 2, 3), 255.0, np.float32)
    out = preprocess_fn(spec)(px)
    assert px.max() == pytest.approx(255.0)  # the caller's array is untouched
    expected = {"x / 127.5 - 1": 1.0, "none (the model rescales itself)": 255.0}
    if spec.preprocessing in expected:
        assert np.allclose(out, expected[spec.preprocessing])
    elif spec.preprocessing.startswith("RGB→BGR"):
        assert np.allclose(out[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68])
    else:  # torch
        assert np.allclose(out[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406]))
                           / np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_real_imagenet_weights_find_cars_in_real_photos(shared_dir, keras_home):
    weights = shared_dir / "weights" / "mobilenet_2_5_224_tf.h5"
    photos = sorted((shared_dir / "samples" / "real").glob("car_angled_0[1-5].jpg"))
    if not weights.is_file() or len(photos) < 5:
        pytest.skip(f"real weights or photos absent under {shared_dir}")
    from PIL import Image

    shutil.copy(weights, keras_home / "models" / weights.name)
    ex = Registry().explainer("mobilenet-0.25")
    for photo in photos:
        image = np.asarray(Image.open(photo).convert("RGB"))
        top5 = {p.label for p in ex.predict(image, top=5)}
        assert top5 & CAR_CLASSES, (photo.name, top5)


def test_download_command_refuses_unknown_names_before_touching_the_network(keras_home):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "models.zoo", "resnet50v2", "resnet9000"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith("error: not a zoo model: resnet9000")
    assert not any((keras_home / "models").glob("*.h5"))
