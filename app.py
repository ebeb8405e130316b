"""camlens web app: the Dash factory `create_app`, the WSGI `server`, and `python app.py`.

Configuration lives in one place, `Config`, read from `CAMLENS_*` environment variables and
overridden by command-line flags. Bootstrap's CSS and icons are served from the installed
`bootstrap-flask` package, so the page looks right on an air-gapped machine.
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import dash
import flask

import callbacks

log = logging.getLogger("camlens")

_TRUE = {"1", "true", "yes", "on"}


def _bool(raw: str) -> bool:
    return raw.strip().lower() in _TRUE


def _optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


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
        Path(tempfile.gettempdir()) / "camlens", Path, "uploads and background-job cache"
    )
    redis_url: str | None = _option(None, str, "use Celery workers via this Redis URL")
    theme: str = _option("bootstrap", str.lower, "Bootstrap theme: bootstrap or a Bootswatch name")

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


@functools.cache
def background_manager(config: Config):
    """Where long explanations run: Celery workers when Redis is configured, else threads of this
    process with their bookkeeping in a disk cache (callbacks.jobs says why not forked processes).
    Cached per config, so the Celery worker (`app:celery_app`) and the web app share one."""
    if config.redis_url:
        from celery import Celery

        celery = Celery("camlens", broker=config.redis_url, backend=config.redis_url)
        return dash.CeleryManager(celery)
    import diskcache

    from callbacks.jobs import ThreadJobManager

    return ThreadJobManager(diskcache.Cache(str(config.cache_dir / "jobs")))


def create_app(config: Config | None = None) -> dash.Dash:
    config = config or Config.from_env()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(config.log_level)
    config.cache_dir.mkdir(parents=True, exist_ok=True)

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

    @server.route("/vendor/bootstrap5/<path:filename>")
    def bootstrap_static(filename):
        return flask.send_from_directory(vendor, filename, max_age=86400)

    from models import Registry

    registry = Registry(config.models_dir, config.model_cache_size)

    @server.route("/healthz")
    def healthz():
        return flask.jsonify(status="ok", versions=versions(),
                             models=[m.name for m in registry.list() if m.available])

    callbacks.register(app, config, registry, manager)
    log.info("camlens app created (theme %s, cache %s)", config.theme, config.cache_dir)
    return app


def main(argv: list[str] | None = None) -> None:
    try:
        config = Config.from_env(argv=sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        sys.exit(f"camlens: {error}")
    create_app(config).run(host=config.host, port=config.port, debug=config.debug)


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
