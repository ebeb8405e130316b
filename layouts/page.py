"""The page: a control panel on the left, the results on the right (stacked on phones).

Pure layout: it knows component ids and Bootstrap, not TensorFlow. What it lists (models, methods,
samples, colormaps, method options) arrives as plain data in a `Catalog` built by `callbacks`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts.compare import compare_panel
from layouts.figures import domain_note

#: The view a fresh page (or a URL without that key) starts from; also the URL's defaults.
DEFAULTS = {
    "cmap": "jet",
    "opacity": 0.5,
    "view": "overlay",
    "scale": "map",
    "score": "logit",
    "cf": False,
    "signed": False,
    "bar": "target",
}

VIEWS = [{"label": "Overlay", "value": "overlay"}, {"label": "Heatmap only", "value": "heatmap"}]
SCALES = [{"label": "Per map", "value": "map"}, {"label": "Shared", "value": "shared"}]
SCORES = [{"label": "Logit", "value": "logit"}, {"label": "Probability", "value": "probability"}]
BAR_SETS = [{"label": "class", "value": "target"}, {"label": "rather than", "value": "contrast"}]


@dataclass(frozen=True)
class Catalog:
    """Everything the page lists, as plain data (see `callbacks.catalog`)."""

    methods: list[dict] = field(default_factory=list)   # id, name, description, paper, family, slow
    default_methods: tuple[str, ...] = ()
    models: list[dict] = field(default_factory=list)    # name, label, available, reason
    samples: list[dict] = field(default_factory=list)   # name, title, src (URL)
    colormaps: list[str] = field(default_factory=lambda: ["jet"])
    options: list[dict] = field(default_factory=list)   # name, label, default, description, choices
    default_model: str | None = None
    max_upload_mb: float = 15
    max_megapixels: float = 40
    luts: dict = field(default_factory=dict)            # colormap -> 256 RGB levels as hex (display.js)
    scale_groups: list[dict] = field(default_factory=list)   # group, why (unit), methods (names)


def navbar():
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand([html.I(className="bi bi-eye me-2"), "camlens"], className="fw-semibold"),
                html.Span("why did the classifier decide that?", className="navbar-text small d-none d-lg-inline"),
                dbc.Nav([
                    dbc.NavItem(dbc.NavLink("Explore", href="/", active="exact", id="nav-explore")),
                    dbc.NavItem(dbc.NavLink([html.I(className="bi bi-trophy me-1"), "Beat the AI"],
                                            href="/challenge", active="exact", id="nav-challenge")),
                ], navbar=True, className="ms-auto flex-row gap-3"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3",
    )


def section(title: str, icon: str, *children, help: str | None = None):
    heading = html.H6([html.I(className=f"bi bi-{icon} me-2"), title], className="section-title")
    extra = [html.Div(help, className="form-text mt-0 mb-1")] if help else []
    return html.Section([heading, *extra, *children], className="mb-3")


def image_section(catalog: Catalog):
    upload = dcc.Upload(
        id="upload",
        children=html.Div([
            html.I(className="bi bi-cloud-arrow-up fs-4 d-block"),
            html.Span("Drop an image here or "), html.A("choose a file", className="link-primary"),
            html.Div(f"JPEG, PNG, WebP, BMP, GIF · up to {catalog.max_upload_mb:g} MB, "
                     f"{catalog.max_megapixels:g} MP", className="small text-body-secondary"),
        ]),
        className="upload-zone",
        className_active="upload-zone active",
        multiple=False,
    )
    samples = [
        html.Button(
            html.Img(src=s["src"], alt=s["title"]),
            id={"type": "sample", "name": s["name"]},
            className="sample-thumb",
            title=s["title"],
            n_clicks=0,
        )
        for s in catalog.samples
    ]
    gallery = html.Div(samples, id="samples", className="sample-gallery mt-2") if samples else html.Div(id="samples")
    return section("Image", "image", upload, gallery)


def model_options(catalog: Catalog) -> list[dict]:
    return [
        {"label": m["label"] + ("" if m["available"] else " (unavailable)"), "value": m["name"],
         "disabled": not m["available"], "title": m.get("reason") or m.get("title") or m["label"]}
        for m in catalog.models
    ]


def model_section(catalog: Catalog):
    return section(
        "Model", "cpu",
        dbc.InputGroup([
            html.Div(
                dcc.Dropdown(id="model", options=model_options(catalog), value=catalog.default_model,
                             clearable=False, searchable=True, placeholder="Choose a model"),
                className="flex-grow-1 model-dropdown",
            ),
            dbc.Button(html.I(className="bi bi-card-text"), id="model-card-open", color="secondary",
                       outline=True, title="Model card", n_clicks=0),
        ], className="flex-nowrap"),
        html.Div(id="model-info", className="form-text"),
        html.Label("Layer", htmlFor="layer", className="form-label small mt-2 mb-1",
                   title="Pick several layers to fuse the CAMs' maps (mean of the per-layer maps)"),
        dcc.Dropdown(id="layer", options=[], value=[], multi=True, clearable=True, searchable=True,
                     placeholder="Layer (spatial output)"),
        dbc.Modal([
            dbc.ModalHeader(dbc.ModalTitle(id="model-card-title")),
            dbc.ModalBody(dcc.Markdown(id="model-card", className="model-card")),
        ], id="model-card-modal", size="lg", scrollable=True, is_open=False),
    )


def method_label(m: dict):
    """The method's name and its plain line; the paper in the tooltip."""
    badges = [dbc.Badge("slow", color="warning", text_color="dark", className="ms-1")] if m["slow"] else []
    return html.Span([
        html.Span(m["name"], className="fw-medium"), *badges,
        html.Small(m["description"], className="d-block text-body-secondary method-description"),
    ], title=f"Paper: {m['paper']}" if m.get("paper") else None)


def methods_section(catalog: Catalog):
    checklist = dbc.Checklist(
        id="methods",
        options=[{"label": method_label(m), "value": m["id"], "input_id": f"method-{m['id']}"}
                 for m in catalog.methods],
        value=list(catalog.default_methods),
        class_name="methods-list",
    )
    return section("Methods", "list-check", checklist,
                   help="Pick any number; slow ones run in the background with a progress bar.")


def scale_help(catalog: Catalog) -> str:
    """The "Shared" scale's tooltip: which maps share a scale and why (from the declarations)."""
    groups = "; ".join(f"{', '.join(g['methods'])} ({g['why']})" for g in catalog.scale_groups if g["group"])
    alone = [g for g in catalog.scale_groups if not g["group"] and g["methods"]]
    return ("Shared: maps whose values are in the same units keep one colour scale, so a map that "
            "is near zero looks near zero beside its family. " + (f"Shared within: {groups}. " if groups else "")
            + (f"Always on their own scale: {', '.join(alone[0]['methods'])} ({alone[0]['why']})." if alone
               else "Any other map keeps its own scale."))


def display_section(catalog: Catalog):
    """The display controls as a compact toolbar that stays in view above the figures (sticky);
    every change is drawn in the browser (assets/display.js), with no request to the server."""
    scales = [{"label": "Per map", "value": "map"},
              {"label": html.Span("Shared", title=scale_help(catalog)), "value": "shared"}]
    return html.Div([
        dcc.Store(id="display-luts", data=catalog.luts),
        dcc.Store(id="display-applied"),
        dcc.Store(id="results-link"),     # {"href": the ZIP of the shown results}; display.js adds the display
        html.Div([
            html.I(className="bi bi-palette me-1", title="Colour map"),
            dbc.Select(id="colormap", options=[{"label": c, "value": c} for c in catalog.colormaps],
                       value=DEFAULTS["cmap"], size="sm", className="toolbar-colormap"),
        ], className="toolbar-item"),
        dbc.RadioItems(id="view", options=VIEWS, value=DEFAULTS["view"], inline=True,
                       class_name="small toolbar-item"),
        html.Div([
            html.Label("Opacity", htmlFor="opacity", className="small mb-0 me-1"),
            html.Div(dcc.Slider(id="opacity", min=0, max=1, step=0.05, value=DEFAULTS["opacity"],
                                marks=None, tooltip={"placement": "bottom"}, allow_direct_input=False,
                                updatemode="drag"), className="toolbar-slider"),
        ], className="toolbar-item"),
        html.Div([
            html.Span("Scale", className="small me-1"),
            dbc.RadioItems(id="scale", options=scales, value=DEFAULTS["scale"], inline=True, class_name="small d-inline"),
        ], className="toolbar-item", title="Per map stretches every map to its own maximum. " + scale_help(catalog)),
        html.Div(dbc.Switch(id="signed", label="Signed: red for, blue against", value=DEFAULTS["signed"],
                            class_name="small mb-0", label_class_name="small"),
                 className="toolbar-item",
                 title="Maps with a sign (integrated / expected gradients, gradients × input, LIME, "
                       "SHAP, and any map explained against a “rather than” class) drawn from -1 to 1 "
                       "on a diverging scale: red raised the score, blue lowered it. Other maps "
                       "are drawn as before."),
        html.Div(dbc.Switch(id="link-panels", label="Link panels", value=True, class_name="small mb-0",
                            label_class_name="small"),
                 className="toolbar-item",
                 title="Zoom or pan one figure and all follow; the pointer shows a crosshair and the value "
                       "at the same pixel in every figure."),
    ], id="display-toolbar", className="display-toolbar")


def option_input(option: dict):
    ident = {"type": "option", "name": option["name"]}
    if option.get("choices"):
        control = dbc.Select(id=ident, options=[{"label": c, "value": c} for c in option["choices"]],
                             value=option["default"], size="sm")
    else:
        control = dbc.Input(id=ident, type="number", min=0, value=option["default"], size="sm",
                            placeholder="auto", debounce=True)
    return html.Div(dbc.Row([
        dbc.Col(html.Label(option["label"], className="small mb-0"), width=7),
        dbc.Col(control, width=5),
    ], className="g-2 mb-1 align-items-center"), title=option["description"])


def options_section(catalog: Catalog):
    return html.Details([
        html.Summary([html.I(className="bi bi-gear me-2"), "Method options"], className="section-title"),
        html.Div([option_input(o) for o in catalog.options], className="mt-2"),
    ], className="mb-2")


def control_panel(catalog: Catalog | None = None):
    """Image, model and layer: first on every screen (on phones the results follow it)."""
    catalog = catalog or Catalog()
    return dbc.Card(
        [
            dbc.CardHeader([html.I(className="bi bi-sliders me-2"), "Controls"]),
            dbc.CardBody(id="controls", children=[image_section(catalog), model_section(catalog)]),
        ],
        id="control-panel",
    )


def method_panel(catalog: Catalog | None = None):
    """Methods and method options: under the controls (desktop) or the results (phones)."""
    catalog = catalog or Catalog()
    return dbc.Card(
        [
            dbc.CardHeader([html.I(className="bi bi-grid-3x3-gap me-2"), "Methods"]),
            dbc.CardBody([methods_section(catalog), options_section(catalog)]),
        ],
        id="method-panel",
    )


def target_controls():
    return html.Div([
        html.Label("Explain the class", htmlFor="target", className="form-label small mb-1"),
        dcc.Dropdown(id="target", options=[], value=None, clearable=False, searchable=True,
                     placeholder="Top-1 class"),
        html.Label("Rather than", htmlFor="contrast", className="form-label small mt-2 mb-1",
                   title="Why this class and not another one: the score becomes S(class) - S(rather "
                         "than), so a map shows what tells the two apart."),
        dcc.Dropdown(id="contrast", options=[], value=None, clearable=True, searchable=True,
                     placeholder="No other class"),
        html.Div([
            html.Span("Clicking a bar sets", className="small me-2"),
            dbc.RadioItems(id="bar-sets", options=BAR_SETS, value=DEFAULTS["bar"], inline=True,
                           class_name="small d-inline"),
        ], className="mt-1"),
        html.Div([
            dbc.RadioItems(id="score", options=SCORES, value=DEFAULTS["score"], inline=True,
                           class_name="small me-3 d-inline-block"),
            dbc.Switch(id="counterfactual", label="Counterfactual", value=DEFAULTS["cf"],
                       class_name="small d-inline-block mb-0",
                       label_class_name="small"),
        ], className="mt-2", title="Logit: the pre-softmax score (Grad-CAM's choice; softmax saturates). "
                                   "Counterfactual: what speaks against the class (negated gradients)."),
    ])


def input_card():
    return dbc.Card(dbc.CardBody(dbc.Row([
        dbc.Col([
            html.Div(id="original", className="original"),
        ], xs=5, xl=4),
        dbc.Col([
            dcc.Graph(id="predictions", figure=empty_figure(),
                      config={"displayModeBar": False, "responsive": True},
                      className="predictions-graph", style={"width": "100%"}),
        ], xs=7, xl=5),
        dbc.Col(target_controls(), xs=12, xl=3),
        dbc.Col(domain_note(), xs=12),
    ], className="g-2 g-md-3")), id="input-card", className="mb-3 d-none")


def slow_panel():
    return dbc.Card(dbc.CardBody([
        html.Div(id="slow-estimate", className="small mb-2"),
        html.Div([
            dbc.Button([html.I(className="bi bi-play-fill me-1"), "Run slow methods"], id="run-slow",
                       color="primary", size="sm", n_clicks=0, className="me-2"),
            dbc.Button([html.I(className="bi bi-x-circle me-1"), "Cancel"], id="cancel", color="secondary",
                       outline=True, size="sm", n_clicks=0, disabled=True),
        ], className="d-flex align-items-center"),
        html.Div(id="progress-text", className="progress-text small mt-2 d-none", role="status",
                 **{"aria-live": "polite"}),
        dbc.Progress(id="progress", value=0, striped=True, animated=True,
                     className="mt-1 d-none", style={"height": "0.6rem"}),
    ]), id="slow-panel", className="mb-3 d-none")


def results_area(catalog: Catalog | None = None):
    return html.Div(
        id="results",
        children=[
            display_section(catalog or Catalog()),
            html.Div(id="alerts", children=[]),
            input_card(),
            slow_panel(),
            html.Div([
                html.Span(id="copy-link-status", role="status", className="small text-success me-2"),
                dbc.Input(id="copy-link-text", type="text", value="", readonly=True, size="sm", class_name="d-none",
                          placeholder="Link to this view"),
                html.A([html.I(className="bi bi-file-earmark-zip me-1"), "Download all (ZIP)"],
                       id="download-zip", href="", className="btn btn-sm btn-outline-secondary d-none",
                       download="camlens-results.zip"),
                html.A([html.I(className="bi bi-file-earmark-richtext me-1"), "Report (HTML)"],
                       id="download-report", href="", className="btn btn-sm btn-outline-secondary d-none ms-2",
                       title="One file to hand out: the photo, the answers and each map with what its "
                             "colours mean; opens offline and prints to PDF"),
                html.Button([html.I(className="bi bi-link-45deg me-1"), "Copy link"], id="copy-link", n_clicks=0,
                            className="btn btn-sm btn-outline-secondary ms-2",
                            title="A link that reopens this view: image, class, methods, options, display"),
                html.Button([html.I(className="bi bi-easel me-1"), "Present"], id="present-open", type="button",
                            className="btn btn-sm btn-outline-primary ms-2",
                            title="Full screen, one figure at a time: arrow keys step through the methods, "
                                  "up and down through the gallery's photos, Esc leaves"),
            ], className="d-flex flex-wrap justify-content-end align-items-center mb-2"),
            dcc.Loading(
                html.Div(id="results-grid", children=empty_state(), className="row g-3"),
                type="circle", delay_show=400, overlay_style={"visibility": "visible", "opacity": 0.6},
            ),
            html.Div(id="agreement"),   # the maps' agreement card (callbacks.compare), when 2+ are shown
            compare_panel(),
        ],
    )


def empty_state():
    return dbc.Alert(
        [html.I(className="bi bi-image me-2"), "Upload an image or pick a sample to start."],
        color="light",
        className="text-center",
    )


def empty_figure() -> dict:
    return {"data": [], "layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                                   "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}}


def stores():
    return [
        dcc.Location(id="url", refresh=False),
        dcc.Location(id="url-out", refresh=False),
        dcc.Store(id="url-state"),
        dcc.Store(id="session"),
        dcc.Store(id="image"),          # {"key": content hash, "name", "width", "height"}
        dcc.Store(id="fast-done"),      # a token: new fast results are in the server's cache
        dcc.Store(id="slow-done"),      # the same for background jobs
        dcc.Store(id="slow-partial"),   # one slow method's result is in, the job goes on
        dcc.Store(id="slow-stop"),      # {"at", "why"}: the setting changed, the slow run is cancelled
        # The display's defaults, which a URL leaves out (callbacks.urlstate writes them in the browser).
        dcc.Store(id="display-defaults", data={k: int(v) if isinstance(v, bool) else v for k, v in DEFAULTS.items()
                                               if k in ("cmap", "opacity", "view", "scale", "signed")}),
    ]


def page(config, catalog: Catalog | None = None):
    """Three areas in a CSS grid (assets/style.css): controls and methods on the left, results on
    the right; on phones controls, then results, then methods, so results are not below a long list."""
    from layouts.challenge import challenge_page   # it builds on this module (Catalog, model_options)

    catalog = catalog or Catalog(max_upload_mb=config.max_upload_mb, max_megapixels=config.max_pixels / 1e6)
    return html.Div(
        [
            *stores(),
            navbar(),
            dbc.Container(
                html.Div(
                    [
                        html.Div(control_panel(catalog), className="area-controls"),
                        html.Div(results_area(catalog), className="area-results"),
                        html.Div(method_panel(catalog), className="area-methods"),
                    ],
                    className="camlens-grid",
                ),
                fluid=True,
                id="explorer-page",
            ),
            challenge_page(catalog),
        ]
    )
