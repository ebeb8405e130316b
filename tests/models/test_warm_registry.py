"""Warm-up off the user's path: the registry publishes a model once its forward pass is traced and
traces the gradient passes in the background; the app warms its default model at start."""
import ctypes
import threading
import time

import numpy as np
import pytest

from models import Registry
from models.registry import WARM_METHODS


def _until(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@pytest.fixture
def slow_cam(monkeypatch):
    """Make tracing of every `cam` pass wait until the test sets the returned event."""
    from explain.passes import Passes

    build = Passes._build
    started, release = threading.Event(), threading.Event()

    def slow(self, kind, layer, score):
        if kind == "cam":
            started.set()
            assert release.wait(120), "the test never released the cam trace"
        return build(self, kind, layer, score)

    monkeypatch.setattr(Passes, "_build", slow)
    yield started, release
    release.set()


def test_predictions_are_served_while_gradient_passes_trace(keras_home, slow_cam):
    started, release = slow_cam
    reg = Registry(background_warmup=True)
    ex = reg.explainer("vehicles")                      # returns with the forward pass traced
    assert started.wait(60), "the background warm-up never started tracing the cam pass"
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8)
    predictions = ex.predict(image)                     # served while `cam` is still tracing
    assert len(predictions) == 5 and not release.is_set()
    assert not reg.warmed("vehicles", timeout=0.1)
    assert ("cam", ex.default_layer, "logit") not in ex.passes.traced()
    release.set()
    assert reg.warmed("vehicles", timeout=120)
    kinds = {k[0] for k in ex.passes.traced()}
    assert {"forward", "cam", "grad"} <= kinds
    assert reg.loads == 1


def test_a_warm_up_stopped_from_outside_still_settles(keras_home, slow_cam):
    """Dash's test server stops the threads it started by raising SystemExit in them
    (PyThreadState_SetAsyncExc). A warm-up stopped so mid-trace must still settle: warmed() and
    warm() wait on it, and a waiter left hanging in a non-daemon thread keeps the process from
    ever exiting (a CI run once hung so after all its tests had passed)."""
    started, release = slow_cam
    reg = Registry(background_warmup=True)
    reg.explainer("vehicles")
    assert started.wait(60), "the background warm-up never started tracing the cam pass"
    thread = next(t for t in threading.enumerate() if t.name == "camlens-warm-vehicles")
    stopped = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                         ctypes.py_object(SystemExit))
    assert stopped == 1
    release.set()                                       # the thread wakes into its SystemExit
    thread.join(60)
    assert not thread.is_alive()
    assert reg.warmed("vehicles", timeout=5)            # settled, not waiting forever
    assert reg.warm("vehicles").result(timeout=60) is not None


def test_a_request_during_warm_up_waits_for_its_pass_only(keras_home, slow_cam):
    """An explanation needing `cam` waits for the warm-up's trace of it (one trace, not two)."""
    started, release = slow_cam
    reg = Registry(background_warmup=True)
    ex = reg.explainer("vehicles")
    assert started.wait(60)
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    done = []
    asker = threading.Thread(target=lambda: done.append(ex.explain(image, ["gradcam"])))
    asker.start()
    asker.join(1.0)
    assert asker.is_alive() and not done              # waiting for the cam trace under way
    release.set()
    asker.join(120)
    assert done and done[0]["gradcam"].heatmap.shape == (64, 64)
    assert reg.warmed("vehicles", timeout=120)
    assert [k for k in ex.passes.traced() if k[0] == "cam"] == [("cam", ex.default_layer, "logit")]


def test_warm_loads_and_traces_off_the_callers_thread(keras_home):
    reg = Registry(background_warmup=True)
    future = reg.warm("vehicles")                        # returns at once
    ex = future.result(120)
    assert reg.loaded() == ["vehicles"] and reg.warmed("vehicles", timeout=0)
    assert ("cam", ex.default_layer, "logit") in ex.passes.traced()
    assert ("grad", None, "logit") in ex.passes.traced()
    assert not Registry().warmed("vehicles", timeout=0)   # nothing loaded: not warm


def test_without_background_warmup_explainer_returns_warm(keras_home):
    reg = Registry()
    ex = reg.explainer("vehicles")
    assert reg.warmed("vehicles", timeout=0)
    assert {"forward", "cam", "grad"} <= {k[0] for k in ex.passes.traced()}
    assert WARM_METHODS == ("gradcam", "gradients")


def test_app_warms_its_default_model_at_start_and_healthz_answers_meanwhile(tmp_path, monkeypatch):
    """create_app with warm_start: the default model is loaded and warm without any request
    (seen through /debug/stats), and /healthz answers at once while it warms."""
    from app import Config, create_app, with_warm_start

    monkeypatch.delenv("CAMLENS_WARM_START", raising=False)
    assert with_warm_start(Config(cache_dir=tmp_path / "c0")).warm_start
    assert not with_warm_start(Config(cache_dir=tmp_path / "c0"), env={"CAMLENS_WARM_START": "0"}).warm_start
    assert not Config(cache_dir=tmp_path / "c0").warm_start   # tests' create_app calls stay cold

    start = time.perf_counter()
    app = create_app(Config(cache_dir=tmp_path / "cache", warm_start=True))
    client = app.server.test_client()
    response = client.get("/healthz")
    assert response.status_code == 200 and time.perf_counter() - start < 20
    default = response.get_json()["models"][0]
    assert _until(lambda: default in client.get("/debug/stats").get_json()["loaded_models"], 120), \
        f"{default} was not loaded within 120 s of the app's start"
    t0 = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    assert time.perf_counter() - t0 < 5
