"""Callbacks for what comes out: fast methods at once, slow ones as background jobs, the figures.

Three steps, so each change costs only what it must:
- `run_fast` (a normal callback, in the server process where the model is loaded and warm):
  computes the fast methods that are not cached yet and estimates the slow ones' cost;
- `run_slow` (a Dash background callback with progress and cancel): the slow methods;
- `show`: figures from the cache, when results change; colormap, opacity, view, scale and the
  Signed switch are drawn in the browser (assets/display.js), so changing them sends no request.
"""
from __future__ import annotations

import logging
import time

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from callbacks import render as draw
from callbacks import work
from callbacks.jobs import cancel_check, job_arguments, job_error_message
from callbacks.inputs import alert, problem
from explain import METHODS
from explain.methods import DEFAULT_METHODS
from explain.errors import Cancelled, ExplainError
from layouts.figures import message_card, result_card
from layouts.page import empty_state

log = logging.getLogger("camlens.results")


def context_deps(kind=State) -> list:
    """What decides a heatmap, as Inputs (run when it changes) or States (read when drawing)."""
    props = [("image", "data"), ("model", "value"), ("layer", "value"), ("target", "value"), ("score", "value"),
             ("counterfactual", "value"), ("methods", "value"),
             ({"type": "option", "name": ALL}, "id"), ({"type": "option", "name": ALL}, "value"),
             ("contrast", "value")]
    return [kind(ident, prop) for ident, prop in props]


CONTEXT = context_deps(State)


def ordered(methods) -> list[str]:
    chosen = set(methods or [])
    return [m for m in METHODS if m in chosen]


def split(methods) -> tuple[list[str], list[str]]:
    methods = ordered(methods)
    return [m for m in methods if not METHODS[m].slow], [m for m in methods if METHODS[m].slow]


#: What the page says when the "rather than" class is the explained class itself.
SAME_CLASS = ("“Rather than” must be another class than the one explained: pick another class there, "
              "or clear it.")


def make_context(store, registry, image, model, layer, target, score, cf, ids, values,
                 contrast=None) -> work.Context:
    options = work.clean_options({i["name"]: v for i, v in zip(ids or [], values or [])})
    if target is None:
        target = work.predictions(store, registry, image["key"], model)[0]["index"]
    if contrast is not None and int(contrast) == int(target):
        raise ExplainError(SAME_CLASS)
    return work.Context(image=image["key"], model=model, layer=work.layers_for(registry, model, layer),
                        target=int(target),
                        score=score or "logit", counterfactual=bool(cf), options=options,
                        contrast=None if contrast is None else int(contrast))


def seconds_text(guess: work.Estimate) -> str:
    if guess.seconds is None:
        return "time unknown until a first pass is measured"
    amount = f"{guess.seconds:.0f} s" if guess.seconds >= 2 else f"{guess.seconds:.1f} s"
    return f"about {amount}" if guess.measured else f"at most about {amount} (batched passes are faster)"


def register(deps) -> None:
    app, store, registry, manager = deps.app, deps.store, deps.registry, deps.manager
    cancelled = cancel_check(manager)

    @app.callback(
        Output("fast-done", "data"),
        Output("slow-estimate", "children"),
        Output("slow-panel", "className"),
        Output("alerts", "children", allow_duplicate=True),
        *context_deps(Input),
        prevent_initial_call=True,
    )
    def run_fast(image, model, layer, target, score, cf, methods, ids, values, contrast):
        if not image or not model:
            raise PreventUpdate
        fast, slow = split(methods)
        hidden = "mb-3 d-none"
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values, contrast)
            if fast:
                work.compute(store, registry, context, fast)
            if not slow:
                return time.time(), "", hidden, no_update
            guess = work.estimate(store, registry, context, slow)
        except Exception as error:  # noqa: BLE001 - a bad layer, model or option: say so, go on
            return time.time(), "", hidden, problem(error)
        names = ", ".join(METHODS[m].name for m in slow)
        if guess.passes == 0:
            return time.time(), f"{names}: done (cached).", hidden, no_update
        text = f"{names}: {guess.passes} model passes, {seconds_text(guess)}."
        return time.time(), text, "mb-3", no_update

    @app.callback(
        Output("slow-done", "data"),
        Output("slow-estimate", "children", allow_duplicate=True),
        Input("run-slow", "n_clicks"),
        State("session", "data"),
        *CONTEXT,
        **job_arguments(manager, run="run-slow", cancel="cancel", progress="progress"),
        # The job died (its worker stopped), or Redis is down: say so; the button is free again.
        on_error=lambda error: ({"at": time.time(), "error": job_error_message(error)}, no_update),
        prevent_initial_call=True,
    )
    def run_slow(set_progress, clicks, session, image, model, layer, target, score, cf, methods, ids, values,
                 contrast):
        if not clicks or not image or not model:
            raise PreventUpdate
        _, slow = split(methods)
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values, contrast)
            todo = [m for m in slow if store.get(context.key(m)) is None]
            if not todo:
                return {"at": time.time()}, no_update
            explainer = registry.explainer(model)
            costs = explainer.cost(todo, context.layer, **context.options)
            total = max(1, sum(costs.values()))
            done, started = 0, time.time()
            for m in todo:
                set_progress((round(100 * done / total), f"{METHODS[m].name}…"))
                work.compute(store, registry, context, [m], progress=_reporter(set_progress, m, done, costs[m], total),
                             cancel=cancelled)
                done += costs[m]
            set_progress((100, "done"))
        except Cancelled:
            log.info("background job cancelled")
            return {"at": time.time(), "cancelled": True}, no_update
        except Exception as error:  # noqa: BLE001
            return {"at": time.time(), "error": _message(error)}, no_update
        names = ", ".join(METHODS[m].name for m in todo)
        return {"at": time.time()}, f"{names}: done in {time.time() - started:.1f} s."

    @app.callback(
        Output("results-grid", "children"),
        Output("results-link", "data"),
        Output("alerts", "children", allow_duplicate=True),
        Input("fast-done", "data"),
        Input("slow-done", "data"),
        State("colormap", "value"),
        State("opacity", "value"),
        State("view", "value"),
        State("scale", "value"),
        State("signed", "value"),
        *CONTEXT,
        prevent_initial_call=True,
    )
    def show(_fast, slow_done, cmap, opacity, view, scale, signed, image, model, layer, target, score, cf,
             methods, ids, values, contrast):
        """The figures, when results change. The display options are States: the browser draws
        every change of them (assets/display.js) from the grey maps and facts each figure carries."""
        alerts = no_update
        if ctx.triggered_id == "slow-done" and slow_done and slow_done.get("error"):
            alerts = alert(slow_done["error"])
        if not image or not model:
            return empty_state(), None, alerts
        try:
            display = draw.clean_display(cmap, opacity, view, scale, signed)
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values, contrast)
            stored = store.image(context.image)
            if stored is None:
                raise ExplainError("The image is no longer on the server: upload it again.")
            labels = registry.explainer(model).labels
            model_name = registry.info(model).display_name
        except Exception as error:  # noqa: BLE001
            if str(error) == SAME_CLASS:   # run_fast already put it in the alerts: say it in the grid
                return [message_card("contrast", "Nothing to explain", SAME_CLASS)], None, alerts
            return empty_state(), None, problem(error)
        chosen = ordered(methods)
        entries = work.cached(store, context, chosen)
        good = {m: e for m, e in entries.items() if "error" not in e}
        # Both sets of shared-scale factors (Signed off / on): the browser picks with the switches.
        factors = {"off": draw.shared_factors(good, {"signed": False}), "on": draw.shared_factors(good, {"signed": True})}
        now = "on" if display["signed"] else "off"
        revision = context.key(DEFAULT_METHODS[0])   # any key of this context: new context, new revision
        cards = []
        for m in chosen:
            info = METHODS[m]
            entry = entries.get(m)
            if entry is None:
                cards.append(message_card(m, info.name, "Slow method: see the estimate above and press "
                                          "“Run slow methods”." if info.slow else "Not computed yet.",
                                          color="light", icon="hourglass-split"))
            elif "error" in entry:
                cards.append(message_card(m, info.name, entry["error"]))
            else:
                panel = draw.panel(stored, entry, display, labels, factors[now].get(m, 1.0), revision,
                                   factors={k: f.get(m, 1.0) for k, f in factors.items()}, model=model_name,
                                   score=context.score, counterfactual=context.counterfactual)
                cards.append(result_card(panel, f"{info.plain} (paper: {info.paper})"))
        if not cards:
            cards = [message_card("none", "No method chosen", "Tick one or more methods in the controls.",
                                  color="light", icon="info-circle")]
        if not good:
            return cards, None, alerts
        token = store.put_record({"image": context.image, "name": image.get("name"), "model": model,
                                  "layer": context.layer and list(context.layer),
                                  "target": context.target, "score": context.score,
                                  "counterfactual": context.counterfactual, "options": context.options,
                                  "contrast": context.contrast,
                                  "methods": [m for m in chosen if m in good], "display": display})
        # The browser adds the display to the link (assets/display.js): the ZIP and report draw
        # what is shown, with no request when the display changes.
        return cards, {"href": f"/download/{token}.zip"}, alerts

    # Display options -> every figure, in the browser; the ZIP and report links carry them.
    app.clientside_callback(
        ClientsideFunction("camlens", "display"),
        Output("display-applied", "data"),
        Input("colormap", "value"), Input("opacity", "value"), Input("view", "value"), Input("scale", "value"),
        Input("signed", "value"), Input("link-panels", "value"), Input("results-grid", "children"),
        State("display-luts", "data"),
    )
    app.clientside_callback(
        ClientsideFunction("camlens", "links"),
        Output("download-zip", "href"), Output("download-zip", "className"),
        Input("results-link", "data"),
        Input("colormap", "value"), Input("opacity", "value"), Input("view", "value"), Input("scale", "value"),
        Input("signed", "value"),
    )


def _reporter(set_progress, method: str, done: int, units: int, total: int):
    """The engine's 0..1 progress of one method -> the bar's percent of the whole job, at most
    five updates a second (each is a write to the job cache)."""
    last = [0.0]
    name = METHODS[method].name

    def report(fraction: float):
        now = time.monotonic()
        if now - last[0] < 0.2 and fraction < 1:
            return
        last[0] = now
        percent = round(100 * (done + fraction * units) / total)
        set_progress((percent, f"{name} {percent}%"))

    return report


def _message(error: Exception) -> str:
    if isinstance(error, (ExplainError, KeyError)):
        return str(error)
    log.error("background job failed", exc_info=error)
    return f"Something went wrong on the server ({type(error).__name__}); the details are in its log."
