"""Tiny hand-built Keras models for the explain tests (fast to build and trace).

A plain module (not conftest) so test files can import it without clashing with other conftests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

L = keras.layers


def gap_cnn(size=(32, 32), classes=4, seed=0, channels=3):
    """conv(relu) -> conv -> ReLU layer -> GAP -> Dropout -> Dense(softmax): a CAM-compatible head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((*size, channels))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2)(x)
    out = L.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inp, out)


def flatten_cnn(size=(16, 16), classes=3, seed=0):
    """conv(relu) -> Flatten -> Dense: no GAP, so CAM does not apply."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((*size, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(classes, name="logits")(x)
    return keras.Model(inp, out)


def random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
