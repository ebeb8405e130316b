"""Background jobs: why they run on threads here (TensorFlow does not survive fork), and that the
thread manager keeps Dash's contract (results, progress, running state, cancel) in diskcache."""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import dash
import numpy as np
import pytest

from app import Config, background_manager, create_app
from callbacks.jobs import UNREADABLE, ThreadJobManager, job_error_message
from callbacks.store import meta_key

_FORK_AFTER_TF = textwrap.dedent("""
    import multiprocessing
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.rand(2, 64, 64, 3).astype("float32")
    model(x)                                    # the parent has run TF: its thread pools exist
    def child():
        model(x).numpy()                        # what a forked DiskcacheManager job would do
    p = multiprocessing.get_context("fork").Process(target=child)
    p.start(); p.join(5)
    print("hung" if p.is_alive() else f"finished {p.exitcode}")
    if p.is_alive(): p.kill()
""")


def test_a_forked_child_of_a_process_that_ran_tensorflow_hangs():
    """The reason for ThreadJobManager: DiskcacheManager forks a process per job, and a child
    forked after TensorFlow has run deadlocks on its first op (if TF ever fixes this, this test
    fails and the design can be reconsidered)."""
    out = subprocess.run([sys.executable, "-c", _FORK_AFTER_TF], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip().splitlines()[-1] == "hung", out.stdout + out.stderr[-1000:]


def make_manager(tmp_path):
    return ThreadJobManager(tmp_path / "jobs", workers=1)


def test_thread_jobs_store_results_progress_and_state_in_the_cache(tmp_path, until):
    manager = make_manager(tmp_path)

    def work(set_progress, n):
        for i in range(n):
            set_progress((i, f"step {i}"))
            time.sleep(0.05)
        return {"sum": n * (n - 1) // 2, "pid": os.getpid()}

    job_fn = manager.make_job_fn(work, progress=True)
    job = manager.call_job_fn("k1", job_fn, [5], {})
    assert isinstance(job, str) and manager.job_running(job)
    assert until(lambda: manager.handle.get(manager._make_progress_key("k1")) is not None)
    assert until(lambda: manager.result_ready("k1"))
    assert manager.get_result("k1", job) == {"sum": 10, "pid": os.getpid()}  # ran in this process
    assert until(lambda: not manager.job_running(job))


def test_cancel_is_cooperative_through_the_engine_callback(tmp_path, until):
    manager = make_manager(tmp_path)
    seen = []

    def work(n):
        for i in range(n):
            if manager.cancelled():
                seen.append(i)
                return "stopped"
            time.sleep(0.02)
        return "finished"

    job = manager.call_job_fn("k2", manager.make_job_fn(work, progress=False), [500], {})
    time.sleep(0.1)
    manager.terminate_job(job)
    assert until(lambda: manager.result_ready("k2"))
    assert manager.get_result("k2", job) == "stopped" and 0 < seen[0] < 500
    assert manager.cancelled() is False  # no job on this thread


def test_the_app_runs_jobs_on_threads_without_redis_and_on_celery_with_it(tmp_path):
    assert isinstance(background_manager(Config(cache_dir=tmp_path)), ThreadJobManager)
    celery = background_manager(Config(cache_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(celery, dash.CeleryManager) and not isinstance(celery, dash.DiskcacheManager)


def test_the_celery_worker_entry_point_registers_the_background_callbacks(tmp_path):
    """`celery -A app:celery_app worker` must know the app's background callbacks as tasks."""
    pytest.importorskip("celery")
    code = ("import app; tasks = [n for n in app.celery_app.tasks if n.startswith('background_callback_')];"
            "print(len(tasks))")
    env = {**os.environ, "CAMLENS_REDIS_URL": "redis://127.0.0.1:1/0", "CAMLENS_CACHE_DIR": str(tmp_path),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 1


# --- The job lifecycle (issue 13): no result lost between "done" and "read", a key per job, dead
# runners reported. Dash polls a job with manager.get_result(key, job) and then job_running(job);
# "no result" followed by "not running" answers 204 and the page never shows anything.

def test_a_result_stored_between_the_two_reads_of_a_poll_is_still_delivered(tmp_path, until):
    """The race, in its order: the poll reads "no result", the job stores its result and ends, the
    poll asks "running?". Before, the answer was no (-> 204, the result stayed unread in the cache);
    now a job with an unread result is still running, so the browser polls again and gets it."""
    manager = make_manager(tmp_path)
    release = threading.Event()

    def work(n):
        release.wait(10)
        return {"n": n}

    key = manager.build_cache_key(work, [1], [], None)
    job = manager.call_job_fn(key, manager.make_job_fn(work, progress=False), [1], {})
    assert manager.get_result(key, job) is manager.UNDEFINED     # the poll's first read: not yet
    release.set()                                                # ... and the job ends right now
    assert until(lambda: manager._load(job)["state"] == "done")
    assert manager.result_ready(key)
    assert manager.job_running(job)                              # the poll's second read: poll again
    assert manager.get_result(key, job) == {"n": 1}              # the next poll delivers it
    assert not manager.job_running(job) and not manager.result_ready(key)


def test_identical_jobs_get_their_own_result_keys(tmp_path):
    manager = make_manager(tmp_path)
    keys = {manager.build_cache_key(make_manager, ["same", "args"], [], None) for _ in range(2)}
    assert len(keys) == 2
    cached = ThreadJobManager(tmp_path / "cached", cache_by=[lambda: "v1"])
    assert len({cached.build_cache_key(make_manager, ["same"], [], None) for _ in range(2)}) == 1  # caching kept


def _job_request(app, output: str, trigger: str, values: dict, options: dict | None = None) -> dict:
    """The body the browser posts for the callback writing `output`, `trigger` clicked once;
    `options` are the method option fields on the page (the pattern-matching States)."""
    output = next(k for k in app.callback_map if k == output or k.startswith(output + "@"))  # allow_duplicate
    spec = app.callback_map[output]
    component, prop = output.rsplit(".", 1) if "..." not in output else (None, None)
    ids = [{"type": "option", "name": name} for name in options or {}]

    def entry(dep):
        if dep["id"].startswith("{"):                            # the ALL pattern of the option fields
            values_of = ids if dep["property"] == "id" else list((options or {}).values())
            return [{"id": i, "property": dep["property"], "value": v} for i, v in zip(ids, values_of)]
        return {**dep, "value": values.get(dep["id"])}

    outputs = ({"id": component, "property": prop} if component else
               [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in output.strip(".").split("...")])
    return {"output": output, "outputs": outputs,
            "inputs": [{**spec["inputs"][0], "value": 1}], "state": [entry(d) for d in spec["state"]],
            "changedPropIds": [f"{trigger}.n_clicks"]}


def _start_and_poll(client, bodies: list[dict], timeout: float = 60) -> list:
    """Start one job per body as browsers do, then poll them in turn until each answers."""
    handles = []
    for body in bodies:
        answer = client.post("/_dash-update-component", json=body)
        assert answer.status_code == 200, answer.data[:500]
        handles.append(answer.get_json())
    results, deadline = [None] * len(bodies), time.time() + timeout
    while any(r is None for r in results) and time.time() < deadline:
        for i, (body, handle) in enumerate(zip(bodies, handles)):
            if results[i] is not None:
                continue
            query = urlencode({"cacheKey": handle["cacheKey"], "job": handle["job"]})
            answer = client.post(f"/_dash-update-component?{query}", json=body)
            if answer.status_code == 204:
                results[i] = "204: nothing shown"
            elif "response" in answer.get_json():
                results[i] = answer.get_json()["response"]
        time.sleep(0.05)
    return handles, results


def test_two_sessions_comparing_the_same_image_and_settings_both_get_results(tmp_path, user_models):
    """Two people press Compare on the same image with the same settings at the same time (the
    real app and Dash's own request protocol): each gets a result. Before, they shared one result
    key and the first poll took it (2 of 3 trials left one of them with nothing)."""
    app = create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models))
    rng = np.random.default_rng(1)
    stored = app.camlens.store.put_image("s" * 64, rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    same = {"image": {"key": stored.key, "name": "same.png"}, "model": "tiny-gap.keras", "target": 0,
            "methods": ["gradcam"], "compare-baseline": "blur", "compare-sanity-on": []}
    bodies = [_job_request(app, "compare-result.data", "compare-run", {**same, "session": s}) for s in ("aa", "bb")]
    handles, results = _start_and_poll(app.server.test_client(), bodies)
    assert handles[0]["cacheKey"] != handles[1]["cacheKey"]
    for result in results:
        assert isinstance(result, dict), result
        data = result["compare-result"]["data"]
        assert data["methods"] == ["gradcam"] and not data.get("error"), data


def test_a_job_whose_thread_dies_is_reported_failed_at_the_next_poll(tmp_path, until):
    """SystemExit is no Exception: Dash's job wrapper lets it through and never stores a result."""
    manager = make_manager(tmp_path)

    def work():
        raise SystemExit(3)

    key = manager.build_cache_key(work, [], [], None)
    job = manager.call_job_fn(key, manager.make_job_fn(work, progress=False), [], {})
    assert until(lambda: manager.result_ready(key), 5)
    result = manager.get_result(key, job)
    assert "stopped unexpectedly" in result["background_callback_error"]["msg"]
    assert not manager.job_running(job)


_WEB_WORKER = textwrap.dedent("""
    import sys, time, diskcache
    from callbacks.jobs import ThreadJobManager
    manager = ThreadJobManager(sys.argv[1])
    def work():
        time.sleep(120)
    key = manager.build_cache_key(work, [], [], None)
    job = manager.call_job_fn(key, manager.make_job_fn(work, progress=False), [], {})
    print(key, job, flush=True)
    time.sleep(120)
""")


def test_a_job_whose_web_worker_is_killed_is_reported_failed_within_seconds(tmp_path, until):
    """A web worker process runs a job on its thread and is killed -9; another worker answers the
    browser's polls: the job's heartbeat goes stale and the poll answers an error, not "running"
    forever. The page's callbacks turn that error into a message and free the button."""
    from dash._callback import _handle_rest_background_callback

    cache = tmp_path / "jobs"
    worker = subprocess.Popen([sys.executable, "-c", _WEB_WORKER, str(cache)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        key, job = worker.stdout.readline().split()
        manager = ThreadJobManager(cache, workers=1)
        manager.stale_after = 3.0
        time.sleep(2 * manager.beat_every + 0.5)
        assert manager.get_result(key, job) is manager.UNDEFINED and manager.job_running(job)  # alive, beating
        worker.kill()
        worker.wait(5)
        killed = time.monotonic()
        assert until(lambda: manager.get_result(key, job) is not manager.UNDEFINED, manager.stale_after + 5)
        waited = time.monotonic() - killed
        result = manager.get_result(key, job)
        assert "gave no sign of life" in result["background_callback_error"]["msg"]
        assert not manager.job_running(job) and waited < manager.stale_after + 2, waited
        # What Dash does with that poll: the callback's on_error gets a one-line message.
        seen = []
        answer, _, _ = _handle_rest_background_callback(
            result, manager, {}, lambda error: seen.append(job_error_message(error)) or "shown",
            SimpleNamespace(updated_props={}), False,
            cache_key=key, job_id=job)
        assert answer == "shown" and seen[0].startswith("The job stopped:") and "\n" not in seen[0]
    finally:
        worker.kill()


def test_the_page_says_a_dead_job_failed_and_frees_the_button(camlens, images, until):
    """In the browser: the process that took a job dies at once (simulated: its job never runs and
    beats only once). The polls report it failed: a one-line alert, the progress bar goes, the
    button works again."""
    from selenium.webdriver.common.keys import Keys

    class Gone(set):
        def add(self, job):        # no heartbeats after the first
            pass

    manager = camlens.dash.camlens.manager
    manager.stale_after = 2.0
    page = camlens.open("?model=tiny-gap.keras&methods=occlusion")
    if not page.duo.driver.execute_script("return document.querySelector('#method-panel details').open;"):
        page.click("#method-panel summary")
    for name, value in (("occlusion_patch", "2"), ("occlusion_stride", "1")):
        field = page.duo.find_element(f"""input[id='{{"name":"{name}","type":"option"}}']""")
        field.clear()
        field.send_keys(value, Keys.ENTER)
    page.upload(images["small"])
    page.duo.wait_for_contains_text("#slow-estimate", "model passes", timeout=15)
    manager._live, manager.pool = Gone(), SimpleNamespace(submit=lambda run: None)
    page.click("#run-slow")
    stopped = time.monotonic()
    assert until(lambda: page.progress()[0], 5), "no progress bar"
    assert until(lambda: any("The job stopped" in a for a in page.alerts()), 10), page.alerts()
    waited = time.monotonic() - stopped
    assert until(lambda: not page.progress()[0], 5), "the progress bar stayed"
    assert page.duo.find_element("#run-slow").is_enabled()
    assert waited < manager.stale_after + 3, waited


# --- The job cache (issue 13): nothing in it is unpickled, a damaged value ends its job with a
# message, and every web process (or a restarted one) on one cache folder reads the others' jobs.

SLOW_DONE = "..slow-done.data...slow-estimate.children"


class _Plant:
    """A pickle that would create a file when loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def plant_pickle(cache_folder, key: str, marker) -> None:
    """Overwrite `key`'s value in the job cache's database with a pickle, as a planted file would."""
    import pickle
    import sqlite3

    con = sqlite3.connect(Path(cache_folder) / "cache.db")
    with con:
        changed = con.execute("UPDATE Cache SET mode = 4, filename = NULL, value = ? WHERE key = ?",
                              (pickle.dumps(_Plant(marker)), key)).rowcount
    con.close()
    assert changed == 1, f"no row {key!r} to plant in"


def test_dash_values_are_stored_without_pickle(tmp_path):
    import sqlite3

    manager = make_manager(tmp_path)
    manager.handle.set("k", ({"at": 1.5}, dash.no_update))
    manager.handle.set("k-progress", (3, "LIME: 3 %"))
    assert manager.handle.get("k") == [{"at": 1.5}, {"_dash_no_update": "_dash_no_update"}]
    assert manager.get_progress("k") == [3, "LIME: 3 %"]
    modes = sqlite3.connect(tmp_path / "jobs" / "cache.db").execute("SELECT mode FROM Cache").fetchall()
    assert modes and all(mode != 4 for (mode,) in modes)   # diskcache's MODE_PICKLE


def test_a_planted_pickle_result_is_never_loaded_and_ends_the_job_with_a_message(tmp_path, until):
    manager = make_manager(tmp_path)
    marker = tmp_path / "PWNED"
    key = manager.build_cache_key(make_manager, [], [], None)
    job = manager.call_job_fn(key, manager.make_job_fn(lambda: {"ok": 1}, progress=False), [], {})
    assert until(lambda: manager._load(job)["state"] == "done")
    plant_pickle(tmp_path / "jobs", key, marker)
    result = manager.get_result(key, job)
    assert result == {"background_callback_error": {"msg": UNREADABLE, "tb": ""}}
    assert not marker.exists()
    assert not manager.job_running(job)
    # A planted job record: the job is unknown, said so, nothing loaded.
    job2 = manager.call_job_fn("k2", manager.make_job_fn(lambda: time.sleep(0.5), progress=False), [], {})
    plant_pickle(tmp_path / "jobs", meta_key("job", job2), marker)
    assert "no longer known" in manager.get_result("k2", job2)["background_callback_error"]["msg"]
    assert not marker.exists()


def _slow_body(app, stored, session: str) -> dict:
    values = {"image": {"key": stored.key, "name": "s.png"}, "model": "tiny-gap.keras", "target": 0,
              "methods": ["occlusion"], "session": session}
    return _job_request(app, SLOW_DONE, "run-slow", values, {"occlusion_patch": 16, "occlusion_stride": 8})


def _poll_once(client, body, handle):
    query = urlencode({"cacheKey": handle["cacheKey"], "job": handle["job"]})
    answer = client.post(f"/_dash-update-component?{query}", json=body)
    return "204" if answer.status_code == 204 else answer.get_json()


def test_two_app_processes_on_one_cache_folder_read_each_others_jobs(tmp_path, user_models, until):
    """Dash signs the job handles it gives the browser with a secret. Here it comes from the
    configuration (CAMLENS_SECRET, else a key file made once in the private cache folder), so a
    second web process on the same folder, or the same one restarted, accepts a handle the first
    one made; with another secret it does not (the poll reads nothing: what a per-process key did)."""
    folder = tmp_path / "cache"
    first = create_app(Config(cache_dir=folder, models_dir=user_models))
    second = create_app(Config(cache_dir=folder, models_dir=user_models, max_upload_mb=14))  # another manager
    assert first.camlens.manager is not second.camlens.manager
    key_file = folder / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.server.secret_key == second.server.secret_key == key_file.read_text().strip().encode()
    rng = np.random.default_rng(3)
    stored = first.camlens.store.put_image("t" * 64, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    body = _slow_body(first, stored, "one")
    handle = first.server.test_client().post("/_dash-update-component", json=body).get_json()
    answers = []
    assert until(lambda: answers.append(_poll_once(second.server.test_client(), body, handle))
                 or "response" in answers[-1], 60), answers[-3:]
    done, estimate = answers[-1]["response"]["slow-done"]["data"], answers[-1]["response"]["slow-estimate"]["children"]
    assert "error" not in done and "Occlusion: done" in estimate
    # A process with another secret cannot read it. (Last: Dash signs with the newest app's
    # secret when several live in one process, as here.)
    body = _slow_body(first, stored, "two")
    handle = first.server.test_client().post("/_dash-update-component", json=body).get_json()
    other = create_app(Config(cache_dir=folder, models_dir=user_models, max_upload_mb=13, secret="x" * 40))
    assert _poll_once(other.server.test_client(), body, handle) == "204"   # not its handle: nothing read


def test_a_configured_secret_wins_and_a_foreign_key_file_is_refused(tmp_path):
    from app import signing_secret

    assert signing_secret(Config(cache_dir=tmp_path, secret="s" * 40)) == b"s" * 40
    (tmp_path / "secret.key").write_text("k" * 64)
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(ValueError, match="readable by no one else"):
        signing_secret(Config(cache_dir=tmp_path))
