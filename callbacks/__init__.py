"""Wiring between the page and the backend: the only package that knows both Dash and `explain`.

    register(app, config, registry, manager)

builds the server-side store (uploads and heatmaps in bounded disk caches under
`config.cache_dir`), makes the page a function of the registry (a model dropped into the models
folder shows up on reload), and attaches the callbacks of `inputs` (image, model, target),
`results` (fast methods, background jobs, figures), `compare` (metrics view), `urlstate` (shareable URL) and the Flask
routes of `routes` (ZIP download, counters).
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from callbacks.store import Store, content_key

log = logging.getLogger("camlens.callbacks")

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
@dataclass
class Deps:
    """What every callback module needs."""

    app: object
    config: object
    registry: object
    store: Store
    manager: object  # the background-callback manager jobs run on

    @property
    def limits(self):
        from explain.image import ImageLimits

        return ImageLimits(max_bytes=int(self.config.max_upload_mb * 2**20), max_pixels=self.config.max_pixels)


def samples(app=None) -> list[dict]:
    """The gallery: assets/samples/index.json's entries (models.gallery writes it), else every image
    in the folder but masks."""
    if not SAMPLES_DIR.is_dir():
        return []
    entries = []
    index = SAMPLES_DIR / "index.json"
    if index.is_file():
        try:
            for item in json.loads(index.read_text()).get("samples", []):
                if (SAMPLES_DIR / item["file"]).is_file():
                    note = " (de-confounded: catches the shortcut model)" if item.get("deconfounded") else ""
                    entries.append((item["file"], item.get("title", item["file"]) + note))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed %s", index)
            entries = []
    if not entries:
        for path in sorted(SAMPLES_DIR.iterdir()):
            stem = path.stem.lower()
            if path.suffix.lower() in _IMAGE_SUFFIXES and "mask" not in stem and not stem.startswith((".", "_")):
                entries.append((path.name, path.stem.replace("-", " ").replace("_", " ")))
    url = (lambda name: app.get_asset_url(f"samples/{name}")) if app is not None else \
        (lambda name: f"/assets/samples/{name}")
    return [{"name": name, "title": title, "src": url(name)} for name, title in entries]


def sample_path(name: str) -> Path | None:
    """The sample file called `name`, only if it is one the gallery lists (no path tricks)."""
    if name in {s["name"] for s in samples()}:
        return SAMPLES_DIR / name
    return None


@functools.cache
def scene_keys() -> frozenset[str]:
    """Content keys of the gallery's generated scenes: an image with one of these is a scene, any
    other upload is treated as a photo (what the domain note compares with a model's domain)."""
    return frozenset(content_key(sample_path(s["name"]).read_bytes()) for s in samples())


def photo_model(registry) -> str | None:
    """The first usable model that knows photos (the domain note's one-click switch)."""
    return next((m.name for m in registry.list() if m.available and m.domain == "photos"), None)


def catalog(deps: Deps):
    from explain import METHODS, OPTIONS
    from explain.methods import DEFAULT_METHODS
    from explain.captions import SCALE_WHY
    from explain.render import COLORMAPS, luts_hex
    from layouts.page import Catalog

    models = [{"name": m.name, "label": m.display_name, "available": m.available, "reason": m.reason,
               "title": f"{m.display_name} ({m.source})"} for m in deps.registry.list()]
    default = deps.registry.default_model()
    options = [{"name": o.name, "label": o.name.replace("_", " "), "default": o.default,
                "description": o.description, "choices": list(o.choices) or None}
               for o in OPTIONS.values() if o.shown]
    return Catalog(
        methods=[{"id": m.id, "name": m.name, "description": m.plain, "paper": m.paper,
                  "family": m.family, "slow": m.slow} for m in METHODS.values()],
        default_methods=DEFAULT_METHODS,
        models=models,
        samples=samples(deps.app),
        colormaps=list(COLORMAPS),
        options=options,
        default_model=default,
        max_upload_mb=deps.config.max_upload_mb,
        max_megapixels=deps.config.max_pixels / 1e6,
        luts=luts_hex(),
        scale_groups=[{"group": g, "why": SCALE_WHY.get(g, "the same units"),
                       "methods": [m.name for m in METHODS.values() if m.scale_group == g]}
                      for g in dict.fromkeys(m.scale_group for m in METHODS.values() if m.scale_group)]
        + [{"group": None, "why": "no unit in common with the others",
            "methods": [m.name for m in METHODS.values() if not m.scale_group]}],
    )


def make_store(config) -> Store:
    """Disk caches under cache_dir; Redis when Celery workers (possibly on other machines) share the work."""
    if config.redis_url:
        import redis

        return Store(Path(config.cache_dir) / "store", redis=redis.Redis.from_url(config.redis_url))
    return Store(Path(config.cache_dir) / "store")


def register(app, config, registry, manager) -> None:
    """Attach every callback (and the app's extra routes) to `app`; background jobs run on `manager`."""
    from callbacks import challenge, compare, inputs, results, routes, urlstate
    from layouts.page import page

    deps = Deps(app=app, config=config, registry=registry, store=make_store(config), manager=manager)
    app.layout = lambda: page(config, catalog(deps))
    inputs.register(deps)
    results.register(deps)
    urlstate.register(deps)
    routes.register(deps)
    compare.register(deps)
    challenge.register(deps)
    app.camlens = deps  # for tests and the bench: the store's counters, the registry
