"""The URL carries the view: the image (a gallery sample by name, an upload by its content key),
model, layer(s), methods, the explained class, score, counterfactual, the "rather than" class,
every method option and the display options, so a link reopens the same view elsewhere.

Two dcc.Location components avoid a callback cycle: `url` is read (page load, back/forward),
`url-out` is written whenever a control changes. Reading sets only what differs from the page,
so writing the URL back never loops. Every value read is checked; a malformed one is ignored.
An upload lives in the server's bounded store (callbacks.store), so a link to an upload works
while the store keeps it (`retention`); a sample always works.
"""
from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlencode

from dash import ALL, ClientsideFunction, Input, Output, State, no_update

from callbacks import sample_path, work
from callbacks.inputs import alert, problem, shown_image
from explain import METHODS, OPTIONS
from explain.errors import ExplainError
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
#: Every key a link may hold besides the method options (each goes under its own name: ig_steps=64).
KEYS = (*FIELDS, "layer", "sample", "image", "name", "target")
#: The options a link carries: those the page has a field for.
LINK_OPTIONS = {name: o for name, o in OPTIONS.items() if o.shown}
assert not set(LINK_OPTIONS) & set(KEYS), "an option name clashes with a URL key"

_KEY = re.compile(r"[0-9a-f]{64}")   # callbacks.store.content_key: SHA-256, hex


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
        if any(m in METHODS for m in names):   # none known: ignored, like any malformed value
            out["methods"] = [m for m in names if m in METHODS]
    if query.get("cmap") in colormaps:
        out["cmap"] = query["cmap"]
    opacity = _number(query.get("opacity"))
    if opacity is not None:
        out["opacity"] = min(1.0, max(0.0, round(opacity, 2)))
    if query.get("view") in ("overlay", "heatmap"):
        out["view"] = query["view"]
    if query.get("scale") in ("map", "shared"):
        out["scale"] = query["scale"]
    if query.get("score") in ("logit", "probability"):
        out["score"] = query["score"]
    if query.get("cf") in ("0", "1"):
        out["cf"] = query["cf"] == "1"
    for key in ("contrast", "target"):   # class indices; the page checks them against the model
        if query.get(key, "").isdigit() and len(query[key]) < 7:
            out[key] = int(query[key])
    if query.get("signed") in ("0", "1"):
        out["signed"] = query["signed"] == "1"
    if query.get("sample") and sample_path(query["sample"]) is not None:
        out["sample"] = query["sample"]
    elif query.get("sample"):
        out["unknown_sample"] = query["sample"][:80]
    elif _KEY.fullmatch(query.get("image", "")):
        out["image"] = query["image"]
        name = "".join(c for c in query.get("name", "") if c.isprintable()).strip()[:120]
        if name:
            out["name"] = name
    options = {n: v for n, raw in query.items() if n in LINK_OPTIONS and (v := option_value(n, raw)) is not None}
    if options:
        out["options"] = options
    return out


def option_value(name: str, raw):
    """A method option's value from a link, checked against its declaration: a number outside
    the option's bounds is clamped to them (whole numbers rounded), anything else unusable gives
    None (ignored)."""
    option = LINK_OPTIONS[name]
    if option.kind is str:
        value = str(raw).strip()
        return value if not option.choices or value in option.choices else None
    number = _number(raw)
    if number is None:
        return None
    number = max(float(option.lo), number)
    if option.page_max is not None:
        number = min(float(option.page_max), number)
    if option.kind is int:
        number = int(round(number))
    try:
        return option.parse(number, page=True)
    except ExplainError:
        return None


def _number(raw) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build(values: dict) -> str:
    """The query string for a view: model and layer always, the image, its class and the other
    keys when given and not default. Several layers (fused CAMs) go as one value: layer=a,b."""
    query = {}
    image = values.get("image") or {}
    if image.get("sample"):
        query["sample"] = image["sample"]
    elif image.get("key"):
        query["image"] = image["key"]
        if image.get("name"):
            query["name"] = image["name"]
    for key in ("model", "layer"):
        if values.get(key):
            value = values[key]
            query[key] = value if isinstance(value, str) else ",".join(value)
    if values.get("methods") is not None and list(values["methods"]) != list(DEFAULT_METHODS):
        query["methods"] = ",".join(m for m in METHODS if m in values["methods"])
    if image and values.get("target") is not None:
        query["target"] = int(values["target"])
    for key in ("cmap", "opacity", "view", "scale", "score"):
        if values.get(key) is not None and values[key] != DEFAULTS[key]:
            query[key] = values[key]
    if values.get("cf"):
        query["cf"] = "1"
    if values.get("contrast") is not None:
        query["contrast"] = int(values["contrast"])
    if values.get("signed"):
        query["signed"] = "1"
    for name, raw in sorted((values.get("options") or {}).items()):
        value = option_value(name, raw) if name in LINK_OPTIONS and raw not in (None, "") else None
        if value is not None and value != LINK_OPTIONS[name].default:
            query[name] = value
    return "?" + urlencode(query, safe=",/") if query else ""


def retention(store) -> str:
    """How long the server keeps an upload, as its store is configured (callbacks.store): keys
    that expire in Redis, or a size-bounded disk cache that, once full, drops its `cull_limit`
    least recently viewed entries at once (diskcache's least-recently-used culling)."""
    uploads = store.uploads
    if hasattr(uploads, "ttl"):
        return f"uploads are kept for {uploads.ttl / 3600:g} hours"
    cull = getattr(getattr(uploads, "cache", None), "cull_limit", 10)
    return (f"uploads are kept until {uploads.size_limit / 2**20:.0f} MB of them fill the server, "
            f"then the {cull} least recently viewed make room")


#: URL keys of the display (drawn in the browser, assets/display.js): written to the URL there too.
DISPLAY_KEYS = ("cmap", "opacity", "view", "scale", "signed")


def register(deps) -> None:
    app, store = deps.app, deps.store
    keys = list(FIELDS)
    option = {"type": "option", "name": ALL}

    @app.callback(
        *[Output(*FIELDS[k]) for k in keys],
        Output("url-state", "data"),
        Output(option, "value"),
        Output("image", "data", allow_duplicate=True),
        Output("original", "children", allow_duplicate=True),
        Output("input-card", "className", allow_duplicate=True),
        Output("target", "value", allow_duplicate=True),
        Output("alerts", "children", allow_duplicate=True),
        Output("copy-link", "title"),
        Input("url", "search"),
        *[State(*FIELDS[k]) for k in keys],
        State(option, "id"),
        State(option, "value"),
        State("image", "data"),
        State("target", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def from_url(search, *state):
        current, (ids, values, image, target) = state[:len(keys)], state[len(keys):]
        wanted = parse(search)
        if "model" in wanted and not _known(deps.registry, wanted["model"]):
            del wanted["model"]
        now = dict(zip(keys, current))
        out = [_differs(wanted[k], now[k]) if k in wanted else no_update for k in keys]
        model = wanted.get("model", now["model"])
        options = wanted.get("options", {})
        # A link sets every option: those it does not name go back to their defaults.
        option_values = [_differs(options.get(i["name"], LINK_OPTIONS[i["name"]].default), v)
                         if i["name"] in LINK_OPTIONS else no_update for i, v in zip(ids or [], values or [])]
        shown, message = _linked_image(deps, wanted, image)
        link = {"model": model, "layer": wanted.get("layer"), "target": wanted.get("target"),
                "image": (shown[0]["key"] if shown else (image or {}).get("key"))}
        new_target = no_update
        if not shown and link["image"] and model == now["model"] and wanted.get("target") not in (None, target):
            new_target, link["target"] = wanted["target"], None   # same image and model: set it now
        picture = (*shown, "mb-3") if shown else (no_update,) * 3
        note = f"A link to this view. Gallery samples always open; {retention(store)}."
        return (*out, link, option_values, *picture, new_target, message, note)

    # The display keys are written in the browser (below): a display change sends no request.
    # Here they are States, so a link written for another change carries the current display.
    @app.callback(
        Output("url-out", "search"),
        Input("layer", "value"),
        *[(State if k in DISPLAY_KEYS else Input)(*FIELDS[k]) for k in keys],
        Input("image", "data"),
        Input("target", "value"),
        Input(option, "id"),
        Input(option, "value"),
        prevent_initial_call=True,
    )
    def to_url(layer, *values):
        fields, (image, target, ids, option_values) = values[:len(keys)], values[len(keys):]
        options = {i["name"]: v for i, v in zip(ids or [], option_values or [])}
        return build({"layer": layer, **dict(zip(keys, fields)), "image": image, "target": target,
                      "options": options})

    app.clientside_callback(
        """function(cmap, opacity, view, scale, signed, defaults) {
            const query = new URLSearchParams(window.location.search);
            const shown = {cmap: cmap, opacity: opacity, view: view, scale: scale, signed: signed ? 1 : 0};
            for (const key in shown) {
                const value = shown[key];
                if (value === null || value === undefined || String(value) === String(defaults[key])) {
                    query.delete(key);
                } else {
                    query.set(key, String(value));
                }
            }
            const text = query.toString().replace(/%2C/g, ",").replace(/%2F/g, "/");
            return text ? "?" + text : "";
        }""",
        Output("url-out", "search", allow_duplicate=True),
        *[Input(*FIELDS[k]) for k in DISPLAY_KEYS],
        State("display-defaults", "data"),
        prevent_initial_call=True,
    )

    # "Copy link": the browser's address (url-out keeps it current) to the clipboard, or into a
    # selectable field where the clipboard is not allowed (assets/links.js).
    app.clientside_callback(
        ClientsideFunction("camlens_links", "copy"),
        Output("copy-link-status", "children"),
        Input("copy-link", "n_clicks"),
        prevent_initial_call=True,
    )

    # A random id per page load keeps two people's identical background jobs apart.
    app.clientside_callback(
        "function(_) { return Math.random().toString(36).slice(2) + Date.now().toString(36); }",
        Output("session", "data"),
        Input("url", "pathname"),
    )


def _differs(wanted, now):
    """`wanted`, or no_update when the page already shows it (so nothing re-runs for nothing)."""
    return no_update if wanted == now or (wanted is None and now in (None, "")) else wanted


def _linked_image(deps, wanted: dict, current: dict | None):
    """((image store value, preview) or (), an alert or no_update) for the image a link names;
    () when it names none, the page already shows it, or it is gone (then the alert says so)."""
    current_key = (current or {}).get("key")
    try:
        if "sample" in wanted:
            if (current or {}).get("sample") == wanted["sample"]:
                return (), no_update
            stored = work.upload(deps.store, sample_path(wanted["sample"]).read_bytes(), deps.limits)
            return shown_image(stored, wanted["sample"], sample=wanted["sample"]), no_update
        if "unknown_sample" in wanted:
            return (), alert(f"The sample {wanted['unknown_sample']!r} in this link is not in the gallery: "
                             "pick an image.", color="warning")
        if "image" not in wanted or wanted["image"] == current_key:
            return (), no_update
        stored = deps.store.image(wanted["image"])
    except Exception as error:  # noqa: BLE001 - a damaged sample or store: say so, the rest applies
        return (), problem(error)
    if stored is None:
        return (), alert(f"The photo in this link is no longer on the server ({retention(deps.store)}): "
                         "upload it again.", color="warning", icon="clock-history")
    return shown_image(stored, wanted.get("name") or "shared image"), no_update


def _known(registry, name: str) -> bool:
    try:
        registry.info(name)
    except KeyError:
        return False
    return True
