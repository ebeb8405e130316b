"""The Compare view: numbers to judge the chosen methods on the current image and model.

Deletion and insertion curves (Petsiuk et al. 2018) of all methods in one chart each, a sortable
table of their AUCs and localisation scores (pointing game, energy in mask; only when the image
comes with a ground-truth mask, i.e. the bundled scenes), and the sanity check (Adebayo et al.
2018) per method. Pure layout: the figures are built from the plain `result` dict that
`callbacks.compare` computes (see its `comparison`), never from TensorFlow objects.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dash_table, dcc, html

#: What removed pixels become (explain.metrics.BASELINES; grey is its default).
BASELINE_CHOICES = [
    {"label": "Grey", "value": "grey"},
    {"label": "Blur", "value": "blur"},
    {"label": "Black", "value": "black"},
    {"label": "Image mean", "value": "mean"},
]
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_CURVE_TEXT = {
    "deletion": ("Deletion", "share of pixels removed, most important first",
                 "Lower area is better: removing what the map points at should kill the score."),
    "insertion": ("Insertion", "share of pixels revealed, most important first",
                  "Higher area is better: revealing what the map points at should restore the score."),
}


def compare_panel() -> dbc.Card:
    """The whole Compare card (ids start with `compare-`)."""
    controls = dbc.Row([
        dbc.Col(dbc.InputGroup([
            dbc.InputGroupText("Baseline"),
            dbc.Select(id="compare-baseline", options=BASELINE_CHOICES, value="grey"),
        ], size="sm"), xs=12, md=4),
        dbc.Col(html.Div(dcc.Dropdown(id="compare-model2", options=[], value=None, clearable=True,
                                      searchable=True, placeholder="Second model (optional)"),
                         title="Run the same methods on the same image with a second model and "
                               "show the differences"), xs=12, md=4),
        dbc.Col(dbc.Switch(id="compare-sanity-on", value=True, className="small mt-1",
                           label="Sanity check (re-runs the methods on randomised copies)"),
                xs=12, md=4),
    ], className="g-2 mb-2")
    buttons = html.Div([
        dbc.Button([html.I(className="bi bi-bar-chart-line me-1"), "Compare methods"],
                   id="compare-run", color="primary", size="sm", n_clicks=0, className="me-2"),
        dbc.Button([html.I(className="bi bi-x-circle me-1"), "Cancel"], id="compare-cancel",
                   color="secondary", outline=True, size="sm", n_clicks=0, disabled=True),
    ], className="d-flex align-items-center")
    graphs = dbc.Row([
        dbc.Col(dcc.Graph(id="compare-deletion", figure=curves_figure(None, "deletion"),
                          config={"displaylogo": False}), md=6),
        dbc.Col(dcc.Graph(id="compare-insertion", figure=curves_figure(None, "insertion"),
                          config={"displaylogo": False}), md=6),
    ], className="g-2")
    body = html.Div([
        html.Div(id="compare-status", className="small mb-2"),
        html.Div(id="compare-verdict"),
        html.Div(id="compare-models"),
        html.Details([
            html.Summary("Curves and numbers (for experts)", className="section-title"),
            graphs,
            html.Div("Scores", className="section-title mt-2"),
            metrics_table(),
            html.Div(id="compare-sanity", className="mt-3"),
        ], id="compare-experts", open=True, className="mt-3"),
    ], id="compare-body", className="mt-3 d-none")
    return dbc.Card([
        dbc.CardHeader([html.I(className="bi bi-speedometer2 me-2"), "Compare methods"]),
        dbc.CardBody([
            html.P("Which map to trust on this image: is each method better than random at finding "
                   "what the score depends on, does it point at the object, and does it depend on the "
                   "model at all?", className="small text-body-secondary mb-2"),
            controls,
            boxes_section(),
            buttons,
            html.Div(id="compare-progress-text", className="progress-text small mt-2 d-none",
                     role="status", **{"aria-live": "polite"}),
            dbc.Progress(id="compare-progress", value=0, striped=True, animated=True,
                         className="mt-1 d-none", style={"height": "0.6rem"}),
            body,
            dcc.Store(id="compare-result"),
        ]),
    ], id="compare-card", className="mb-3")


def boxes_section() -> html.Details:
    """Draw boxes around the object on any image: the localisation scores then use them."""
    return html.Details([
        html.Summary("Mark the object with boxes (pointing game on any image)", className="small"),
        html.Div("Drag on the picture to draw a box around each object the class is about; drag a "
                 "box to move it. Pointing game and energy in the boxes are then computed for your "
                 "boxes (they replace a sample's own mask).", className="small text-body-secondary"),
        dcc.Graph(id="compare-boxes-figure", figure=boxes_figure(None, 0, 0),
                  config={"displaylogo": False, "modeBarButtonsToAdd": ["drawrect", "eraseshape"],
                          "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
                  style={"maxWidth": "520px"}),
        html.Div([
            html.Span(id="compare-boxes-info", className="small me-2"),
            dbc.Button("Clear boxes", id="compare-boxes-clear", size="sm", color="secondary",
                       outline=True, n_clicks=0),
        ], className="d-flex align-items-center mb-2"),
        dcc.Store(id="compare-boxes", data=[]),
    ], id="compare-boxes-section", className="mb-2")


def boxes_figure(uri: str | None, width: int, height: int, revision: str = "") -> go.Figure:
    """The image (a small PNG data URI) in its own pixel coordinates, y down, ready to draw on."""
    fig = go.Figure()
    if uri:
        fig.add_layout_image(source=uri, xref="x", yref="y", x=0, y=0, sizex=width, sizey=height,
                             xanchor="left", yanchor="top", sizing="stretch", layer="below")
    fig.update_layout(
        dragmode="drawrect", newshape={"line": {"color": "#ffdd00", "width": 3},
                                       "fillcolor": "rgba(255,221,0,0.15)"},
        xaxis={"range": [0, max(width, 1)], "visible": False, "constrain": "domain"},
        yaxis={"range": [max(height, 1), 0], "visible": False, "scaleanchor": "x"},
        margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=300, template="plotly_white",
        uirevision=f"{len(uri or '')}:{revision}", editrevision=f"{len(uri or '')}:{revision}")
    return fig


def metrics_table() -> dash_table.DataTable:
    return dash_table.DataTable(
        id="compare-table", columns=table_columns(False, False), data=[],
        sort_action="native", sort_mode="single",
        style_as_list_view=True,
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "inherit", "fontSize": ".85rem", "padding": ".3rem .5rem",
                    "textAlign": "right", "backgroundColor": "transparent"},
        style_cell_conditional=[{"if": {"column_id": c}, "textAlign": "left"}
                                for c in ("method", "verdict")],
        style_header={"fontWeight": "600", "backgroundColor": "transparent"},
        tooltip_header={
            "deletion_auc": "Area under the deletion curve: lower is better",
            "insertion_auc": "Area under the insertion curve: higher is better",
            "pointing_game": "1 if the map's maximum lies on the object (Zhang et al. 2016)",
            "energy_in_mask": "Share of the map's mass on the object (Wang et al. 2020)",
            "sanity_spearman": "Rank correlation with the trained model's map while the weights are "
                               "randomised top down, averaged: lower is better (Adebayo et al. 2018)",
        },
    )


def table_columns(has_mask: bool, has_sanity: bool, chance: float | None = None) -> list[dict]:
    number = {"type": "numeric", "format": {"specifier": ".3f"}}
    cols = [{"name": "Method", "id": "method", "type": "text"},
            {"name": "Deletion AUC ↓", "id": "deletion_auc", **number},
            {"name": "Insertion AUC ↑", "id": "insertion_auc", **number}]
    if has_mask:
        suffix = f" (chance {chance:.2f})" if chance is not None else ""
        cols += [{"name": "Pointing game ↑" + suffix, "id": "pointing_game", **number},
                 {"name": "Energy in mask ↑" + suffix, "id": "energy_in_mask", **number}]
    if has_sanity:
        cols += [{"name": "Sanity: mean Spearman ↓", "id": "sanity_spearman", **number},
                 {"name": "Sanity", "id": "verdict", "type": "text"}]
    return cols


def table_rows(result: dict) -> list[dict]:
    """One row per method that ran; missing values are None (blank cells that sort last)."""
    rows = []
    loc = result.get("localisation") or {}
    sanity = result.get("sanity") or {}
    for m in result.get("methods", []):
        curve = result.get("curves", {}).get(m)
        if curve is None:
            continue
        row = {"method": result["names"].get(m, m), "deletion_auc": curve["deletion_auc"],
               "insertion_auc": curve["insertion_auc"]}
        if m in loc:
            row.update(pointing_game=loc[m]["pointing_game"], energy_in_mask=loc[m]["energy_in_mask"])
        if m in sanity:
            s = sanity[m]
            row["sanity_spearman"] = s.get("score")
            row["verdict"] = {True: "passes", False: "fails", None: "n/a"}[s["passed"]]
        rows.append(row)
    return rows


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def curves_figure(result: dict | None, kind: str) -> go.Figure:
    """All methods' deletion (or insertion) curves in one chart; AUC in the legend."""
    title, xlabel, hint = _CURVE_TEXT[kind]
    fig = go.Figure()
    score = "probability"
    if result:
        score = result.get("score", score)
        for i, m in enumerate(result.get("methods", [])):
            curve = result.get("curves", {}).get(m)
            if curve is None:
                continue
            name = result["names"].get(m, m)
            fig.add_trace(go.Scatter(
                x=curve["fractions"], y=curve[kind], mode="lines+markers", marker={"size": 4},
                line={"color": _color(i), "width": 2},
                name=f"{name} ({curve[kind + '_auc']:.3f})",
                hovertemplate=f"{name}<br>%{{x:.0%}} of pixels: %{{y:.3f}}<extra></extra>"))
        rand = result.get("random")
        if rand:
            fig.add_trace(go.Scatter(
                x=rand["fractions"], y=rand[kind], mode="lines", line={"color": "#888", "dash": "dash"},
                name=f"random maps ({rand[kind + '_auc']:.3f})",
                hovertemplate="random maps<br>%{x:.0%} of pixels: %{y:.3f}<extra></extra>"))
    fig.update_layout(
        title={"text": f"{title}<br><sup>{hint}</sup>", "font": {"size": 14}},
        xaxis={"title": xlabel, "tickformat": ".0%", "range": [0, 1]},
        yaxis={"title": f"{score} of the explained class", "rangemode": "tozero"},
        legend={"title": {"text": "method (AUC)"}, "orientation": "h", "y": -0.3},
        margin={"l": 50, "r": 10, "t": 60, "b": 10}, height=360, template="plotly_white",
        uirevision=kind)
    return fig


def sanity_figure(result: dict) -> go.Figure:
    """Spearman correlation with the trained model's map as the layers are randomised top down."""
    fig = go.Figure()
    sanity = result.get("sanity") or {}
    threshold = result.get("sanity_threshold", 0.5)
    steps: list[str] = []
    reached: list[str] = []
    for i, m in enumerate(result.get("methods", [])):
        s = sanity.get(m)
        if not s or not s["spearman"]:
            continue
        steps = s["steps"]
        reached = s.get("reached") or steps
        name = result["names"].get(m, m)
        fig.add_trace(go.Scatter(
            x=list(range(1, len(steps) + 1)), y=s["spearman"], mode="lines+markers",
            line={"color": _color(i), "width": 2}, name=name, customdata=steps,
            hovertemplate=f"{name}<br>randomised down to %{{customdata}}<br>Spearman %{{y:.2f}}"
                          "<extra></extra>"))
    fig.add_hline(y=threshold, line={"dash": "dot", "color": "grey"},
                  annotation_text="similar above", annotation_position="top left")
    fig.update_layout(
        title={"text": "Sanity check: similarity to the trained model's map<br><sup>Weights "
                       "re-initialised from the top layer down; a method that stays similar ignores "
                       "the model.</sup>", "font": {"size": 14}},
        xaxis={"title": "weights randomised from the top layer down to … (hover for every layer)",
               "tickvals": list(range(1, len(steps) + 1)), "ticktext": [_wrap(r) for r in reached]},
        yaxis={"title": "Spearman rank correlation", "range": [-1.05, 1.05]},
        legend={"x": 1.02, "y": 1, "xanchor": "left"}, margin={"l": 50, "r": 10, "t": 60, "b": 10},
        height=380, template="plotly_white")
    fig.update_xaxes(automargin=True)
    return fig


def _wrap(name: str, width: int = 14) -> str:
    """A layer path or a name as tick text: whole, broken into lines of about `width` characters
    after a /, _, - or space (never cut off)."""
    import re

    parts = re.split(r"(?<=[/_ -])", name)
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "<br>".join(lines + [line])


def sanity_view(result: dict):
    """Verdict per method (badge + one line) and the cascade chart; a hint when it was off."""
    sanity = result.get("sanity")
    if sanity is None:
        return html.Div("Sanity check not run (switch it on above).", className="small text-body-secondary")
    items = []
    for m in result.get("methods", []):
        s = sanity.get(m)
        if s is None:
            continue
        color, text = {True: ("success", "passes"), False: ("danger", "fails"),
                       None: ("secondary", "n/a")}[s["passed"]]
        items.append(html.Li([dbc.Badge(text, color=color, className="me-2"),
                              html.Strong(result["names"].get(m, m) + ": "), s["message"]],
                             className="mb-1", id={"type": "compare-verdict", "method": m}))
    return html.Div([
        html.Div("Sanity check (Adebayo et al. 2018)", className="section-title"),
        html.Ul(items, className="list-unstyled small mb-2"),
        dcc.Graph(id="compare-sanity-graph", figure=sanity_figure(result), config={"displaylogo": False}),
    ])


def _boxes(boxes) -> list | None:
    """Boxes as lists of floats to compare; None for anything that is not (a browser's store)."""
    try:
        return [[float(v) for v in b] for b in boxes or []]
    except (TypeError, ValueError):
        return None


def status_view(result: dict | None, image_key: str | None, model: str | None, methods,
                model2: str | None = None, boxes=None) -> list:
    """What the numbers are for, what is missing (no mask, failed methods), and a warning when
    the image, model, methods, second model or boxes changed since they were computed."""
    if not result:
        return []
    if result.get("error"):
        return [dbc.Alert(result["error"], color="danger", className="py-2 mb-2")]
    notes = [html.Span(f"{result['model']} · explained class: {result['target_label']} · "
                       f"{result['steps']} steps, baseline {result['baseline']}, "
                       f"{result['seconds']:.1f} s.")]
    if result.get("localisation") is None:
        notes.append(html.Span(" No ground-truth mask for this image, so no localisation scores "
                               "(the bundled scene samples have one; on any image, draw boxes above).",
                               className="text-body-secondary"))
    elif result.get("mask_source") == "boxes":
        notes.append(html.Span(f" Localisation scores use your {result.get('boxes', 0)} box(es).",
                               className="text-body-secondary"))
    for m, message in (result.get("errors") or {}).items():
        notes.append(html.Div(f"{result['names'].get(m, m)}: {message}", className="text-danger"))
    stale = (result.get("image") != image_key or result.get("model") != model
             or set(result.get("requested", [])) != set(methods or []))
    extras = ((result.get("second") or {}).get("model") != (model2 or None)
              or _boxes(result.get("box_list")) != _boxes(boxes))
    if stale or extras:
        notes.insert(0, dbc.Badge("out of date", color="warning", className="me-2"))
        what = "image, model or methods" if stale else "second model or boxes"
        notes.append(html.Div(f"The {what} changed since: press “Compare methods” again.",
                              className="text-warning-emphasis"))
    return notes


# -- the verdict ("which map to trust") and two models ------------------------------------------------

_LEVEL_COLOR = {"trust": "success", "faithful": "info", "doubt": "warning", "distrust": "danger",
                "unknown": "secondary"}


def _sentence_cell(v: dict) -> list:
    """The plain sentence without its headline (the badge says that)."""
    head = v["headline"] + ": "
    text = v["sentence"][len(head):] if v["sentence"].startswith(head) else v["sentence"]
    return [text[:1].upper() + text[1:]]


def verdict_view(result: dict):
    """The table that opens the Compare panel: one row per method, a badge and a plain sentence
    (explain.verdict), the method's warnings in plain words beneath."""
    verdicts = result.get("verdicts") or {}
    warnings = result.get("warnings") or {}
    rows = []
    for m in result.get("methods", []):
        v = verdicts.get(m)
        if v is None:
            continue
        notes = [html.Div(["Note: ", w], className="text-body-secondary small")
                 for w in warnings.get(m, [])]
        rows.append(html.Tr([
            html.Th(result["names"].get(m, m), scope="row", className="fw-semibold"),
            html.Td(dbc.Badge(v["headline"], color=_LEVEL_COLOR.get(v["level"], "secondary"),
                              className="text-wrap")),
            html.Td(_sentence_cell(v) + notes),
        ], id={"type": "compare-verdict-row", "method": m}))
    if not rows:
        return []
    rand = result.get("random") or {}
    about = ("Faithful = removing the pixels the map ranks highest lowers the class's score faster "
             f"(and revealing them raises it faster) than for {rand.get('n', 'a few')} random maps "
             "on this image; sanity = the map changes when the model's weights are replaced by "
             "random ones. A map is trustworthy here only when both hold.")
    return html.Div([
        html.Div("Which map to trust on this image", className="section-title"),
        dbc.Table([html.Thead(html.Tr([html.Th("Method"), html.Th("Verdict"), html.Th("Why")])),
                   html.Tbody(rows)],
                  id="compare-verdict-table", size="sm", bordered=False, hover=True,
                  className="small align-middle mb-1"),
        html.Div(about, className="small text-body-secondary mb-2"),
    ])


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _delta(a, b) -> str:
    return "–" if a is None or b is None else f"{b - a:+.3f}"


def models_view(result: dict):
    """Both models' AUCs per method, their difference and each model's verdict."""
    second = result.get("second")
    if not second:
        return []
    if second.get("error"):
        return dbc.Alert(f"Second model ({second.get('model')}): {second['error']}", color="warning",
                         className="py-2 small")
    a_name, b_name = result["model"], second["model"]
    head = html.Thead(html.Tr([
        html.Th("Method"), html.Th(f"Deletion ↓ {a_name}"), html.Th(f"Deletion ↓ {b_name}"),
        html.Th("Δ"), html.Th(f"Insertion ↑ {a_name}"), html.Th(f"Insertion ↑ {b_name}"),
        html.Th("Δ"), html.Th(f"Verdict {a_name}"), html.Th(f"Verdict {b_name}")]))
    rows = []
    for m in dict.fromkeys(result.get("methods", []) + second.get("methods", [])):
        ca, cb = result.get("curves", {}).get(m, {}), second.get("curves", {}).get(m, {})
        va, vb = (result.get("verdicts") or {}).get(m), (second.get("verdicts") or {}).get(m)

        def badge(v):
            return dbc.Badge(v["headline"], color=_LEVEL_COLOR.get(v["level"], "secondary"),
                             title=v["sentence"], className="text-wrap") if v else "–"
        rows.append(html.Tr([
            html.Th(result["names"].get(m, m), scope="row"),
            html.Td(_fmt(ca.get("deletion_auc"))), html.Td(_fmt(cb.get("deletion_auc"))),
            html.Td(_delta(ca.get("deletion_auc"), cb.get("deletion_auc"))),
            html.Td(_fmt(ca.get("insertion_auc"))), html.Td(_fmt(cb.get("insertion_auc"))),
            html.Td(_delta(ca.get("insertion_auc"), cb.get("insertion_auc"))),
            html.Td(badge(va)), html.Td(badge(vb)),
        ], id={"type": "compare-model-row", "method": m}))
    same = second.get("target_label") == result.get("target_label")
    target = (f"Both explain “{result['target_label']}”; {b_name} at its default layer." if same else
              f"{a_name} explains “{result['target_label']}”, {b_name} its own top class "
              f"“{second['target_label']}” (the models' classes differ).")
    top = second.get("predicted")
    if top and top["label"] != second.get("target_label"):
        target += (f" {b_name} itself predicts “{top['label']}” ({top['probability']:.0%}), so its "
                   f"score for “{second['target_label']}” may stay near 0 whatever is removed.")
    return html.Div([
        html.Div(f"Two models: {a_name} and {b_name}", className="section-title mt-2"),
        dbc.Table([head, html.Tbody(rows)], id="compare-models-table", size="sm", hover=True,
                  className="small align-middle mb-1", responsive=True),
        html.Div(f"{target} Δ = {b_name} minus {a_name}: a lower deletion and a higher insertion "
                 "area mean the map finds what that model's score depends on better. Hover a "
                 "verdict for its sentence.", className="small text-body-secondary mb-2"),
    ])


# -- agreement between the shown maps (a card after the results grid) ---------------------------

#: Light ends (ColorBrewer RdBu / Blues), so the black numbers in the cells stay readable.
_SOFT_DIVERGING = [[0.0, "#4393c3"], [0.5, "#f7f7f7"], [1.0, "#f4a582"]]
_SOFT_SEQUENTIAL = [[0.0, "#f7fbff"], [1.0, "#6baed6"]]


def agreement_figure(names: list[str], spearman, overlap, top: float) -> go.Figure:
    """Two heatmaps side by side: rank correlation (-1..1) and the hottest pixels' overlap (0..1)."""
    from plotly.subplots import make_subplots

    short = [_wrap(n) for n in names]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16, subplot_titles=(
        "Rank correlation (Spearman)", f"Overlap of the hottest {top:.0%} (IoU)"))
    common = {"x": short, "y": short, "texttemplate": "%{z:.2f}", "xgap": 1, "ygap": 1,
              "customdata": [[(a, b) for b in names] for a in names]}
    fig.add_trace(go.Heatmap(z=[[round(float(v), 3) for v in row] for row in spearman],
                             zmin=-1, zmax=1, colorscale=_SOFT_DIVERGING,
                             colorbar={"x": 0.42, "len": 0.9, "thickness": 10},
                             hovertemplate="%{customdata[0]} vs %{customdata[1]}<br>Spearman %{z:.2f}"
                                           "<extra></extra>", **common), row=1, col=1)
    fig.add_trace(go.Heatmap(z=[[round(float(v), 3) for v in row] for row in overlap],
                             zmin=0, zmax=1, colorscale=_SOFT_SEQUENTIAL,
                             colorbar={"x": 1.0, "len": 0.9, "thickness": 10},
                             hovertemplate="%{customdata[0]} vs %{customdata[1]}<br>shared hottest "
                                           "pixels: %{z:.0%}<extra></extra>", **common), row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    size = max(260, 60 + 34 * len(names))
    fig.update_layout(height=size, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white")
    return fig


def agreement_card(names: list[str], spearman, overlap, top: float) -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader([html.I(className="bi bi-grid-3x3 me-2"), "Do the maps agree?"]),
        dbc.CardBody([
            dcc.Graph(id="agreement-graph", figure=agreement_figure(names, spearman, overlap, top),
                      config={"displaylogo": False}),
            html.Div("Left: 1 = the two maps rank the pixels in the same order, 0 = unrelated, −1 = "
                     f"opposite. Right: the share of their hottest {top:.0%} of pixels the two maps "
                     "have in common. Maps that agree point at the same evidence; when they do not, "
                     "the verdicts in Compare below say which to trust.",
                     className="small text-body-secondary"),
        ]),
    ], id="agreement-card", className="mt-3 mb-3")
