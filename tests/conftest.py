"""Shared test set-up: quiet TensorFlow, headless Chromium options, the optional ../shared data."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_setup_options():
    """Chrome options for dash[testing]: headless-safe and silent on a closed network."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1280,800"):
        options.add_argument(flag)
    if Path("/usr/bin/chromium").exists():
        options.binary_location = "/usr/bin/chromium"
    return options


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repo (test data only); tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (test data beside the repo)")
    return SHARED
