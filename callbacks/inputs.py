"""Callbacks for what goes in: the image (upload or sample), the model and layer, the target."""
from __future__ import annotations

import base64
import binascii
import logging

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, Patch, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from callbacks import photo_model, sample_path, scene_keys, work
from callbacks.render import jpeg_uri
from explain.errors import ExplainError
from layouts.figures import original_view, prediction_figure

log = logging.getLogger("camlens.inputs")


def alert(message: str, color: str = "danger", icon: str = "exclamation-octagon") -> Patch:
    """Add a dismissable message to the top of the page's alert area."""
    patch = Patch()
    patch.prepend(dbc.Alert([html.I(className=f"bi bi-{icon} me-2"), message], color=color,
                            dismissable=True, className="py-2 mb-2 camlens-alert"))
    return patch


def problem(error: Exception) -> Patch:
    """A user-facing message for any failure: ExplainError texts as they are, the rest logged."""
    if isinstance(error, (ExplainError, KeyError)):  # KeyError: models.UnknownModel, a plain message
        return alert(str(error))
    log.exception("unexpected error in a callback", exc_info=error)
    return alert(f"Something went wrong on the server ({type(error).__name__}); the details are in its log.")


def decode_contents(contents: str) -> bytes:
    """dcc.Upload's 'data:<mime>;base64,<data>' -> bytes (an empty file has no data)."""
    _, _, encoded = contents.partition(",")
    try:
        return base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise ExplainError("The upload arrived damaged; try again.") from None


def shown_image(stored, name: str, sample: str | None = None) -> tuple[dict, object]:
    """The `image` store's value and the preview for a stored image. `sample`: the gallery name it
    came from (a link names a sample by it, an upload by its content key)."""
    w, h = stored.original_size
    view = original_view(jpeg_uri(stored.display, 60_000), name, w, h, stored.note)
    image = {"key": stored.key, "name": name, "width": w, "height": h}
    if sample:
        image["sample"] = sample
    return image, view


def register(deps) -> None:
    app, store, registry = deps.app, deps.store, deps.registry

    @app.callback(
        Output("image", "data"),
        Output("original", "children"),
        Output("input-card", "className"),
        Output("alerts", "children", allow_duplicate=True),
        Output("upload", "contents"),
        Input("upload", "contents"),
        Input({"type": "sample", "name": ALL}, "n_clicks"),
        State("upload", "filename"),
        prevent_initial_call=True,
    )
    def on_image(contents, _clicks, filename):
        trigger = ctx.triggered_id
        try:
            if trigger == "upload":
                if contents is None:
                    raise PreventUpdate
                name = filename or "upload"
                data = decode_contents(contents)
            elif isinstance(trigger, dict) and trigger.get("type") == "sample":
                if not any(t["value"] for t in ctx.triggered):
                    raise PreventUpdate  # the gallery was (re)drawn, nothing clicked
                name = trigger["name"]
                path = sample_path(name)
                if path is None:
                    raise ExplainError(f"No sample named {name!r}.")
                data = path.read_bytes()
            else:
                raise PreventUpdate
            stored = work.upload(store, data, deps.limits)
        except PreventUpdate:
            raise
        except Exception as error:  # noqa: BLE001 - every bad upload becomes a message
            return no_update, no_update, no_update, problem(_named(error, filename, trigger)), None
        image, view = shown_image(stored, name, sample=name if trigger != "upload" else None)
        return image, view, "mb-3", no_update, None

    @app.callback(
        Output("layer", "options"),
        Output("layer", "value"),
        Output("model-info", "children"),
        Output("model-card-title", "children"),
        Output("model-card", "children"),
        Output("target", "options"),
        Output("alerts", "children", allow_duplicate=True),
        Input("model", "value"),
        State("url-state", "data"),
        prevent_initial_call="initial_duplicate",
    )
    def on_model(name, url_state):
        if not name:
            return [], [], "", "", "", [], no_update
        try:
            info = registry.info(name)
            card = info.card or f"No model card for {info.display_name}."
            if not info.available:
                raise ExplainError(info.reason or f"{info.display_name} is not available.")
            explainer = registry.explainer(name)
            layers = explainer.spatial_layers()
            default = explainer.default_layer
            labels = explainer.labels
        except Exception as error:  # noqa: BLE001
            return [], [], "", name, "", [], problem(error)
        wanted = (url_state or {}).get("layer") if (url_state or {}).get("model") == name else None
        wanted = [w for w in (wanted or "").split(",") if w]   # several layers: fused CAMs
        value = [w for w in wanted if w in layers] or ([default] if default else [])
        unknown = [w for w in wanted if w not in layers]
        options = [{"label": layer + ("  (default)" if layer == default else ""), "value": layer,
                    "title": layer} for layer in layers]
        h, w = info.input_size or ("?", "?")
        about = f"{info.source} · input {w}×{h} · {info.num_classes} classes · {info.preprocessing}"
        targets = [{"label": f"{i}: {label}", "value": i, "search": label} for i, label in enumerate(labels)]
        alerts = no_update
        if unknown:
            using = ", ".join(value) if len(value) > 1 else repr(value[0] if value else None)
            alerts = alert(f"Layer {unknown[0]!r} is not a spatial layer of {info.display_name}; "
                           f"using {using}.", color="warning")
        return options, value, about, info.display_name, card, targets, alerts

    # A model that is not loaded yet takes seconds (its weights, then its first passes): say so at
    # once, in the browser; on_model replaces the line when the model is ready.
    app.clientside_callback(
        """function(name, options) {
            const o = (options || []).find(x => x.value === name);
            return name ? "Loading " + (o ? o.label : name) + "… (the first time takes a few seconds)" : "";
        }""",
        Output("model-info", "children", allow_duplicate=True),
        Input("model", "value"),
        State("model", "options"),
        prevent_initial_call="initial_duplicate",
    )

    @app.callback(
        Output("domain-alert", "is_open"),
        Output("domain-text", "children"),
        Output("domain-switch", "children"),
        Output("domain-switch", "className"),
        Input("image", "data"),
        Input("model", "value"),
    )
    def on_domain(image, model):
        """Say so, in plain words, when a model that only knows generated scenes sees a photo."""
        hidden = False, "", "", "d-none"
        if not image or not model or image.get("key") in scene_keys():
            return hidden
        try:
            info = registry.info(model)
        except Exception:  # noqa: BLE001 - the model callback reports unknown models
            return hidden
        if info.domain != "scenes":
            return hidden
        switch = photo_model(registry)
        text = (f"{info.display_name} has only seen simple drawn street scenes, never photos: on a "
                "photo its answers and maps mean little.")
        if switch is None:
            return True, text, "", "d-none"
        return True, text, f"Use {registry.info(switch).display_name}", "ms-2"

    @app.callback(
        Output("model", "value", allow_duplicate=True),
        Input("domain-switch", "n_clicks"),
        prevent_initial_call=True,
    )
    def on_domain_switch(clicks):
        switch = photo_model(registry)
        if not clicks or switch is None:
            raise PreventUpdate
        return switch

    @app.callback(
        Output("model-card-modal", "is_open"),
        Input("model-card-open", "n_clicks"),
        prevent_initial_call=True,
    )
    def open_card(clicks):
        return bool(clicks)

    @app.callback(
        Output("contrast", "options"),
        Output("contrast", "value", allow_duplicate=True),
        Input("target", "options"),
        State("contrast", "value"),
        State("model", "value"),
        State("url", "search"),
        prevent_initial_call=True,
    )
    def on_classes(options, contrast, model, search):
        """The "rather than" list is the target's; a new model's classes clear the choice, or set
        the one the URL names for this model (set only now: a dropdown drops a value that is not
        among its options yet)."""
        from callbacks.urlstate import parse

        wanted = parse(search)
        linked = wanted.get("contrast") if wanted.get("model", model) == model else None
        if linked is not None and linked in {o["value"] for o in options or []}:
            return options or [], linked if linked != contrast else no_update
        return options or [], no_update if contrast is None else None

    @app.callback(
        Output("target", "value"),
        Output("predictions", "figure"),
        Output("alerts", "children", allow_duplicate=True),
        Output("contrast", "value", allow_duplicate=True),
        Output("url-state", "data", allow_duplicate=True),
        Input("image", "data"),
        Input("model", "value"),
        State("contrast", "value"),
        State("url-state", "data"),
        prevent_initial_call=True,
    )
    def on_predict(image, model, contrast, link):
        """The top-1 class, or the class a link names for this image and model (once: later
        changes of image or model start from the top-1 again)."""
        if not image or not model:
            raise PreventUpdate
        try:
            rows = work.predictions(store, registry, image["key"], model)
        except Exception as error:  # noqa: BLE001
            return None, no_update, problem(error), no_update, no_update
        target, used = rows[0]["index"], no_update
        link = link or {}
        if link.get("target") is not None and link.get("image") == image["key"] and link.get("model") == model:
            used = Patch()
            del used["target"]
            if link["target"] < len(registry.explainer(model).labels):
                target = link["target"]
        if contrast == target:   # the new class is the old "rather than": drop it
            return target, prediction_figure(rows, target), no_update, None, used
        return target, prediction_figure(rows, target, contrast), no_update, no_update, used

    @app.callback(
        Output("predictions", "figure", allow_duplicate=True),
        Input("target", "value"),
        Input("contrast", "value"),
        State("image", "data"),
        State("model", "value"),
        prevent_initial_call=True,
    )
    def on_target(target, contrast, image, model):
        if not image or not model:
            raise PreventUpdate
        try:
            rows = work.predictions(store, registry, image["key"], model)
        except Exception:  # noqa: BLE001 - on_predict already said what went wrong
            raise PreventUpdate from None
        return prediction_figure(rows, target, contrast)

    @app.callback(
        Output("target", "value", allow_duplicate=True),
        Output("contrast", "value", allow_duplicate=True),
        Input("predictions", "clickData"),
        State("bar-sets", "value"),
        prevent_initial_call=True,
    )
    def on_bar_click(click, sets):
        """A bar click picks the class to explain, or the "rather than" class (the radio beside)."""
        try:
            index = int(click["points"][0]["customdata"])
        except (TypeError, KeyError, IndexError, ValueError):
            raise PreventUpdate from None
        return (no_update, index) if sets == "contrast" else (index, no_update)


def _named(error: Exception, filename: str | None, trigger) -> Exception:
    """Prefix the file's name, so three bad uploads give three distinguishable messages."""
    if isinstance(error, ExplainError) and trigger == "upload" and filename:
        return type(error)(f"{filename}: {error}")
    return error
