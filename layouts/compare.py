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
        ], size="sm"), xs=12, md=5),
        dbc.Col(dbc.Switch(id="compare-sanity-on", value=True, className="small mt-1",
                           label="Sanity check (re-runs the methods on randomised copies)"),
                xs=12, md=7),
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
        graphs,
        html.Div("Scores", className="section-title mt-2"),
        metrics_table(),
        html.Div(id="compare-sanity", className="mt-3"),
    ], id="compare-body", className="mt-3 d-none")
    return dbc.Card([
        dbc.CardHeader([html.I(className="bi bi-speedometer2 me-2"), "Compare methods"]),
        dbc.CardBody([
            html.P("How faithful is each chosen method on this image, does it point at the object, "
                   "and does it depend on the model at all?", className="small text-body-secondary mb-2"),
            controls,
            buttons,
            dbc.Progress(id="compare-progress", value=0, label="", striped=True, animated=True,
                         className="mt-2 d-none", style={"height": "1.2rem"}),
            body,
            dcc.Store(id="compare-result"),
        ]),
    ], id="compare-card", className="mb-3")


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
    for i, m in enumerate(result.get("methods", [])):
        s = sanity.get(m)
        if not s or not s["spearman"]:
            continue
        steps = s["steps"]
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
        xaxis={"title": "layers randomised (top first)", "tickvals": list(range(1, len(steps) + 1)),
               "ticktext": [_short(s) for s in steps]},
        yaxis={"title": "Spearman rank correlation", "range": [-1.05, 1.05]},
        legend={"orientation": "h", "y": -0.35}, margin={"l": 50, "r": 10, "t": 60, "b": 10},
        height=340, template="plotly_white")
    return fig


def _short(step: str, limit: int = 18) -> str:
    return step if len(step) <= limit else "…" + step[-(limit - 1):]


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


def status_view(result: dict | None, image_key: str | None, model: str | None, methods) -> list:
    """What the numbers are for, what is missing (no mask, failed methods), and a warning when
    the image, model or methods changed since they were computed."""
    if not result:
        return []
    if result.get("error"):
        return [dbc.Alert(result["error"], color="danger", className="py-2 mb-2")]
    notes = [html.Span(f"{result['model']} · explained class: {result['target_label']} · "
                       f"{result['steps']} steps, baseline {result['baseline']}, "
                       f"{result['seconds']:.1f} s.")]
    if result.get("localisation") is None:
        notes.append(html.Span(" No ground-truth mask for this image, so no localisation scores "
                               "(the bundled scene samples have one).", className="text-body-secondary"))
    for m, message in (result.get("errors") or {}).items():
        notes.append(html.Div(f"{result['names'].get(m, m)}: {message}", className="text-danger"))
    stale = (result.get("image") != image_key or result.get("model") != model
             or set(result.get("requested", [])) != set(methods or []))
    if stale:
        notes.insert(0, dbc.Badge("out of date", color="warning", className="me-2"))
        notes.append(html.Div("The image, model or methods changed since: press “Compare methods” again.",
                              className="text-warning-emphasis"))
    return notes
