"""The app's work, free of Dash: decode uploads, predict, and compute heatmaps through the cache.

Callbacks (normal and background) call these; they never hold an image or a heatmap themselves,
only cache keys. A request for methods whose results are cached runs no model at all.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from callbacks.store import Store, content_key, digest
from explain import METHODS, OPTIONS
from explain.methods import option_owners
from explain.errors import Cancelled, ExplainError, LayerError
from explain.image import ImageLimits, load_image
from explain.run import method_layer

log = logging.getLogger("camlens.work")

@dataclass(frozen=True)
class Context:
    """Everything besides the method that decides a heatmap."""

    image: str
    model: str
    layer: tuple[str, ...] | None   # the chosen layers in the model's order (layers_for); a str: one
    target: int | None
    score: str = "logit"
    counterfactual: bool = False
    options: dict = field(default_factory=dict)
    contrast: int | None = None

    def __post_init__(self):
        if self.layer is not None:   # one path, or a list of paths (a record, the URL): a tuple
            layers = (self.layer,) if isinstance(self.layer, str) else tuple(self.layer)
            object.__setattr__(self, "layer", layers or None)

    def key(self, method: str) -> str:
        """The cache key of `method`'s map: only what its declaration says changes it."""
        info = METHODS[method]
        parts = {"v": 3, "image": self.image, "model": self.model, "method": method,
                 "options": {k: v for k, v in sorted(self.options.items()) if method in option_owners(k)}}
        if info.needs_layer:   # the set of layers: ('a',) and ('a', 'b') are different maps
            parts["layer"] = None if self.layer is None else list(self.layer)
        if info.needs_target:
            parts.update(target=self.target, score=self.score, contrast=self.contrast)
        if info.counterfactual:
            parts["cf"] = bool(self.counterfactual)
        return "res:" + digest(parts)


def layers_for(registry, model: str, value) -> tuple[str, ...] | None:
    """The layer dropdown's value (a path, a list of paths, or none) -> the layers in the model's
    order, duplicates dropped; none chosen: the model's default layer (None if it has none)."""
    chosen = [value] if isinstance(value, str) else list(value or [])
    explainer = registry.explainer(model)
    if not chosen:
        return None if explainer.default_layer is None else (explainer.default_layer,)
    order = {p: i for i, p in enumerate(explainer.spatial_layers())}
    return tuple(sorted(set(chosen), key=lambda p: order.get(p, len(order))))


def clean_options(values: dict) -> dict:
    """Form values -> explain options: only known names, numbers as ints, blanks -> the default."""
    out = {}
    for name, value in (values or {}).items():
        if name not in OPTIONS or value in (None, ""):
            continue
        parsed = OPTIONS[name].parse(value if OPTIONS[name].kind is not str else str(value), page=True)
        if parsed != OPTIONS[name].default:
            out[name] = parsed  # defaults never split the cache
    return out


def upload(store: Store, data: bytes, limits: ImageLimits):
    """Decode and keep an upload; the same bytes are decoded once (the key is their hash)."""
    key = content_key(data)
    stored = store.image(key)
    if stored is None:
        image = load_image(data, limits)
        stored = store.put_image(key, image)
        log.info("upload %s: %dx%d", key[:12], *stored.original_size)
    return stored


def predictions(store: Store, registry, image_key: str, model: str, top: int = 5) -> list[dict]:
    key = "pred:" + digest([image_key, model, top])
    cached = store.get(key)
    if cached is not None:
        return cached
    stored = _image(store, image_key)
    explainer = registry.explainer(model)
    start = time.perf_counter()
    rows = [asdict(p) for p in explainer.predict(stored.image, top=top)]
    store.record_pace(model, time.perf_counter() - start, 1)
    store.count("predict")
    store.put(key, rows)
    return rows


def _image(store: Store, key: str):
    stored = store.image(key)
    if stored is None:
        raise ExplainError("The image is no longer on the server (its cache was emptied): upload it again.")
    return stored


def cached(store: Store, ctx: Context, methods) -> dict[str, dict]:
    """The cached entries for `methods` (missing ones left out)."""
    out = {}
    for m in methods:
        entry = store.get(ctx.key(m))
        if entry is not None:
            out[m] = entry
    return out


@dataclass(frozen=True)
class Estimate:
    passes: int
    seconds: float | None   # None: no pass measured on this model yet
    measured: bool          # False: from single-image passes, an upper bound for batched work


def estimate(store: Store, registry, ctx: Context, methods) -> Estimate:
    """Model passes the uncached `methods` need, and the seconds they should take at the pace
    measured last on this model (batched work's own pace once a slow method has run)."""
    todo = [m for m in methods if store.get(ctx.key(m)) is None]
    if not todo:
        return Estimate(0, 0.0, True)
    explainer = registry.explainer(ctx.model)
    passes = sum(explainer.cost(todo, ctx.layer if _needs_layer(todo) else None, **ctx.options).values())
    batched = store.pace(ctx.model, "batched")
    if batched is not None:
        return Estimate(passes, passes * batched, True)
    single = store.pace(ctx.model)
    return Estimate(passes, None if single is None else passes * single, False)


def _needs_layer(methods) -> bool:
    return any(METHODS[m].needs_layer for m in methods)


def compute(store: Store, registry, ctx: Context, methods, *, progress=None, cancel=None) -> dict[str, dict]:
    """Entries for `methods`: cached ones as they are, the rest computed in one explain() call
    (so the gradient CAMs share one pass) and cached. An error that concerns one method (CAM on a
    model without a GAP head) is cached as that method's entry; a layer error concerns them all
    and is raised."""
    entries = cached(store, ctx, methods)
    todo = [m for m in methods if m not in entries]
    if not todo:
        return entries
    explainer = registry.explainer(ctx.model)
    stored = _image(store, ctx.image)
    layer = ctx.layer if _needs_layer(todo) else None
    if layer is not None and len(layer) > 1:   # methods that take one layer say so; the rest share
        for m in list(todo):                    # one pass (not one explain() call each)
            try:
                method_layer(explainer, METHODS[m], layer, True)
            except ExplainError as error:
                entries[m] = _error_entry(store, ctx, m, error)
                todo.remove(m)
        if not todo:
            return entries
        layer = layer if _needs_layer(todo) else None
    passes = sum(explainer.cost(todo, layer, **ctx.options).values())
    store.count("explain")
    log.info("explain model=%s layer=%s target=%s methods=%s", ctx.model, layer, ctx.target, ",".join(todo))
    start = time.perf_counter()
    try:
        results = explainer.explain(stored.image, todo, layer, ctx.target, score=ctx.score,
                                    counterfactual=ctx.counterfactual, contrast=ctx.contrast,
                                    progress=progress, cancel=cancel,
                                    **ctx.options)
    except (Cancelled, LayerError):
        raise
    except ExplainError as error:
        if len(todo) == 1:
            entries[todo[0]] = _error_entry(store, ctx, todo[0], error)
            return entries
        # One method cannot run here: find which, keep the others.
        for m in todo:
            entries.update(compute(store, registry, ctx, [m], progress=None, cancel=cancel))
        return entries
    kind = "batched" if all(METHODS[m].slow for m in todo) else "single"
    store.record_pace(ctx.model, time.perf_counter() - start, passes, kind)
    for m, result in results.items():
        entry = {
            "method": m, "heatmap": result.heatmap.astype(np.float32), "raw": result.raw,
            "seconds": float(result.seconds), "target": int(result.target), "layer": result.layer,
            "warnings": list(result.warnings), "extra": result.extra, "signed": result.signed,
            "mode": result.mode, "contrast": ctx.contrast if METHODS[m].needs_target else None,
        }
        store.put(ctx.key(m), entry)
        entries[m] = entry
    return entries


def _error_entry(store: Store, ctx: Context, method: str, error: ExplainError) -> dict:
    entry = {"method": method, "error": str(error)}
    store.put(ctx.key(method), entry)
    return entry
