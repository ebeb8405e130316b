"""The page: a control panel on the left, the results grid on the right (stacked on phones)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html


def navbar():
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand([html.I(className="bi bi-eye me-2"), "camlens"], className="fw-semibold"),
                html.Span("why did the classifier decide that?", className="navbar-text small"),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3",
    )


def control_panel():
    return dbc.Card(
        [
            dbc.CardHeader([html.I(className="bi bi-sliders me-2"), "Controls"]),
            dbc.CardBody(id="controls", children=[]),
        ],
        id="control-panel",
    )


def results_area():
    return html.Div(
        id="results",
        children=dbc.Alert(
            [html.I(className="bi bi-image me-2"), "Upload an image or pick a sample to start."],
            color="light",
            className="text-center",
        ),
    )


def page(config):
    return html.Div(
        [
            navbar(),
            dbc.Container(
                dbc.Row(
                    [
                        dbc.Col(control_panel(), md=4, lg=3, className="mb-3"),
                        dbc.Col(results_area(), md=8, lg=9),
                    ]
                ),
                fluid=True,
            ),
        ]
    )
