"""Callbacks of the Compare view (layouts.compare): metrics for the current image, model and methods.

    register(deps)   # callbacks.Deps, as for the other callback modules

"Compare methods" starts a Dash background callback (progress bar, cancel button) that takes the
chosen methods' heatmaps from the shared result cache (computing the missing ones exactly as the
main view does, `callbacks.work.compute`), then runs deletion/insertion for all of them in batched
passes, the localisation games when the image is a bundled sample with a mask, and optionally the
cascading-randomisation sanity check (explain.metrics). The result is a small JSON dict in the
`compare-result` store; separate callbacks draw it and flag it out of date when the inputs change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
from dash import Input, Output, State
from dash.exceptions import PreventUpdate

from callbacks.jobs import cancel_check, job_arguments, job_error_message
from explain import METHODS
from explain.errors import Cancelled, ExplainError
from explain.metrics import (DEFAULT_BASELINE, SANITY_THRESHOLD, deletion_insertion, energy_in_mask, mask_fraction,
                             pointing_game, sanity_check)

log = logging.getLogger("camlens.compare")

#: Deletion / insertion steps in the app (the CLI's default too).
STEPS = 20
#: The sanity check merges the model's layers into at most this many randomisation steps, so a
#: 50-layer network costs 7 explanation runs, not 51.
SANITY_STEPS = 6
#: Mask files beside a sample image, in the order they are looked for.
MASK_NAMES = ("{stem}.mask.png", "{stem}-mask.png", "{stem}_mask.png")


def _num(v) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


_hashes: dict[Path, tuple[tuple, str]] = {}
_hash_lock = threading.Lock()


def _file_key(path: Path) -> str:
    """The store key the app gives these bytes (SHA-256), cached by (mtime, size)."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    with _hash_lock:
        hit = _hashes.get(path)
        if hit and hit[0] == stamp:
            return hit[1]
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    with _hash_lock:
        _hashes[path] = (stamp, key)
    return key


def sample_mask(image_key: str, samples_dir: Path | None = None) -> np.ndarray | None:
    """The ground-truth mask (bool H x W) of the gallery sample whose bytes are `image_key`, or
    None (uploads, and samples without a mask). The mask file is the one the gallery's
    index.json names (models.gallery), else `<stem>.mask.png`, `<stem>-mask.png` or
    `<stem>_mask.png` beside the image."""
    from explain.image import load_image

    if samples_dir is None:
        from callbacks import SAMPLES_DIR as samples_dir
    folder = Path(samples_dir)
    if not folder.is_dir():
        return None
    named = {}
    try:
        index = json.loads((folder / "index.json").read_text())
        named = {e["file"]: e["mask"] for e in index.get("samples", []) if e.get("mask")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    for path in sorted(folder.iterdir()):
        if "mask" in path.stem.lower() or not path.is_file() or path.suffix == ".json":
            continue
        masks = [folder / named[path.name]] if path.name in named else []
        masks += [path.with_name(n.format(stem=path.stem)) for n in MASK_NAMES]
        mask_path = next((p for p in masks if p.is_file()), None)
        if mask_path is None or _file_key(path) != image_key:
            continue
        return load_image(mask_path.read_bytes()).max(axis=-1) > 127
    return None


def comparison(store, registry, context, methods, *, baseline: str = DEFAULT_BASELINE,
               sanity: bool = True, mask: np.ndarray | None = None,
               progress=None, cancel=None) -> dict:
    """The Compare view's numbers for `methods` (ids) under a callbacks.work.Context, as a
    JSON-ready dict (see layouts.compare for its fields). Heatmaps come from (and go to) the
    shared cache; progress(fraction, label) is called along the way."""
    from callbacks import work

    start = time.perf_counter()
    report = progress or (lambda f, label: None)
    stages = (0.3, 0.3, 0.4) if sanity else (0.4, 0.6, 0.0)

    def stage(i, label):
        lo = sum(stages[:i])
        return lambda f: report(lo + stages[i] * f, label)

    explainer = registry.explainer(context.model)
    stored = store.image(context.image)
    if stored is None:
        raise ExplainError("The image is no longer on the server (its cache was emptied): upload it again.")
    entries = work.compute(store, registry, context, methods, progress=stage(0, "heatmaps"), cancel=cancel)
    errors = {m: e["error"] for m, e in entries.items() if "error" in e}
    good = [m for m in methods if m in entries and m not in errors]
    result = {
        "image": context.image, "model": context.model, "layer": context.layer,
        "target": context.target, "target_label": explainer.labels[context.target],
        "requested": list(methods), "methods": good, "errors": errors,
        "names": {m: METHODS[m].name for m in methods}, "steps": STEPS,
        "baseline": baseline, "score": "probability",
        "curves": {}, "localisation": None, "chance": None, "sanity": None,
        "sanity_threshold": SANITY_THRESHOLD,
    }
    if good:
        heatmaps = {m: entries[m]["heatmap"] for m in good}
        faith = deletion_insertion(explainer, stored.image, heatmaps, context.target, steps=STEPS,
                                   baseline=baseline, progress=stage(1, "deletion / insertion"),
                                   cancel=cancel)
        for m, f in faith.items():
            result["curves"][m] = {
                "fractions": [float(v) for v in f.deletion.fractions],
                "deletion": [float(v) for v in f.deletion.scores],
                "insertion": [float(v) for v in f.insertion.scores],
                "deletion_auc": f.deletion.auc, "insertion_auc": f.insertion.auc}
        if mask is not None:
            result["chance"] = mask_fraction(mask)
            result["localisation"] = {
                m: {"pointing_game": _num(pointing_game(heatmaps[m], mask)),
                    "energy_in_mask": _num(energy_in_mask(heatmaps[m], mask))} for m in good}
        if sanity:
            checks = sanity_check(explainer, stored.image, good, context.layer, context.target,
                                  max_steps=SANITY_STEPS, progress=stage(2, "sanity check"),
                                  cancel=cancel, score=context.score,
                                  counterfactual=context.counterfactual, contrast=context.contrast,
                                  **context.options)
            result["sanity"] = {m: {"steps": c.steps, "spearman": [_num(v) for v in c.spearman],
                                    "ssim": [_num(v) for v in c.ssim], "score": _num(c.score),
                                    "passed": c.passed, "message": c.message}
                                for m, c in checks.items()}
    report(1.0, "done")
    result["seconds"] = time.perf_counter() - start
    return result


def register(deps) -> None:
    """Attach the Compare view's callbacks (deps: callbacks.Deps, as for the other modules)."""
    from callbacks.results import CONTEXT, make_context, ordered
    from layouts import compare as view

    app, registry, store, manager = deps.app, deps.registry, deps.store, deps.manager
    cancelled = cancel_check(manager)

    @app.callback(
        Output("compare-result", "data"),
        Input("compare-run", "n_clicks"),
        State("compare-baseline", "value"),
        State("compare-sanity-on", "value"),
        State("session", "data"),   # per page load: two people's identical jobs never share a key
        *CONTEXT,
        **job_arguments(manager, run="compare-run", cancel="compare-cancel", progress="compare-progress"),
        on_error=lambda error: {"error": job_error_message(error)},   # a dead job, or Redis down
        prevent_initial_call=True,
    )
    def run_compare(set_progress, clicks, baseline, sanity_on, session, image, model, layer, target, score, cf,
                    methods, ids, values, contrast):
        if not clicks or not image or not model:
            raise PreventUpdate
        chosen = ordered(methods)
        if not chosen:
            return {"error": "Tick one or more methods to compare."}
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values,
                                   contrast)
            set_progress((0, "starting…"))
            return comparison(
                store, registry, context, chosen,
                baseline=baseline or DEFAULT_BASELINE, sanity=bool(sanity_on),
                mask=sample_mask(image["key"]), cancel=cancelled,
                progress=lambda f, label: set_progress((round(100 * f), f"{label} {f:.0%}")))
        except Cancelled:
            raise PreventUpdate from None
        except ExplainError as error:
            return {"error": str(error)}
        except Exception as error:  # noqa: BLE001 - the page says so; the log has the details
            log.exception("compare failed")
            return {"error": f"The comparison failed on the server ({type(error).__name__}); "
                             "the details are in its log."}

    @app.callback(
        Output("compare-deletion", "figure"),
        Output("compare-insertion", "figure"),
        Output("compare-table", "columns"),
        Output("compare-table", "data"),
        Output("compare-sanity", "children"),
        Output("compare-body", "className"),
        Input("compare-result", "data"),
        prevent_initial_call=True,
    )
    def draw(result):
        if not result:
            raise PreventUpdate
        if result.get("error"):
            return (view.curves_figure(None, "deletion"), view.curves_figure(None, "insertion"),
                    view.table_columns(False, False), [], [], "mt-3")
        columns = view.table_columns(result.get("localisation") is not None,
                                     result.get("sanity") is not None, result.get("chance"))
        return (view.curves_figure(result, "deletion"), view.curves_figure(result, "insertion"),
                columns, view.table_rows(result), view.sanity_view(result), "mt-3")

    @app.callback(
        Output("compare-status", "children"),
        Input("compare-result", "data"),
        Input("image", "data"),
        Input("model", "value"),
        Input("methods", "value"),
        prevent_initial_call=True,
    )
    def status(result, image, model, methods):
        return view.status_view(result, (image or {}).get("key"), model, methods)
