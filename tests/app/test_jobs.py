"""Background jobs: why they run on threads here (TensorFlow does not survive fork), and that the
thread manager keeps Dash's contract (results, progress, running state, cancel) in diskcache."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
import time

import dash
import diskcache
import pytest

from app import Config, background_manager
from callbacks.jobs import ThreadJobManager

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
    return ThreadJobManager(diskcache.Cache(str(tmp_path / "jobs")), workers=1)


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
