"""Fixtures for the explain tests; model builders live in explain_testkit."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import models  # noqa: E402,F401 - registers expected gradients' "scenes" background, as the app and CLI do
from explain_testkit import gap_cnn  # noqa: E402


@pytest.fixture(scope="session")
def gap_model():
    return gap_cnn()


@pytest.fixture(scope="session")
def gap_explainer(gap_model):
    from explain import Explainer
    return Explainer(gap_model, preprocess=lambda x: x / 255.0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
