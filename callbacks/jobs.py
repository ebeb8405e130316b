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
batches (a thread cannot be killed). With CAMLENS_REDIS_URL, Dash's CeleryManager is used
(CeleryJobManager): Celery's prefork workers load models once per worker process and keep them.
Both add a job lifecycle to Dash's protocol (`_Lifecycle`): a result is never lost between "done"
and "read", every job has its own result key, and a job whose runner died is reported failed.

The thread manager's cache (`JobCache`) is the main store's self-healing, pickle-free cache
(callbacks.store) with Dash's values made plain JSON first: a planted or damaged file there is
dropped, never unpickled, and the job it belonged to ends with a message on the page.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import dash
import diskcache
from _plotly_utils.utils import PlotlyJSONEncoder
from dash import Input, Output

from callbacks.store import HealingCache, SafeDisk, meta_key

log = logging.getLogger("camlens.jobs")

_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("camlens_job", default=None)

#: How long job bookkeeping (state, heartbeats, cancel flags) is kept.
_TTL = 6 * 3600

#: Job states in the job table: running -> read (its result was handed to a browser) or failed.
#: A thread job is `done` between writing its result and that result being read.
RUNNING, DONE, READ, FAILED = "running", "done", "read", "failed"

_ERROR_PREFIX = "An error occurred inside a background callback: "

#: What the page says when a job's result or record is in the job cache but cannot be read back.
UNREADABLE = "The job's result could not be read back (the job cache was damaged): run it again."


class JobDisk(SafeDisk):
    """SafeDisk for Dash's job values. Dash's DiskcacheManager stores Python objects (outputs may
    hold `no_update` or components): they are made plain JSON first with Plotly's encoder, exactly
    as Dash's CeleryManager does, so nothing here needs pickle (tuples come back as lists, which
    Dash reads alike)."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            value = json.loads(json.dumps(value, cls=PlotlyJSONEncoder))
        return super().store(value, read, key)


class JobCache(HealingCache):
    """The background jobs' cache: results, progress and the job table, self-healing (a value
    that does not decode is a miss; a damaged index is moved aside) and never unpickled."""

    disk = JobDisk


class _Lifecycle:
    """What both managers add to Dash's background-callback protocol.

    Dash polls a job with `get_result(key, job)` and then `job_running(job)`; an undefined result
    from a job that is not running ends the poll with 204 (nothing shown). Three ways that lost jobs:

    - the race: the job stores its result and ends *between* those two reads, so the poll sees
      "no result" and then "not running". Here a job stays running until its result has been read
      (`job_running` is true while an unread result sits under the job's key), so that poll says
      "keep polling" and the next one gets the result;
    - a shared key: Dash's key is a hash of the callback's arguments, so two people asking the same
      thing share one result and the first poll takes both. With `cache_by` unset results are read
      once anyway, so every job gets its own key (`build_cache_key` adds a random part);
    - a dead runner (thread, process or Celery worker): the job table says running forever. Each
      running job's runner writes a heartbeat every `beat_every` s; a poll that finds no result and
      a heartbeat older than `stale_after` s marks the job failed and answers an error result, which
      the callback's `on_error` (see `job_error_message`) turns into a message on the page.
    """

    stale_after = 10.0
    beat_every = 1.0
    #: A queued job that no runner has started after this long is failed too (no worker?).
    start_timeout = 600.0

    # Storage, per manager: _load(job) -> dict | None, _save(job, record), _last_beat(job), _now().

    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        key = super().build_cache_key(fn, args, cache_args_to_ignore, triggered)
        if self.cache_by is None:
            key = hashlib.sha256(f"{key}-{uuid.uuid4().hex}".encode()).hexdigest()
        return key

    def _mark(self, job, state: str, reason: str | None = None) -> None:
        record = self._load(job)
        if record is not None:
            self._save(job, {**record, "state": state, **({"reason": reason} if reason else {})})

    def get_progress(self, key):
        try:
            return super().get_progress(key)
        except ValueError as error:   # damaged JSON in Redis: no progress this time
            log.warning("job progress %s unreadable (%s): dropped", key, error)
            self.clear_cache_entry(self._make_progress_key(key))
            return None

    def _read(self, key, job):
        """Dash's get_result; a value that does not decode (damaged JSON in Redis) is dropped and
        answered as an error for the page (the disk cache drops such values itself)."""
        try:
            return super().get_result(key, job)
        except ValueError as error:
            log.warning("job result %s unreadable (%s): dropped", key, error)
            self.clear_cache_entry(key)
            return {"background_callback_error": {"msg": UNREADABLE, "tb": ""}}

    def get_result(self, key, job):
        result = self._read(key, job)
        if job is None:
            return result
        job = str(job)
        if result is not self.UNDEFINED:
            self._mark(job, READ)
            return result
        reason = self._why_dead(job)
        if reason is None:
            return result
        result = self._read(key, job)   # it may have finished just now after all
        if result is not self.UNDEFINED:
            self._mark(job, READ)
            return result
        if (self._load(job) or {}).get("state") != FAILED:
            log.warning("background job %s failed: %s", job, reason)
            self._mark(job, FAILED, reason)
            self._abandon(job)
        return {"background_callback_error": {"msg": reason, "tb": ""}}

    def job_running(self, job):
        if job is None:
            return False
        record = self._load(str(job))
        if record is None or record.get("state") in (READ, FAILED):
            return False
        # Done but unread: still "running" for Dash, so a poll racing the job's end polls again.
        return self.result_ready(record["key"]) or self._alive(str(job), record)

    def _why_dead(self, job: str) -> str | None:
        """Why this job will never deliver a result, or None while it may still."""
        record = self._load(job)
        if record is None:
            return "The job is no longer known to the server (it was restarted or its job table emptied): run it again."
        state = record.get("state")
        if state == FAILED:
            return record.get("reason") or "The job failed."
        if state == DONE and not self.result_ready(record["key"]):
            return UNREADABLE   # its runner wrote a result that is gone: dropped as damaged
        if state != RUNNING:
            return None
        reason = self._runner_failed(job)
        if reason:
            return reason
        now, beat = self._now(), self._last_beat(job)
        if beat is None:
            if now - record["started"] > self.start_timeout:
                return (f"No worker started the job within {self.start_timeout:.0f} s (is a Celery worker "
                        "running?): run it again.")
            return None
        if now - beat > self.stale_after:
            return (f"The job stopped: the worker running it gave no sign of life for {now - beat:.0f} s "
                    "(it was stopped or crashed). Run it again.")
        return None

    def _runner_failed(self, job: str) -> str | None:
        return None


class ThreadJobManager(_Lifecycle, dash.DiskcacheManager):
    """Dash background callbacks on in-process threads, bookkeeping in a JobCache (`cache`: one,
    or the folder for one)."""

    def __init__(self, cache, workers: int = 2, cache_by=None, expire=None):
        cache = cache if isinstance(cache, JobCache) else JobCache(cache)
        super().__init__(cache.cache, cache_by=cache_by, expire=expire)   # Dash checks for a diskcache
        self.handle = cache   # ... but every read and write goes through the healing cache
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camlens-job")
        self._live: set[str] = set()      # this process's queued and running jobs: they get heartbeats
        self._lock = threading.Lock()
        self._beater: threading.Thread | None = None

    def _load(self, job):
        return self.handle.get(meta_key("job", job))

    def _save(self, job, record):
        self.handle.set(meta_key("job", job), record, expire=_TTL)

    def _last_beat(self, job):
        return self.handle.get(meta_key("beat", job))

    @staticmethod
    def _now():
        return time.time()

    def _alive(self, job, record):
        return record.get("state") == RUNNING

    def _abandon(self, job):
        self.handle.set(meta_key("cancel", job), True, expire=_TTL)   # should the thread still be there

    def _heartbeat(self):
        """One thread beats for all of this process's jobs: it stops when the process dies."""
        try:
            while True:
                with self._lock:
                    jobs = list(self._live)
                now = time.time()
                for job in jobs:
                    try:
                        self.handle.set(meta_key("beat", job), now, expire=_TTL)
                    except Exception:  # noqa: BLE001 - a full disk must not kill the heartbeat
                        log.exception("heartbeat of job %s", job)
                time.sleep(self.beat_every)
        except SystemExit:   # a thread stopped from outside (dash's test server does so): its jobs die too
            return

    def call_job_fn(self, key, job_fn, args, context):
        job = f"t{os.getpid()}-{uuid.uuid4().hex[:16]}"
        self._save(job, {"state": RUNNING, "key": key, "started": time.time()})
        self.handle.set(meta_key("beat", job), time.time(), expire=_TTL)
        with self._lock:
            self._live.add(job)
            if self._beater is None or not self._beater.is_alive():
                self._beater = threading.Thread(target=self._heartbeat, name="camlens-job-heartbeat", daemon=True)
                self._beater.start()

        def run():
            _current_job.set(job)
            try:
                job_fn(key, self._make_progress_key(key), args, context)
            except BaseException as error:  # noqa: BLE001 - Dash's job_fn stores Exceptions itself
                log.exception("background job %s died outside its callback", job)
                self.handle.set(key, {"background_callback_error": {
                    "msg": f"The job stopped unexpectedly on the server ({type(error).__name__}): run it again.",
                    "tb": ""}}, expire=_TTL)
            finally:
                with self._lock:
                    self._live.discard(job)
                with self.handle.transact():
                    record = self._load(job)
                    if record is not None and record.get("state") == RUNNING:
                        self._save(job, {**record, "state": DONE})

        self.pool.submit(run)
        return job

    def terminate_job(self, job):
        if job is not None and (self._load(str(job)) or {}).get("state") == RUNNING:
            log.info("cancel requested for job %s", job)
            self.handle.set(meta_key("cancel", str(job)), True, expire=_TTL)

    def terminate_unhealthy_job(self, job):
        return False

    @staticmethod
    def current_job() -> str | None:
        return _current_job.get()

    def cancelled(self) -> bool:
        """True once the browser cancelled (or superseded) the job running on this thread."""
        job = _current_job.get()
        return bool(job and self.handle.get(meta_key("cancel", job), False))


class CeleryJobManager(_Lifecycle, dash.CeleryManager):
    """Dash's CeleryManager with the job lifecycle above. Job records and heartbeats are Redis keys
    next to Dash's results; times are Redis's clock, so web and worker machines need not agree.

    Workers run jobs on threads (`worker_pool = "threads"`; `--pool` on the command line still
    wins): the worker's main process has built the app, which has run TensorFlow, so the children
    of Celery's default prefork pool hang on their first op (measured: a forked child of a process
    that ran `create_app` never finishes). A thread pool shares one loaded model per worker process,
    and cancelling is cooperative, as with ThreadJobManager: a Redis flag the engine reads."""

    def __init__(self, celery_app, cache_by=None, expire=None):
        conf = celery_app.conf
        conf.worker_pool = "threads"
        # A Redis that is down or unreachable must fail fast, not hang a request.
        conf.redis_socket_connect_timeout = conf.redis_socket_connect_timeout or 3
        conf.redis_socket_timeout = conf.redis_socket_timeout or 10
        super().__init__(celery_app, cache_by=cache_by, expire=expire)

    @property
    def _redis(self):
        return self.handle.backend.client

    def _load(self, job):
        raw = self._redis.get(f"camlens-job-{job}")
        return None if raw is None else json.loads(raw)

    def _save(self, job, record):
        self._redis.set(f"camlens-job-{job}", json.dumps(record), ex=_TTL)

    def _last_beat(self, job):
        raw = self._redis.get(f"camlens-beat-{job}")
        return None if raw is None else float(raw)

    def _now(self):
        seconds, micro = self._redis.time()
        return seconds + micro / 1e6

    def _alive(self, job, record):
        return bool(dash.CeleryManager.job_running(self, job))

    def _runner_failed(self, job):
        status = self.handle.AsyncResult(job).status
        if status in ("FAILURE", "REVOKED"):
            return f"The job stopped: its Celery worker process ended ({status.lower()}). Run it again."
        if status == "SUCCESS" and not self.result_ready((self._load(job) or {}).get("key", "")):
            return UNREADABLE   # finished, but its result is gone from Redis
        return None

    def get_updated_props(self, key):
        """Values the job sent with `dash.set_props`, read once. (Dash 4.4.1's CeleryManager reads
        them but deletes the *result* key instead: the entry stayed, every poll re-sent it, and a
        result written meanwhile was lost.)"""
        name = self._make_set_props_key(key)
        raw = self.handle.backend.get(name)
        if raw is None:
            return {}
        self.clear_cache_entry(name)
        try:
            return json.loads(raw)
        except ValueError as error:
            log.warning("job update %s unreadable (%s): dropped", name, error)
            return {}

    def _abandon(self, job):
        try:
            self.handle.control.revoke(job)
        except Exception:  # noqa: BLE001 - best effort; the job is failed either way
            log.warning("could not revoke job %s", job, exc_info=True)

    def terminate_job(self, job):
        """Cancel: a flag the job's engine reads between batches, and a revoke for a job still
        queued (a thread cannot be killed; Dash also calls this after reading a result)."""
        if job is None or (self._load(str(job)) or {}).get("state") != RUNNING:
            return
        if self.handle.AsyncResult(str(job)).status in ("SUCCESS", "FAILURE", "REVOKED"):
            return   # over already (Dash calls this after reading each result)
        self._redis.set(f"camlens-cancel-{job}", 1, ex=_TTL)
        self.handle.control.revoke(str(job))

    def cancelled(self) -> bool:
        """True once the browser cancelled (or superseded) the job running on this thread."""
        job = _current_job.get()
        return bool(job and self._redis.get(f"camlens-cancel-{job}"))

    def call_job_fn(self, key, job_fn, args, context):
        job = uuid.uuid4().hex
        self._save(job, {"state": RUNNING, "key": key, "started": self._now()})
        job_fn.apply_async(args=(key, self._make_progress_key(key), args, context), task_id=job)
        return job

    def make_job_fn(self, fn, progress, key=None):
        manager = self

        @functools.wraps(fn)
        def beating(*args, **kwargs):
            from celery import current_task

            job = current_task.request.id
            _current_job.set(job)
            stop = threading.Event()

            def beat():
                while True:
                    try:
                        manager._redis.set(f"camlens-beat-{job}", manager._now(), ex=_TTL)
                    except Exception:  # noqa: BLE001
                        log.warning("heartbeat of job %s", job, exc_info=True)
                    if stop.wait(manager.beat_every):
                        return

            threading.Thread(target=beat, name="camlens-job-heartbeat", daemon=True).start()
            try:
                return fn(*args, **kwargs)
            finally:
                stop.set()

        return super().make_job_fn(beating, progress, key)


def job_error_message(error: BaseException) -> str:
    """One line for the page about a background job that could not start, run or be polled: a dead
    runner (the lifecycle above), an unreachable Redis, or anything else (details in the log)."""
    text = str(error)
    if text.startswith(_ERROR_PREFIX):
        return text[len(_ERROR_PREFIX):].split("\n", 1)[0] or "The job failed on the server."
    if _queue_down(error):
        log.error("background job queue unreachable: %s: %s", type(error).__name__, text.splitlines()[0] if text else "")
        return ("The job queue (Redis) cannot be reached, so slow jobs cannot run now: try again later "
                "(the server log has the details).")
    log.error("background job failed", exc_info=error)
    return f"The job failed on the server ({type(error).__name__}); the details are in its log."


def _queue_down(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for cls in type(error).__mro__:
            if (cls.__module__.split(".")[0] in ("redis", "kombu", "amqp")
                    and cls.__name__ in ("ConnectionError", "TimeoutError", "OperationalError", "BusyLoadingError")) \
                    or cls in (ConnectionError, TimeoutError):
                return True
        error = error.__cause__ or error.__context__
    return False


def job_arguments(manager, run: str, cancel: str, progress: str, text: str, stop: tuple = ()) -> dict:
    """Dash background-callback arguments for a job that button `run` starts, button `cancel`
    stops, dbc.Progress `progress` shows and element `text` words (both hidden while idle): the
    page's one job pattern. The words sit beside the bar, never in it: a label inside a 3 % bar
    cannot be read. `stop`: more Inputs that cancel the job when they change."""
    return dict(
        background=True,
        manager=manager,
        progress=[Output(progress, "value"), Output(text, "children")],
        progress_default=[0, ""],
        running=[
            (Output(run, "disabled"), True, False),
            (Output(cancel, "disabled"), False, True),
            (Output(progress, "className"), "mt-1", "mt-1 d-none"),
            (Output(text, "className"), "progress-text small mt-2", "progress-text small mt-2 d-none"),
        ],
        cancel=[Input(cancel, "n_clicks"), *stop],
        interval=500,
    )


def cancel_check(manager):
    """The `cancel` callback for the engine: the job manager's cancel flag (threads cannot be killed)."""
    return getattr(manager, "cancelled", lambda: False)
