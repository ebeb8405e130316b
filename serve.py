"""Production server for camlens (`make serve`, the Docker CMD): waitress in front of `app:server`.

Why waitress and not gunicorn's threaded worker (measured, see README "Production serving"):
gunicorn hands a connection to an app thread as soon as its headers arrive, and that thread then
reads the body itself, so four clients that send headers and one byte of a declared 1 MB body hold
all four threads and /healthz gets no answer for minutes. waitress reads every request (headers and
body) on its asyncore loop, in the server's own buffers (bodies over 512 KB spill to a temp file),
and only a complete request reaches an app thread: stalled clients cost a socket, not a thread.
It answers 413 to a declared body over `max_request_body_size` before reading any of it, and
closes connections idle for `channel_timeout` seconds. gunicorn has no request-body size limit.

Environment (on top of app.Config's CAMLENS_* settings, whose host and port it listens on):
  CAMLENS_THREADS       app threads per process (default 4)
  WEB_CONCURRENCY       processes (default 1; each holds its own models), sharing one socket
  CAMLENS_IDLE_TIMEOUT  seconds a connection may send nothing before it is closed (default 30)
  CAMLENS_CONNECTIONS   open connections per process before new ones wait (default 100)
  CAMLENS_WARM_START    load and warm the default model in the background at start (default on here)

`python serve.py --keep-passes` traces the default model's first passes into the cache folder's
kept passes (explain.kept) and exits, unless that folder already holds kept passes: a server's
very first start then loads them instead of tracing while visitors wait. The Docker image runs
it at build time; `make serve` does not (a second process start, ~4.6 s, on every start).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

from app import Config, create_app, max_request_bytes, with_warm_start

log = logging.getLogger("camlens.serve")


def _int_env(env, name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name}: cannot read {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def settings(config: Config, env=None) -> dict:
    """waitress keyword arguments for this config and environment."""
    env = os.environ if env is None else env
    return dict(
        threads=_int_env(env, "CAMLENS_THREADS", 4),
        max_request_body_size=max_request_bytes(config),  # 413 before the body is read
        max_request_header_size=64 * 1024,
        channel_timeout=_int_env(env, "CAMLENS_IDLE_TIMEOUT", 30),
        connection_limit=_int_env(env, "CAMLENS_CONNECTIONS", 100),
        cleanup_interval=5,  # how often idle connections are looked for
        ident="camlens",
        expose_tracebacks=False,
    )


class AccessLog:
    """One log line per request: method, path, status, bytes, milliseconds (as gunicorn's access log)."""

    def __init__(self, app):
        self.app = app
        self.log = logging.getLogger("camlens.access")

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        seen = {}

        def recording(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            seen["length"] = next((v for k, v in headers if k.lower() == "content-length"), "-")
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording)
        finally:
            self.log.info("%s %s %s %s %s %.0fms", environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"), seen.get("status", "-"), seen.get("length", "-"),
                          (time.perf_counter() - start) * 1000)


def _serve(config: Config, options: dict, sockets=None) -> None:
    import waitress

    app = create_app(config)
    where = {"sockets": sockets} if sockets else {"host": config.host, "port": config.port}
    log.info("serving on %s:%s (%d threads, bodies up to %.1f MB, idle timeout %ds)", config.host, config.port,
             options["threads"], options["max_request_body_size"] / 2**20, options["channel_timeout"])
    waitress.serve(AccessLog(app.server), **where, **options)


def _supervise(config: Config, options: dict, workers: int) -> None:
    """Bind once, fork `workers` processes that each build the app and serve the shared socket;
    restart any that dies; forward SIGTERM/SIGINT to them and exit when they have."""
    sock = socket.create_server((config.host, config.port), reuse_port=False, backlog=1024)
    sock.set_inheritable(True)
    children: dict[int, int] = {}
    stopping = False
    exit_code = 0

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                _serve(config, options, sockets=[sock])
            except ValueError as error:  # the app cannot start (e.g. its cache folder): no restart
                print(f"camlens: {error}", file=sys.stderr)
                code = 3
            except SystemExit:
                pass
            except BaseException:
                log.exception("worker failed")
                code = 1
            os._exit(code)
        children[pid] = slot

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, None)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3:
            stop(signal.SIGTERM, None)
            exit_code = 3
        elif slot is not None and not stopping:
            log.error("worker %d exited (status %d): restarting it", pid, status)
            time.sleep(1)
            spawn(slot)
    sys.exit(exit_code)


def keep_passes(config: Config) -> str:
    """Fill the cache folder's kept passes with the default model's first passes (WARM_METHODS),
    unless it holds some already (checked before any model is built; passes kept by older
    versions are traced again, and kept, by the server's own first start). Returns what it did,
    in one line."""
    from explain.private import private_folder

    folder = config.cache_dir / "passes"
    if folder.is_dir() and any(folder.glob("*.pb")):
        return f"kept passes already in {folder}"
    private_folder(config.cache_dir)
    from models import Registry

    start = time.perf_counter()
    registry = Registry(config.models_dir, 1, passes_dir=folder)   # warms before it returns
    name = registry.default_model()
    if name is None:
        return "no model is available: nothing to keep"
    registry.explainer(name)
    kept = len(list(folder.glob("*.pb")))
    return f"kept {kept} passes of {name} in {folder} ({time.perf_counter() - start:.1f} s)"


def main() -> None:
    if sys.argv[1:] == ["--keep-passes"]:
        try:
            print(f"camlens: {keep_passes(Config.from_env())}")
        except ValueError as error:
            sys.exit(f"camlens: {error}")
        return
    if sys.argv[1:]:
        sys.exit("camlens: serve.py takes its settings from the environment (README, Configuration); "
                 "its one flag is --keep-passes")
    try:
        config = with_warm_start(Config.from_env())  # the default model warms in the background at start
        options = settings(config)
        workers = _int_env(os.environ, "WEB_CONCURRENCY", 1)
    except ValueError as error:
        sys.exit(f"camlens: {error}")
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers == 1:
        # As PID 1 in a container, SIGTERM is ignored unless handled.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            _serve(config, options)
        except ValueError as error:
            sys.exit(f"camlens: {error}")
    else:
        _supervise(config, options, workers)


if __name__ == "__main__":
    main()
