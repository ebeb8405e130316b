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
from explain.errors import Cancelled, ExplainError, LayerError
from explain.metrics import (DEFAULT_BASELINE, SANITY_THRESHOLD, box_mask, clip_boxes, energy_in_mask,
                             faithfulness, mask_fraction, pointing_game, sanity_check)
from explain.verdict import plain_warning, verdict

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


def _verdicts(curves: dict, rand, sanity: dict | None) -> dict:
    out = {}
    for m, c in curves.items():
        passed = "off" if sanity is None else (sanity[m]["passed"] if m in sanity else "off")
        v = verdict(c["deletion_auc"], c["insertion_auc"], rand and rand.deletion_auc,
                    rand and rand.insertion_auc, passed, rand.spread if rand else 0.0)
        out[m] = {"level": v.level, "headline": v.headline, "sentence": v.sentence,
                  "margin": None if v.margin is None else float(v.margin)}
    return out


def _numbers(store, registry, context, methods, *, baseline, sanity, mask, stage, cancel) -> dict:
    """One model's numbers on the image: heatmaps from the shared cache (computed only when the
    grid has not), deletion/insertion of them and of the random maps in one batched run,
    localisation against `mask`, the sanity check, the verdicts."""
    from callbacks import work

    explainer = registry.explainer(context.model)
    stored = store.image(context.image)
    if stored is None:
        raise ExplainError("The image is no longer on the server (its cache was emptied): upload it again.")
    entries = work.compute(store, registry, context, methods, progress=stage(0, "heatmaps"), cancel=cancel)
    errors = {m: e["error"] for m, e in entries.items() if "error" in e}
    good = [m for m in methods if m in entries and m not in errors]
    out = {"model": context.model, "target": context.target,
           "target_label": explainer.labels[context.target], "methods": good, "errors": errors,
           "curves": {}, "random": None, "localisation": None, "chance": None, "sanity": None,
           "verdicts": {}, "warnings": {m: [plain_warning(w) for w in entries[m].get("warnings", [])]
                                        for m in good}}
    if not good:
        return out
    heatmaps = {m: entries[m]["heatmap"] for m in good}
    faith, rand = faithfulness(explainer, stored.image, heatmaps, context.target, steps=STEPS,
                               baseline=baseline, progress=stage(1, "deletion / insertion"), cancel=cancel)
    for m, f in faith.items():
        out["curves"][m] = {
            "fractions": [float(v) for v in f.deletion.fractions],
            "deletion": [float(v) for v in f.deletion.scores],
            "insertion": [float(v) for v in f.insertion.scores],
            "deletion_auc": f.deletion.auc, "insertion_auc": f.insertion.auc}
    out["random"] = {"n": rand.n, "fractions": [float(v) for v in rand.fractions],
                     "deletion": [float(v) for v in rand.deletion],
                     "insertion": [float(v) for v in rand.insertion],
                     "deletion_auc": rand.deletion_auc, "insertion_auc": rand.insertion_auc,
                     "spread": rand.spread}
    if mask is not None:
        out["chance"] = mask_fraction(mask)
        out["localisation"] = {
            m: {"pointing_game": _num(pointing_game(heatmaps[m], mask)),
                "energy_in_mask": _num(energy_in_mask(heatmaps[m], mask))} for m in good}
    if sanity:
        checks = sanity_check(explainer, stored.image, good, context.layer, context.target,
                              max_steps=SANITY_STEPS, progress=stage(2, "sanity check"),
                              cancel=cancel, score=context.score,
                              counterfactual=context.counterfactual, contrast=context.contrast,
                              trained=heatmaps, **context.options)
        out["sanity"] = {m: {"steps": c.steps, "reached": c.reached,
                             "spearman": [_num(v) for v in c.spearman],
                             "ssim": [_num(v) for v in c.ssim], "score": _num(c.score),
                             "passed": c.passed, "message": c.message}
                         for m, c in checks.items()}
    out["verdicts"] = _verdicts(out["curves"], rand, out["sanity"])
    return out


def second_context(store, registry, context, model: str):
    """The first model's context for `model`: its default layer; the same class (and "rather
    than" class) when both models have the same classes, else its own top-1 class."""
    from callbacks import work

    if model == context.model:
        raise ExplainError("The second model is the model already chosen: pick another one.")
    first, other = registry.explainer(context.model), registry.explainer(model)
    same = list(first.labels) == list(other.labels)
    target = context.target if same else work.predictions(store, registry, context.image, model)[0]["index"]
    return work.Context(image=context.image, model=model, layer=work.layers_for(registry, model, None),
                        target=int(target), score=context.score, counterfactual=context.counterfactual,
                        options=context.options, contrast=context.contrast if same else None)


def comparison(store, registry, context, methods, *, baseline: str = DEFAULT_BASELINE,
               sanity: bool = True, mask: np.ndarray | None = None, boxes=None,
               second_model: str | None = None, progress=None, cancel=None) -> dict:
    """The Compare view's numbers for `methods` (ids) under a callbacks.work.Context, as a
    JSON-ready dict (see layouts.compare for its fields). Heatmaps come from (and go to) the
    shared cache; progress(fraction, label) is called along the way. `boxes` (x0, y0, x1, y1 in
    image pixels) replace `mask` for the localisation scores; `second_model` runs the same
    methods on the same image with that model too (result["second"])."""
    from callbacks import work

    start = time.perf_counter()
    report = progress or (lambda f, label: None)
    models = 2 if second_model else 1
    stages = (0.3, 0.3, 0.4) if sanity else (0.4, 0.6, 0.0)

    def staged(k):
        def stage(i, label):
            lo = (k + sum(stages[:i])) / models
            return lambda f: report(lo + stages[i] * f / models, label)
        return stage

    mask_source = "sample" if mask is not None else None
    clipped = []
    if boxes:
        stored = store.image(context.image)
        if stored is None:
            raise ExplainError("The image is no longer on the server (its cache was emptied): upload it again.")
        clipped = clip_boxes(boxes, stored.image.shape[:2])
        mask, mask_source = box_mask(clipped, stored.image.shape[:2]), "boxes"
    result = _numbers(store, registry, context, methods, baseline=baseline, sanity=sanity, mask=mask,
                      stage=staged(0), cancel=cancel)
    result.update({
        "image": context.image, "layer": context.layer, "requested": list(methods),
        "names": {m: METHODS[m].name for m in methods}, "steps": STEPS, "baseline": baseline,
        "score": "probability", "sanity_threshold": SANITY_THRESHOLD, "mask_source": mask_source,
        "boxes": len(clipped), "box_list": [list(b) for b in clipped], "second": None})
    if second_model:
        try:
            other = second_context(store, registry, context, second_model)
            result["second"] = _numbers(store, registry, other, methods, baseline=baseline, sanity=sanity,
                                        mask=mask, stage=staged(1), cancel=cancel)
            top = work.predictions(store, registry, context.image, second_model)[0]
            result["second"]["predicted"] = {"label": top["label"], "probability": float(top["probability"])}
        except (Cancelled, LayerError):
            raise
        except (ExplainError, LookupError) as error:
            text = error.args[0] if isinstance(error, LookupError) and error.args else error
            result["second"] = {"model": second_model, "error": str(text)}
    report(1.0, "done")
    result["seconds"] = time.perf_counter() - start
    return result


#: The box-drawing figure shows the image at most this many pixels on its longer side.
BOXES_PREVIEW = 480


def read_shapes(relayout, boxes: list, shape: tuple[int, int]) -> list:
    """The boxes after a relayout event of the drawing figure: Plotly sends the whole list
    (`shapes`) when one is drawn or erased, single corners (`shapes[2].x0`) when one is moved.
    Anything else (zoom, autosize) keeps `boxes`. Raises ExplainError for what is not a box."""
    if not isinstance(relayout, dict):
        return boxes
    if "shapes" in relayout:
        shapes = relayout["shapes"]
        if not isinstance(shapes, list):
            raise ExplainError("the drawing sent something that is not a list of boxes")
        raw = []
        for shape_ in shapes:
            if not isinstance(shape_, dict) or shape_.get("type", "rect") != "rect":
                raise ExplainError("only rectangles can mark the object: use the box tool")
            raw.append([shape_.get(k) for k in ("x0", "y0", "x1", "y1")])
        return [list(b) for b in clip_boxes(raw, shape)]
    edits = [(k, v) for k, v in relayout.items() if k.startswith("shapes[")]
    if not edits:
        return boxes
    new = [list(b) for b in boxes]
    for key, value in edits:
        try:
            index, corner = key[len("shapes["):].split("].")
            index = int(index)
            slot = ("x0", "y0", "x1", "y1").index(corner)
        except ValueError:
            continue   # a style change: nothing to do with the corners
        if not 0 <= index < len(new):
            raise ExplainError("the drawing moved a box that is not there: draw it again")
        new[index][slot] = value
    return [list(b) for b in clip_boxes(new, shape)]


def register(deps) -> None:
    """Attach the Compare view's callbacks (deps: callbacks.Deps, as for the other modules)."""
    from callbacks import work
    from callbacks.results import CONTEXT, context_deps, make_context, ordered
    from explain.agreement import agreement
    from explain.render import data_uri
    from layouts import compare as view

    app, registry, store, manager = deps.app, deps.registry, deps.store, deps.manager
    cancelled = cancel_check(manager)

    @app.callback(
        Output("compare-result", "data"),
        Input("compare-run", "n_clicks"),
        State("compare-baseline", "value"),
        State("compare-sanity-on", "value"),
        State("compare-model2", "value"),
        State("compare-boxes", "data"),
        State("session", "data"),   # per page load: two people's identical jobs never share a key
        *CONTEXT,
        **job_arguments(manager, run="compare-run", cancel="compare-cancel", progress="compare-progress",
                         text="compare-progress-text"),
        on_error=lambda error: {"error": job_error_message(error)},   # a dead job, or Redis down
        prevent_initial_call=True,
    )
    def run_compare(set_progress, clicks, baseline, sanity_on, model2, boxes, session, image, model, layer,
                    target, score, cf, methods, ids, values, contrast):
        if not clicks or not image or not model:
            raise PreventUpdate
        chosen = ordered(methods)
        if not chosen:
            return {"error": "Tick one or more methods to compare."}
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values,
                                   contrast)
            set_progress((0, "Comparing: starting…"))
            return comparison(
                store, registry, context, chosen,
                baseline=baseline or DEFAULT_BASELINE, sanity=bool(sanity_on),
                mask=sample_mask(image["key"]), boxes=boxes or None, second_model=model2 or None,
                cancel=cancelled,
                progress=lambda f, label: set_progress(
                    (round(100 * f), f"Comparing: {label}, {100 * f:.0f} % done")))
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
        Output("compare-verdict", "children"),
        Output("compare-models", "children"),
        Output("compare-body", "className"),
        Input("compare-result", "data"),
        prevent_initial_call=True,
    )
    def draw(result):
        if not result:
            raise PreventUpdate
        if result.get("error"):
            return (view.curves_figure(None, "deletion"), view.curves_figure(None, "insertion"),
                    view.table_columns(False, False), [], [], [], [], "mt-3")
        columns = view.table_columns(result.get("localisation") is not None,
                                     result.get("sanity") is not None, result.get("chance"))
        return (view.curves_figure(result, "deletion"), view.curves_figure(result, "insertion"),
                columns, view.table_rows(result), view.sanity_view(result), view.verdict_view(result),
                view.models_view(result), "mt-3")

    @app.callback(
        Output("compare-status", "children"),
        Input("compare-result", "data"),
        Input("image", "data"),
        Input("model", "value"),
        Input("methods", "value"),
        Input("compare-model2", "value"),
        Input("compare-boxes", "data"),
        prevent_initial_call=True,
    )
    def status(result, image, model, methods, model2, boxes):
        return view.status_view(result, (image or {}).get("key"), model, methods, model2, boxes)

    @app.callback(
        Output("compare-model2", "options"),
        Input("model", "options"),
        Input("model", "value"),
    )
    def second_models(options, model):
        """The main model list without the chosen model (unusable ones stay greyed)."""
        return [o for o in options or [] if o.get("value") != model]

    @app.callback(
        Output("agreement", "children"),
        Input("fast-done", "data"),
        Input("slow-done", "data"),
        *context_deps(State),
        prevent_initial_call=True,
    )
    def show_agreement(_fast, _slow, image, model, layer, target, score, cf, methods, ids, values, contrast):
        """The agreement card when two or more maps are shown; nothing otherwise. Only the small
        matrices go to the browser."""
        if not image or not model:
            return []
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values,
                                   contrast)
        except Exception:  # noqa: BLE001 - the grid says what is wrong
            return []
        chosen = ordered(methods)
        entries = work.cached(store, context, chosen)
        maps = {METHODS[m].name: entries[m]["heatmap"] for m in chosen
                if m in entries and "heatmap" in entries[m]}
        if len(maps) < 2:
            return []
        res = agreement(maps)
        return view.agreement_card(res.names, res.spearman, res.overlap, res.top)

    @app.callback(
        Output("compare-boxes-figure", "figure"),
        Input("image", "data"),
        Input("compare-boxes-clear", "n_clicks"),
    )
    def boxes_picture(image, clears):
        """The image as a small PNG to draw boxes on (in the image's own pixel coordinates)."""
        stored = store.image(image["key"]) if image and image.get("key") else None
        if stored is None:
            return view.boxes_figure(None, 0, 0, str(clears))
        import cv2

        pixels = stored.image
        H, W = pixels.shape[:2]
        scale = min(1.0, BOXES_PREVIEW / max(H, W))
        small = pixels if scale == 1.0 else cv2.resize(
            pixels, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
        return view.boxes_figure(data_uri(small, "jpeg"), W, H, f"{image['key']}:{clears}")

    @app.callback(
        Output("compare-boxes", "data"),
        Output("compare-boxes-info", "children"),
        Input("compare-boxes-figure", "relayoutData"),
        Input("compare-boxes-clear", "n_clicks"),
        Input("image", "data"),
        State("compare-boxes", "data"),
        prevent_initial_call=True,
    )
    def boxes_changed(relayout, _clear, image, boxes):
        from dash import ctx

        if ctx.triggered_id != "compare-boxes-figure" or not image:
            return [], "No box: localisation uses a sample's own mask, if it has one."
        stored = store.image(image.get("key", ""))
        if stored is None:
            return [], "The image is no longer on the server: upload it again."
        try:
            boxes = read_shapes(relayout, boxes or [], stored.image.shape[:2])
        except ExplainError as error:
            return boxes or [], f"Not used: {error}."
        if not boxes:
            return [], "No box on the picture: localisation uses a sample's own mask, if it has one."
        return boxes, (f"{len(boxes)} box(es) marked: press “Compare methods” to score the maps "
                       "against them.")
