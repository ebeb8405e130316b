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

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, no_update, set_props
from dash.exceptions import PreventUpdate

from callbacks import render as draw
from callbacks import work
from callbacks.jobs import cancel_check, job_arguments, job_error_message
from callbacks.inputs import alert, problem
from explain import METHODS
from explain.methods import DEFAULT_METHODS, option_owners
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


def duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 2 else f"{seconds:.1f} s"


def seconds_text(guess: work.Estimate) -> str:
    text = f"about {duration(guess.seconds)}"
    if guess.compile >= 0.5:
        text += f", plus about {duration(guess.compile)} to compile once (first run only)"
    return text


#: What a change during a slow run is called on the page ("Stopped: the class changed").
STOPS = {"image": "the image", "model": "the model", "layer": "the layer", "target": "the class",
         "contrast": "the “rather than” class", "score": "the score", "counterfactual": "the counterfactual switch",
         "option": "a method option"}


def stop_reason(trigger, slow) -> str | None:
    """Why a change stops the slow run of `slow` under way (None: it does not, as the methods
    list or an option of other methods)."""
    if isinstance(trigger, dict):
        return STOPS["option"] if set(option_owners(trigger.get("name"))) & set(slow) else None
    return STOPS.get(trigger)


def register(deps) -> None:
    app, store, registry, manager = deps.app, deps.store, deps.registry, deps.manager
    cancelled = cancel_check(manager)

    @app.callback(
        Output("fast-done", "data"),
        Output("slow-estimate", "children"),
        Output("slow-panel", "className"),
        Output("alerts", "children", allow_duplicate=True),
        Output("slow-stop", "data"),
        *context_deps(Input),
        State("cancel", "disabled"),
        State("slow-stop", "data"),
        prevent_initial_call=True,
    )
    def run_fast(image, model, layer, target, score, cf, methods, ids, values, contrast, no_job, stopped):
        if not image or not model:
            raise PreventUpdate
        # A change of what the slow run computes stops it (Dash cancels the job when slow-stop
        # changes): its result would be for the old setting. It is not requeued: changes come in
        # bursts (a model brings a new layer and class), and the estimate below is for the new one.
        stop, note = no_update, ""
        fast, slow = split(methods)
        reason = stop_reason(ctx.triggered_id, slow) if no_job is False else None
        if reason:
            recent = stopped and time.time() - stopped.get("at", 0) < 10
            if recent:   # one change brings others (a model, its layer): keep the first reason
                reason = stopped["why"]
            else:
                stop = {"at": time.time(), "why": reason}
            note = f"Stopped: {reason} changed; press “Run slow methods” again. "
        hidden = "mb-3 d-none"
        try:
            context = make_context(store, registry, image, model, layer, target, score, cf, ids, values, contrast)
            if fast:
                work.compute(store, registry, context, fast)
            if not slow:
                return time.time(), "", hidden, no_update, stop
            guess = work.estimate(store, registry, context, slow)
        except Exception as error:  # noqa: BLE001 - a bad layer, model or option: say so, go on
            return time.time(), note, hidden, problem(error), stop
        names = ", ".join(METHODS[m].name for m in slow)
        if guess.passes == 0:
            return time.time(), f"{note}{names}: done (cached).", hidden, no_update, stop
        text = f"{note}{names}: {guess.passes} model passes, {seconds_text(guess)}."
        return time.time(), text, "mb-3", no_update, stop

    @app.callback(
        Output("slow-done", "data"),
        Output("slow-estimate", "children", allow_duplicate=True),
        Input("run-slow", "n_clicks"),
        State("session", "data"),
        *CONTEXT,
        **job_arguments(manager, run="run-slow", cancel="cancel", progress="progress", text="progress-text",
                        stop=[Input("slow-stop", "data")]),
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
            guess = work.estimate(store, registry, context, todo)
            shown = _Progress(set_progress, costs, guess)
            started = time.time()
            for m in todo:
                shown.begin(m)
                work.compute(store, registry, context, [m], progress=shown.report, cancel=cancelled)
                shown.end()
                # Its figure now, not at the end of the job: `show` draws what is in the cache.
                set_props("slow-partial", {"data": {"at": time.time(), "method": m}})
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

    # A slow method's result is in while the job goes on: draw it now. Not an Input of `show`:
    # Dash holds back a callback while any of its inputs is an output of a running callback
    # (slow-done, of run_slow), so `show` itself only runs when the job ends. Its twin, the same
    # function with the display values read as States, is not held back.
    app.callback(
        Output("results-grid", "children", allow_duplicate=True),
        Output("results-link", "data", allow_duplicate=True),
        Output("alerts", "children", allow_duplicate=True),
        Input("slow-partial", "data"),
        *(State(name, "value") for name in ("colormap", "opacity", "view", "scale", "signed")),
        *CONTEXT,
        prevent_initial_call=True,
    )(lambda _partial, *rest: show(None, None, *rest))


class _Progress:
    """The job's progress for the page: the bar's percent of the whole job and a line of text
    beside it ("LIME: 40 % · about 50 s left"). Time left is from the pace measured in this run
    (batches only: a method's compile, before its first batch, is left out), else the estimate's.
    At most five updates a second (each is a write to the job cache)."""

    def __init__(self, set_progress, costs: dict[str, int], guess: work.Estimate):
        self.set, self.costs = set_progress, costs
        self.total = max(1, sum(costs.values()))
        self.pace = guess.seconds / max(1, guess.passes) if guess.seconds else None   # s per unit
        self.done = 0                 # units of the finished methods
        self.units = self.seconds = 0.0   # measured: units and seconds after each method's first batch
        self.method, self.mark, self.last = None, None, 0.0

    def begin(self, method: str) -> None:
        self.method, self.mark = method, None
        self._show(0.0)

    def report(self, fraction: float) -> None:
        now = time.monotonic()
        if self.mark is None:   # the first batch is in: measure from here
            self.mark = (now, fraction)
        elif now - self.last < 0.2 and fraction < 1:
            return
        self._show(fraction, now)

    def end(self) -> None:
        if self.mark is not None:
            now, (t0, f0) = time.monotonic(), self.mark
            self.units += (1 - f0) * self.costs[self.method]
            self.seconds += now - t0
        self.done += self.costs[self.method]

    def _rate(self, fraction: float, now: float) -> float | None:
        units, seconds = self.units, self.seconds
        if self.mark is not None:
            t0, f0 = self.mark
            units += (fraction - f0) * self.costs[self.method]
            seconds += now - t0
        if seconds >= 1.0 and units > 0:
            return seconds / units
        return self.pace

    def _show(self, fraction: float, now: float | None = None) -> None:
        now = now or time.monotonic()
        self.last = now
        units = self.done + fraction * self.costs[self.method]
        percent = min(100, round(100 * units / self.total))
        text = f"{METHODS[self.method].name}: {percent} %"
        rate = self._rate(fraction, now)
        if rate is not None:
            text += f" · about {duration((self.total - units) * rate)} left"
        self.set((percent, text))


def _message(error: Exception) -> str:
    if isinstance(error, (ExplainError, KeyError)):
        return str(error)
    log.error("background job failed", exc_info=error)
    return f"Something went wrong on the server ({type(error).__name__}); the details are in its log."
