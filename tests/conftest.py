"""Shared test set-up: quiet TensorFlow, headless Chromium options, the optional ../shared data,
and a guard that the test process ends once its tests have."""
import faulthandler
import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class _StoppedByDashsServer(logging.Filter):
    """Dash's test server stops the threads it started by raising SystemExit in them; an idle job
    pool worker meets it only when the pool shuts down at exit, and concurrent.futures logs each as
    "Exception in worker" (CRITICAL) after the summary. Those are the harness's stops, not errors."""

    def filter(self, record):
        return not (record.exc_info and record.exc_info[0] is SystemExit)


logging.getLogger("concurrent.futures").addFilter(_StoppedByDashsServer())


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


EXIT_GRACE = 120  # seconds the process may take to exit after its last teardown
_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


def pytest_unconfigure(config):
    """Dash's test server stops the threads it started by raising SystemExit in them; a thread
    stopped so while something waits on it can leave a non-daemon thread waiting forever, and
    the process never exits although every test has reported (a CI run was lost so). If the
    process is still here EXIT_GRACE seconds after the last teardown, print the threads holding
    it, with their stacks, and exit with the tests' own status."""
    def guard():
        time.sleep(EXIT_GRACE)
        held = [t.name for t in threading.enumerate()
                if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        sys.__stderr__.write(f"\npytest: the process is still running {EXIT_GRACE} s after its "
                             f"tests ended, held by the threads {held}. Their stacks:\n")
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        sys.__stderr__.flush()
        os._exit(_status["code"])

    threading.Thread(target=guard, name="pytest-exit-guard", daemon=True).start()
