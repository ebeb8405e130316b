"""Background jobs on Celery with Redis, for real: a redis-server on a free port, a `celery -A
app:celery_app worker` process (README "Background workers"), the real app and Dash's own request
protocol. A job runs to completion; a job whose worker is killed -9 mid-job is reported failed (its
heartbeat goes stale); with Redis down the page gets a one-line message, not a 500 or a hang."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from app import Config, create_app
from test_jobs import _job_request  # the browser's request body (tests/app is on sys.path)

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

REPO = Path(__file__).resolve().parents[2]
SLOW_DONE = "..slow-done.data...slow-estimate.children"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (`make test` installs it: apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(5)


def _start_worker(redis_url, cache_dir, models_dir, log):
    env = {**os.environ, "CAMLENS_REDIS_URL": redis_url, "CAMLENS_CACHE_DIR": str(cache_dir),
           "CAMLENS_MODELS_DIR": str(models_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    celery = str(Path(sys.executable).with_name("celery"))
    return subprocess.Popen([celery, "-A", "app:celery_app", "worker", "--concurrency=1", "--loglevel=INFO",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)       # its own process group: kill -9 takes the pool too


def _poll(client, body, handle, until, timeout):
    """Poll a job as the browser does until it answers; (answer, seconds, progress seen)."""
    query = urlencode({"cacheKey": handle["cacheKey"], "job": handle["job"]})
    start, seen = time.monotonic(), []
    while time.monotonic() - start < timeout:
        answer = client.post(f"/_dash-update-component?{query}", json=body)
        if answer.status_code == 204:
            return "204: nothing shown", time.monotonic() - start, seen
        data = answer.get_json()
        if "progress" in data:
            seen.append(data["progress"])
        if "sideUpdate" in data:   # dash.set_props from the job (a slow method's result is in)
            seen.append({"sideUpdate": data["sideUpdate"], "with_response": "response" in data})
        if "response" in data:
            return data["response"], time.monotonic() - start, seen
        if until and until(seen):
            return None, time.monotonic() - start, seen
        time.sleep(0.2)
    raise AssertionError(f"no answer in {timeout} s (progress seen: {seen[-3:]})")


def test_celery_jobs_finish_and_a_killed_worker_fails_its_job(redis_url, tmp_path, user_models):
    app = create_app(Config(cache_dir=tmp_path / "web", models_dir=user_models, redis_url=redis_url))
    manager = app.camlens.manager
    assert type(manager).__name__ == "CeleryJobManager"
    rng = np.random.default_rng(2)
    stored = app.camlens.store.put_image("c" * 64, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    values = {"image": {"key": stored.key, "name": "c.png"}, "model": "tiny-gap.keras", "target": 0,
              "methods": ["occlusion"], "session": "one"}
    client = app.server.test_client()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = _start_worker(redis_url, tmp_path / "worker", user_models, log)
    try:
        # 1. A slow method through the worker to completion (the first one also loads the model
        # there), read in the racy order: "no result yet", the job ends, then "running?".
        body = _job_request(app, SLOW_DONE, "run-slow", values, {"occlusion_patch": 16, "occlusion_stride": 8})
        handle = client.post("/_dash-update-component", json=body).get_json()
        key, job = (handle[h].rpartition("~")[0] for h in ("cacheKey", "job"))
        assert manager.get_result(key, job) is manager.UNDEFINED
        deadline = time.time() + 60
        while not (manager.result_ready(key) and manager.get_task(job).status == "SUCCESS"):
            assert time.time() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.1)
        assert manager.job_running(job)                 # an unread result: poll again (was: 204)
        done, estimate = manager.get_result(key, job)
        assert "error" not in done and "Occlusion: done" in estimate, (done, estimate)
        assert not manager.job_running(job)
        # 2. Cancel is cooperative on the worker's threads too: a long job stops soon after.
        long_options = {"occlusion_patch": 3, "occlusion_stride": 1}
        body = _job_request(app, SLOW_DONE, "run-slow", {**values, "session": "cancel"}, long_options)
        handle = client.post("/_dash-update-component", json=body).get_json()
        _poll(client, body, handle, lambda seen: len(seen) >= 2, 60)
        manager.terminate_job(handle["job"].rpartition("~")[0])
        answer, waited, _ = _poll(client, body, handle, None, 15)
        assert answer["slow-done"]["data"].get("cancelled") is True, answer
        # 2b. Streaming: the first method's result is announced (set_props) in a poll before the
        # job's own answer, and only once (Dash's CeleryManager left it there for every poll).
        body = _job_request(app, SLOW_DONE, "run-slow", {**values, "methods": ["occlusion", "rise"], "target": 1, "session": "s"},
                            {"occlusion_patch": 16, "occlusion_stride": 8, "rise_masks": 4000})
        handle = client.post("/_dash-update-component", json=body).get_json()
        answer, _, seen = _poll(client, body, handle, None, 60)
        updates = [s for s in seen if "sideUpdate" in s]
        assert "error" not in answer["slow-done"]["data"], answer
        assert [u["sideUpdate"]["slow-partial"]["data"]["method"] for u in updates] == ["occlusion", "rise"], updates
        assert updates[0]["with_response"] is False, updates
        # 3. A long one: once it reports progress, kill the worker (and its pool) with -9.
        body = _job_request(app, SLOW_DONE, "run-slow", {**values, "session": "two"}, long_options)
        handle = client.post("/_dash-update-component", json=body).get_json()
        _, _, seen = _poll(client, body, handle, lambda seen: len(seen) >= 2, 60)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)
        answer, waited, _ = _poll(client, body, handle, None, 30)
        assert isinstance(answer, dict), answer
        message = answer["slow-done"]["data"]["error"]
        assert message.startswith("The job stopped:") and "\n" not in message, message
        assert waited < manager.stale_after + 5, waited
        print(f"killed worker's job reported failed after {waited:.1f} s (stale_after {manager.stale_after} s)")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        print((tmp_path / "worker.log").read_text()[-3000:])


def test_redis_down_gives_a_one_line_message_not_an_error(tmp_path):
    """A Redis that is not there (a closed port): pressing the button answers at once with a
    message for the page, and the button is free again."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    app = create_app(Config(cache_dir=tmp_path / "web", redis_url=url))
    values = {"image": {"key": "d" * 64, "name": "d.png"}, "model": "tiny-gap.keras", "target": 0,
              "methods": ["occlusion"], "session": "s"}
    start = time.monotonic()
    answer = app.server.test_client().post("/_dash-update-component",
                                           json=_job_request(app, SLOW_DONE, "run-slow", values))
    assert answer.status_code == 200 and time.monotonic() - start < 15, (answer.status_code, answer.data[:300])
    message = answer.get_json()["response"]["slow-done"]["data"]["error"]
    assert message.startswith("The job queue (Redis) cannot be reached") and "\n" not in message
