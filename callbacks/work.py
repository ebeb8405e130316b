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


#: Images per batch in the pace probe: the batch size the slow methods run at (explain.perturb).
PROBE_BATCH = 16
#: The pace table's "model" for set-ups: a library's, the same for every model.
SETUP = "*"

#: A batched forward + backward pass, in forward passes (the probe times forward ones only).
#: Measured, batches of 16: `vehicles` 30 vs 13 ms (2.4), efficientnet-lite0 310 vs 144 ms (2.2).
BACKWARD_COST = 2.3


@dataclass(frozen=True)
class Estimate:
    passes: int
    seconds: float          # warm model passes at the batched pace measured on this model
    compile: float = 0.0    # one-off: tracing the passes this model has not run yet (first run only)


def pass_kinds(methods) -> set[str]:
    """The compiled passes (explain.passes kinds) `methods` run."""
    return {"tap" if k == "acts" else k for m in methods for k in (*METHODS[m].passes, *METHODS[m].traces)}


def untraced(explainer, methods) -> set[str]:
    """Which of those passes this model has not traced yet (the first run of them compiles)."""
    return pass_kinds(methods) - {key[0] for key in explainer.passes.traced()}


def unprepared(methods) -> list[str]:
    """Methods whose one-off library set-up (explain.spec.Setup) this process has not run yet."""
    return [m for m in methods if METHODS[m].setup is not None and not METHODS[m].setup.done]


def _setup_seconds(store: Store, method: str) -> float:
    """Its set-up as last measured here (any model: it is the library's), else as declared."""
    return store.pace(SETUP, "setup " + method) or METHODS[method].setup.typical


def estimate(store: Store, registry, ctx: Context, methods) -> Estimate:
    """Model passes the uncached `methods` need, the seconds they take warm at the batched pace
    measured on this model (each method's own once it has run here), and apart from that the
    one-off compile of the passes not traced yet. (A first estimate from single-image passes with
    the compile inside said 10309 s for a job of 220 s.)"""
    todo = [m for m in methods if store.get(ctx.key(m)) is None]
    if not todo:
        return Estimate(0, 0.0)
    explainer = registry.explainer(ctx.model)
    costs = explainer.cost(todo, ctx.layer if _needs_layer(todo) else None, **ctx.options)
    passes = sum(costs.values())
    pace = store.pace(ctx.model, "batched") or probe_pace(store, registry, ctx.model)
    seconds = sum(units * (store.pace(ctx.model, "batched " + m) or pace * _pass_cost(m))
                  for m, units in costs.items())
    per_trace = store.pace(ctx.model, "compile") or 0.0
    setups = sum(_setup_seconds(store, m) for m in unprepared(todo))
    return Estimate(passes, seconds, len(untraced(explainer, todo)) * per_trace + setups)


def _pass_cost(method: str) -> float:
    """One of `method`'s model passes in forward passes, until its own pace is measured."""
    return BACKWARD_COST if pass_kinds([method]) & {"grad", "guided"} else 1.0


def probe_pace(store: Store, registry, model: str) -> float:
    """Seconds per image of a warm batched forward pass of `model` (a batch of PROBE_BATCH zeros;
    the fastest of a few runs after the first, which pays a one-off setup for the new batch
    shape), recorded as the batched pace until a slow method measures its own. It also gives a
    first compile cost per pass: a trace costs about twice that setup (measured: blend trace
    0.11 s + first run 0.12 s vs 0.08 s setup on the tiny test model; 0.09 + 0.10 vs 0.10 s on
    `vehicles`)."""
    registry.warmed(model, timeout=60)   # the background warm-up would share the CPU with the probe
    explainer = registry.explainer(model)
    batch = np.zeros((PROBE_BATCH, *explainer.input_size, explainer.channels), np.float32)
    times, begun = [], time.perf_counter()
    while len(times) < 2 or (len(times) < 4 and time.perf_counter() - begun < 1.0):
        start = time.perf_counter()
        explainer.passes.forward(batch)
        times.append(time.perf_counter() - start)
    warm = min(times[1:])
    store.record_pace(model, warm, PROBE_BATCH, "batched")
    if store.pace(model, "compile") is None:
        store.record_pace(model, 2 * max(times[0] - warm, 0.0) + 1e-3, 1, "compile")
    log.info("pace of %s: %.2f ms per image in a batch of %d", model, 1e3 * warm / PROBE_BATCH, PROBE_BATCH)
    return warm / PROBE_BATCH


def compile_passes(store: Store, explainer, ctx: Context, layer, methods) -> None:
    """Run the one-off library set-ups and trace the passes `methods` need that this model has
    not run yet, each timed apart from the work (recorded as set-up and compile paces), so the
    work's own pace is the warm one."""
    for m in unprepared(methods):
        start = time.perf_counter()
        try:
            METHODS[m].setup()
        except ExplainError:
            continue   # explain() meets it again and says so
        store.record_pace(SETUP, time.perf_counter() - start, 1, "setup " + m)
    new = untraced(explainer, methods)
    if not new:
        return
    start = time.perf_counter()
    try:
        explainer.warmup(layer, methods)
    except ExplainError:
        return   # explain() meets it again and says so
    traced = len(new - untraced(explainer, methods))
    if traced:
        store.record_pace(ctx.model, time.perf_counter() - start, traced, "compile")


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
    compile_passes(store, explainer, ctx, layer, todo)
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
    if kind == "batched" and len(todo) == 1:   # its own pace too: RISE's masks cost more than occlusion's
        store.record_pace(ctx.model, time.perf_counter() - start, passes, "batched " + todo[0])
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
