"""camlens web app: the Dash factory `create_app`, the WSGI `server`, and `python app.py`.

Configuration lives in one place, `Config`, read from `CAMLENS_*` environment variables and
overridden by command-line flags. Bootstrap's CSS and icons are served from the installed
`bootstrap-flask` package, so the page looks right on an air-gapped machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import importlib.util
import logging
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import dash
import flask

import callbacks
from explain.private import private_folder

log = logging.getLogger("camlens")

_TRUE = {"1", "true", "yes", "on"}


def _bool(raw: str) -> bool:
    return raw.strip().lower() in _TRUE


def _optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


def default_cache_dir() -> Path:
    """This user's own cache folder: $XDG_CACHE_HOME/camlens, else ~/.cache/camlens (under a home
    folder no one else can write), else <tmp>/camlens-<uid> when the home is not writable. Never a
    shared name in /tmp that another user could create first."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "camlens"
    home = Path("~").expanduser()
    if os.access(home, os.W_OK):
        return home / ".cache" / "camlens"
    return Path(tempfile.gettempdir()) / f"camlens-{os.getuid()}"


def _option(default, parse, help: str):
    return field(default=default, metadata={"parse": parse, "help": help})


@dataclass(frozen=True)
class Config:
    """Every setting of the app; `CAMLENS_<NAME>` in the environment, `--<name>` on the CLI."""

    host: str = _option("127.0.0.1", str, "interface the dev server listens on")
    port: int = _option(8050, int, "port the dev server listens on")
    debug: bool = _option(False, _bool, "Dash debug mode (hot reload, error overlay)")
    log_level: str = _option("INFO", str.upper, "DEBUG, INFO, WARNING or ERROR")
    models_dir: Path | None = _option(None, _optional_path, "folder of your own .keras/.h5 models")
    model_cache_size: int = _option(3, int, "models kept loaded at once (LRU)")
    max_upload_mb: float = _option(15.0, float, "largest accepted upload, in MB")
    max_pixels: int = _option(40_000_000, int, "largest accepted image, in pixels")
    cache_dir: Path = _option(
        default_cache_dir(), Path, "uploads and background-job cache (a private folder: 0700, yours)"
    )
    redis_url: str | None = _option(None, str, "use Celery workers via this Redis URL")
    theme: str = _option("bootstrap", str.lower, "Bootstrap theme: bootstrap or a Bootswatch name")
    warm_start: bool = _option(False, _bool, "load and warm the default model in the background at start "
                                              "(on under `python app.py` and serve.py)")
    secret: str | None = field(default=None, repr=False, metadata={  # never printed with the config
        "parse": str, "help": "key that signs background-job handles; the same on every web machine "
                              "(default: a key file made in the cache folder)"})
    challenge_dir: Path | None = _option(None, _optional_path, "labelled photos for Beat the AI: a folder with "
                                         "labels.json (file name -> class) or one subfolder per class")

    def __post_init__(self):
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535, not {self.port}")
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            problems.append(f"log level {self.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        if self.model_cache_size < 1:
            problems.append("model cache size must be at least 1")
        if self.max_upload_mb <= 0 or self.max_pixels <= 0:
            problems.append("upload limits must be positive")
        if self.theme not in available_themes():
            problems.append(f"theme {self.theme!r} is not one of {', '.join(available_themes())}")
        if self.challenge_dir is not None and not self.challenge_dir.is_dir():
            problems.append(f"challenge dir {self.challenge_dir} is not a folder")
        if problems:
            raise ValueError("; ".join(problems))

    @staticmethod
    def env_name(name: str) -> str:
        return "CAMLENS_" + name.upper()

    @classmethod
    def from_env(cls, env=None, argv: list[str] | None = None) -> "Config":
        """Defaults, then the environment, then `argv` flags (None: no flags are read)."""
        env = os.environ if env is None else env
        raw = {f.name: env[cls.env_name(f.name)] for f in fields(cls) if cls.env_name(f.name) in env}
        if argv is not None:
            parser = argparse.ArgumentParser(prog="app.py", description="Run the camlens app.")
            for f in fields(cls):
                parser.add_argument(
                    "--" + f.name.replace("_", "-"),
                    dest=f.name,
                    help=f"{f.metadata['help']} (env {cls.env_name(f.name)}, default {f.default})",
                )
            flags = vars(parser.parse_args(argv))
            raw.update({k: v for k, v in flags.items() if v is not None})
        parsed = {}
        for f in fields(cls):
            if f.name in raw:
                try:
                    parsed[f.name] = f.metadata["parse"](raw[f.name])
                except ValueError:
                    raise ValueError(f"{f.name}: cannot read {raw[f.name]!r}") from None
        return cls(**parsed)


#: `@import url(...)` of a font service in a theme's CSS: dropped, so no request leaves the app and
#: the page looks the same offline (the themes fall back to their system-font stacks).
_WEB_FONTS = re.compile(rb"@import\s+url\((['\"]?)https?://[^)]*\1\)\s*;?")


def bootstrap_dir() -> Path:
    """Bootstrap 5 as shipped inside the `bootstrap-flask` package (no CDN, no copy in the repo)."""
    spec = importlib.util.find_spec("flask_bootstrap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("bootstrap-flask is not installed: run `make run` to install requirements")
    return Path(spec.submodule_search_locations[0]) / "static" / "bootstrap5"


def available_themes() -> list[str]:
    bootswatch = bootstrap_dir() / "css" / "bootswatch"
    return ["bootstrap"] + sorted(p.name for p in bootswatch.iterdir() if (p / "bootstrap.min.css").is_file())


def _theme_css(theme: str) -> str:
    return "css/bootstrap.min.css" if theme == "bootstrap" else f"css/bootswatch/{theme}/bootstrap.min.css"


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata so /healthz never imports TensorFlow."""
    out = {}
    for package in ("tensorflow", "keras", "dash"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def max_request_bytes(config: Config) -> int:
    """Largest request body accepted (413 above it, before it is read): an upload arrives
    base64-encoded (4/3 of its size) inside the JSON body of a callback, plus 2 MB for the rest."""
    return int(config.max_upload_mb * 2**20 * 4 / 3) + 2 * 2**20


# The page works under this policy (the browser tests run it in Chromium, and fail on any console
# error such as a refused script): Dash's inline renderer script is allowed by its hash
# (app.csp_hashes()); no 'unsafe-eval' is needed (the bundles' Function() calls are guarded
# fallbacks); plotly and Dash components set inline styles; figures and previews use data: URLs.
_CSP = ("default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'")


def callback_body_problem(body, callback_map) -> str | None:
    """Why `body` is no Dash callback request this app can run (a one-line reason), or None.
    The shape is what dash's dispatch reads: {"output": str, "outputs": object or list,
    "inputs": [...], "state": [...], "changedPropIds": [str]}, each input/state an object with
    an "id" and a "property" (or a list of them, for pattern-matching ALL)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or not output:
        return "'output' must be a string naming the callback's outputs"
    callback = callback_map.get(output)
    if callback is None:
        return f"no callback has the output {output[:100]!r}"
    if "callback" not in callback:   # a clientside callback: it runs in the browser, never here
        return f"the output {output[:100]!r} is computed in the browser"
    if not isinstance(body.get("outputs", []), (dict, list)):
        return "'outputs' must be an object or a list"
    if "inputs" not in body:
        return "'inputs' is missing"
    for key in ("inputs", "state"):
        items = body.get(key, [])
        if not isinstance(items, list):
            return f"'{key}' must be a list"
        expected = callback.get(key) or []
        if len(items) != len(expected):
            return f"'{key}' has {len(items)} items, the callback takes {len(expected)}"
        for item, want in zip(items, expected):
            for dep in item if isinstance(item, list) else [item]:
                if not (isinstance(dep, dict) and isinstance(dep.get("id"), (str, dict))
                        and isinstance(dep.get("property"), str)):
                    return f"each of '{key}' must be an object with an 'id' and a 'property'"
                plain = isinstance(want.get("id"), str) and not want["id"].startswith("{")  # else a pattern
                if plain and (dep["id"], dep["property"]) != (want["id"], want["property"]):
                    return f"'{key}' names {dep['id']}.{dep['property']} where the callback takes {want['id']}.{want['property']}"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "'changedPropIds' must be a list of strings"
    return None


def _harden(app: dash.Dash, config: Config) -> None:
    """Request size limit, callback body validation, short error answers and security headers,
    in the Flask app itself, so `python app.py` and any WSGI server get them."""
    from werkzeug.exceptions import HTTPException

    server = app.server
    limit = max_request_bytes(config)
    server.config["MAX_CONTENT_LENGTH"] = limit
    dispatch_path = app.config.routes_pathname_prefix + "_dash-update-component"
    csp = _CSP.format(hashes=" ".join(app.csp_hashes()))

    def reason(status: int, text: str):
        return flask.jsonify(error=text), status

    @server.before_request
    def _check_request():
        length = flask.request.content_length
        if length is not None and length > limit:
            return reason(413, f"request body of {length} bytes is over the limit of {limit} bytes")
        if flask.request.path == dispatch_path and flask.request.method == "POST":
            body = flask.request.get_json(silent=True)  # None when it is no JSON (or `null`)
            problem = callback_body_problem(body, app.callback_map)
            if problem:
                return reason(400, problem)
        return None

    @server.errorhandler(Exception)
    def _error(error):
        if isinstance(error, HTTPException):
            if error.code == 413:
                return reason(413, f"request body over the limit of {limit} bytes")
            if error.code is not None and error.code >= 500:
                log.error("%s %s answered %s", flask.request.method, flask.request.path, error.code, exc_info=error)
                return reason(error.code, error.name)
            return error
        log.error("%s %s failed: %s: %s", flask.request.method, flask.request.path, type(error).__name__,
                  str(error).splitlines()[0][:200] if str(error) else "", exc_info=error)
        return reason(500, f"internal error ({type(error).__name__}); the server log has the details")

    @server.after_request
    def _security_headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy", csp)
        return response


@functools.cache
def background_manager(config: Config):
    """Where long explanations run: Celery workers when Redis is configured, else threads of this
    process with their bookkeeping in a disk cache (callbacks.jobs says why not forked processes).
    Cached per config, so the Celery worker (`app:celery_app`) and the web app share one."""
    if config.redis_url:
        from celery import Celery

        from callbacks.jobs import CeleryJobManager

        celery = Celery("camlens", broker=config.redis_url, backend=config.redis_url)
        return CeleryJobManager(celery)
    from callbacks.jobs import ThreadJobManager

    return ThreadJobManager(config.cache_dir / "jobs")


def signing_secret(config: Config) -> bytes:
    """The key Dash signs background-job handles with (the Flask secret_key): CAMLENS_SECRET, else
    a random key kept in `<cache_dir>/secret.key` (made once, owner-only, in the private cache
    folder), so every web process on that folder, and a restarted one, accepts the others'
    handles. Without it Dash keeps its own key in the job store, where a store rebuilt after
    damage or unreachable at start gives each process a different key, and the page's running
    jobs silently end."""
    if config.secret:
        return config.secret.encode()
    if config.redis_url:
        log.warning("CAMLENS_SECRET is not set: web servers on other machines will not read the jobs this "
                    "one starts (set the same CAMLENS_SECRET on each)")
    import secrets

    path = config.cache_dir / "secret.key"
    if not path.exists():
        draft = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(draft, path)      # atomic: the first process's key wins, the others read it
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ValueError(f"key file {path} must be a file of this user readable by no one else: refusing it")
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"key file {path} is damaged (too short): delete it and restart")
    return key.encode()


def create_app(config: Config | None = None) -> dash.Dash:
    config = config or Config.from_env()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(config.log_level)
    private_folder(config.cache_dir)

    vendor = bootstrap_dir()
    manager = background_manager(config)
    app = dash.Dash(
        __name__,
        title="camlens",
        update_title=None,
        external_stylesheets=[
            "/vendor/bootstrap5/" + _theme_css(config.theme),
            "/vendor/bootstrap5/css/font/bootstrap-icons.min.css",
        ],
        background_callback_manager=manager,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    server = app.server
    server.secret_key = signing_secret(config)

    @server.route("/vendor/bootstrap5/<path:filename>")
    def bootstrap_static(filename):
        if filename.endswith(".css"):   # Bootswatch themes @import Google Fonts: never fetched here
            response = flask.send_from_directory(vendor, filename, max_age=86400)
            response.direct_passthrough = False
            response.set_data(_WEB_FONTS.sub(b"", response.get_data()))
            return response
        return flask.send_from_directory(vendor, filename, max_age=86400)

    from models import Registry

    registry = Registry(config.models_dir, config.model_cache_size, background_warmup=True,
                        passes_dir=config.cache_dir / "passes")
    if config.warm_start:   # off the request path: /healthz answers meanwhile
        registry.warm_default()

    @server.route("/healthz")
    def healthz():
        """Alive (always 200 while serving); `warm` says whether the default model's first
        passes are ready, for a readiness check that should wait for them."""
        default = registry.default_model()
        return flask.jsonify(status="ok", versions=versions(),
                             models=[m.name for m in registry.list() if m.available],
                             default_model=default, warm=bool(default) and registry.warmed(default, timeout=0))

    callbacks.register(app, config, registry, manager)
    _harden(app, config)
    log.info("camlens app created (theme %s, cache %s)", config.theme, config.cache_dir)
    return app


def with_warm_start(config: Config, env=None) -> Config:
    """`config` with warm_start on, unless CAMLENS_WARM_START says otherwise: a server started to
    serve (app.main, serve.py) warms its default model at once; tests' create_app calls do not."""
    env = os.environ if env is None else env
    return config if Config.env_name("warm_start") in env else dataclasses.replace(config, warm_start=True)


def main(argv: list[str] | None = None) -> None:
    try:
        argv = sys.argv[1:] if argv is None else argv
        config = Config.from_env(argv=argv)
        if not any(a.startswith("--warm-start") for a in argv):
            config = with_warm_start(config)
        app = create_app(config)
    except ValueError as error:
        sys.exit(f"camlens: {error}")
    app.run(host=config.host, port=config.port, debug=config.debug)


@functools.cache
def _default_app() -> dash.Dash:
    return create_app()


def __getattr__(name: str):
    """`app:server` for gunicorn and `app:celery_app` for Celery workers, built on first use
    from the environment, so importing this module has no side effects."""
    if name == "server":
        return _default_app().server
    if name == "celery_app":
        manager = background_manager(Config.from_env())
        if not isinstance(manager, dash.CeleryManager):
            raise AttributeError("celery_app needs CAMLENS_REDIS_URL to be set")
        # `celery -A app:celery_app` puts this folder on sys.path only while importing this file;
        # the app's own packages import lazily, so keep it there.
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        _default_app()  # registers the background callbacks as Celery tasks in the worker
        return manager.handle
    raise AttributeError(name)


if __name__ == "__main__":
    main()
