"""Background jobs that are safe with TensorFlow: a DiskcacheManager whose jobs run on threads.

Dash's DiskcacheManager starts every job in a fresh *forked* process. Once the server process has
run TensorFlow (it has, to show the predictions), a forked child deadlocks on its first op: TF's
thread pools do not survive fork (measured here: the child hangs forever). Spawning a clean process
instead works but pays TensorFlow's import plus a model load for every job (seconds), and throws
away the warm, compiled model the server already holds.

So jobs run on a small thread pool inside the server process: the model is loaded once (the
Registry is thread-safe and single-flight) and TensorFlow releases the GIL while it computes.
Everything Dash and the browser see stays as with DiskcacheManager: results, progress and the job
table live in the same diskcache, so any gunicorn worker can answer the browser's polls. Cancelling
is cooperative: `terminate_job` sets a flag that the engine's `cancel` callback reads between
batches (a thread cannot be killed). With CAMLENS_REDIS_URL, Dash's CeleryManager is used as is:
Celery's prefork workers load models once per worker process and keep them.
"""
from __future__ import annotations

import contextvars
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import dash
from dash import Input, Output

log = logging.getLogger("camlens.jobs")

_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("camlens_job", default=None)

#: How long job bookkeeping (state, cancel flags) is kept.
_TTL = 6 * 3600


class ThreadJobManager(dash.DiskcacheManager):
    """Dash background callbacks on in-process threads, bookkeeping in diskcache."""

    def __init__(self, cache, workers: int = 2, cache_by=None, expire=None):
        super().__init__(cache, cache_by=cache_by, expire=expire)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camlens-job")

    def call_job_fn(self, key, job_fn, args, context):
        job = f"t{os.getpid()}-{uuid.uuid4().hex[:16]}"
        self.handle.set(("job", job), "running", expire=_TTL)

        def run():
            _current_job.set(job)
            try:
                job_fn(key, self._make_progress_key(key), args, context)
            except BaseException:  # noqa: BLE001 - job_fn stores callback errors itself
                log.exception("background job %s failed outside its callback", job)
            finally:
                self.handle.set(("job", job), "done", expire=_TTL)

        self.pool.submit(run)
        return job

    def job_running(self, job):
        return job is not None and self.handle.get(("job", str(job))) == "running"

    def terminate_job(self, job):
        if job is not None and self.job_running(job):
            log.info("cancel requested for job %s", job)
            self.handle.set(("cancel", str(job)), True, expire=_TTL)

    def terminate_unhealthy_job(self, job):
        return False

    @staticmethod
    def current_job() -> str | None:
        return _current_job.get()

    def cancelled(self) -> bool:
        """True once the browser cancelled (or superseded) the job running on this thread."""
        job = _current_job.get()
        return bool(job and self.handle.get(("cancel", job), False))


def job_arguments(manager, run: str, cancel: str, progress: str) -> dict:
    """Dash background-callback arguments for a job that button `run` starts, button `cancel`
    stops and dbc.Progress `progress` shows (hidden while idle): the page's one job pattern."""
    return dict(
        background=True,
        manager=manager,
        progress=[Output(progress, "value"), Output(progress, "label")],
        progress_default=[0, ""],
        running=[
            (Output(run, "disabled"), True, False),
            (Output(cancel, "disabled"), False, True),
            (Output(progress, "className"), "mt-2", "mt-2 d-none"),
        ],
        cancel=[Input(cancel, "n_clicks")],
        interval=500,
    )


def cancel_check(manager):
    """The `cancel` callback for the engine: ThreadJobManager's flag; Celery revokes its tasks itself."""
    return getattr(manager, "cancelled", lambda: False)
