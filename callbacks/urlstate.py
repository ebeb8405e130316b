"""The URL carries the view: model, layer, methods, the "rather than" class and display options,
so a view can be shared.

Two dcc.Location components avoid a callback cycle: `url` is read (page load, back/forward),
`url-out` is written whenever a control changes. Reading sets only what differs from the page,
so writing the URL back never loops.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from dash import Input, Output, State, no_update

from explain import METHODS
from explain.methods import DEFAULT_METHODS
from explain.render import COLORMAPS
from layouts.page import DEFAULTS

#: URL key -> (component id, property)
FIELDS = {
    "model": ("model", "value"),
    "methods": ("methods", "value"),
    "cmap": ("colormap", "value"),
    "opacity": ("opacity", "value"),
    "view": ("view", "value"),
    "scale": ("scale", "value"),
    "score": ("score", "value"),
    "cf": ("counterfactual", "value"),
    "contrast": ("contrast", "value"),
    "signed": ("signed", "value"),
}


def parse(search: str | None, colormaps=tuple(COLORMAPS)) -> dict:
    """Query string -> the values it validly sets (anything malformed is ignored)."""
    query = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items() if v}
    out = {}
    if query.get("model"):
        out["model"] = query["model"]
    if "layer" in query:
        out["layer"] = query["layer"]
    if "methods" in query:
        # A literal "+" (gradcam++) arrives as a space when the URL was typed rather than built.
        names = [m.replace(" ", "+") for m in query["methods"].split(",")]
        out["methods"] = [m for m in names if m in METHODS]
    if query.get("cmap") in colormaps:
        out["cmap"] = query["cmap"]
    try:
        if "opacity" in query:
            out["opacity"] = min(1.0, max(0.0, round(float(query["opacity"]), 2)))
    except ValueError:
        pass
    if query.get("view") in ("overlay", "heatmap"):
        out["view"] = query["view"]
    if query.get("scale") in ("map", "shared"):
        out["scale"] = query["scale"]
    if query.get("score") in ("logit", "probability"):
        out["score"] = query["score"]
    if query.get("cf") in ("0", "1"):
        out["cf"] = query["cf"] == "1"
    if query.get("contrast", "").isdigit():   # a class index; the page checks it against the model
        out["contrast"] = int(query["contrast"])
    if query.get("signed") in ("0", "1"):
        out["signed"] = query["signed"] == "1"
    return out


def build(values: dict) -> str:
    """The query string for a view: model and layer always, other keys only when not default.
    Several layers (fused CAMs) go as one comma-separated value: layer=a,b."""
    query = {}
    for key in ("model", "layer"):
        if values.get(key):
            value = values[key]
            query[key] = value if isinstance(value, str) else ",".join(value)
    if values.get("methods") is not None and list(values["methods"]) != list(DEFAULT_METHODS):
        query["methods"] = ",".join(m for m in METHODS if m in values["methods"])
    for key in ("cmap", "opacity", "view", "scale", "score"):
        if values.get(key) is not None and values[key] != DEFAULTS[key]:
            query[key] = values[key]
    if values.get("cf"):
        query["cf"] = "1"
    if values.get("contrast") is not None:
        query["contrast"] = int(values["contrast"])
    if values.get("signed"):
        query["signed"] = "1"
    return "?" + urlencode(query, safe=",/") if query else ""


def register(deps) -> None:
    app = deps.app
    keys = list(FIELDS)

    @app.callback(
        *[Output(*FIELDS[k]) for k in keys],
        Output("url-state", "data"),
        Input("url", "search"),
        *[State(*FIELDS[k]) for k in keys],
    )
    def from_url(search, *current):
        wanted = parse(search)
        if "model" in wanted and not _known(deps.registry, wanted["model"]):
            del wanted["model"]
        now = dict(zip(keys, current))
        out = [wanted[k] if k in wanted and wanted[k] != now[k] else no_update for k in keys]
        model = wanted.get("model", now["model"])
        return (*out, {"model": model, "layer": wanted.get("layer")})

    @app.callback(
        Output("url-out", "search"),
        Input("layer", "value"),
        *[Input(*FIELDS[k]) for k in keys],
        prevent_initial_call=True,
    )
    def to_url(layer, *values):
        return build({"layer": layer, **dict(zip(keys, values))})

    # A random id per page load keeps two people's identical background jobs apart.
    app.clientside_callback(
        "function(_) { return Math.random().toString(36).slice(2) + Date.now().toString(36); }",
        Output("session", "data"),
        Input("url", "pathname"),
    )


def _known(registry, name: str) -> bool:
    try:
        registry.info(name)
    except KeyError:
        return False
    return True
