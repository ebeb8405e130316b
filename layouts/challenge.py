"""Beat the AI: the challenge page (path /challenge), in plain words for visitors at a demo.

Pure layout: every view is made from plain data the callbacks (callbacks.challenge) computed.
Before a reveal the page holds only the photo and the choices' texts, never the right answer.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts.figures import prediction_figure
from layouts.page import Catalog, model_options

ROUND_CHOICES = (3, 5, 10)
DEFAULT_ROUNDS = 5
PATH = "/challenge"


def challenge_page(catalog: Catalog) -> dbc.Container:
    """Hidden until the address is /challenge (assets/challenge.js shows one page or the other)."""
    setup = dbc.Card(dbc.CardBody([
        html.H2([html.I(className="bi bi-trophy me-2"), "Beat the AI"], className="h3"),
        html.P("Look at each photo and pick what it shows. The AI answers too. Then you see what it "
               "said, how sure it was and where in the photo it looked. Who gets more right?",
               className="lead mb-3"),
        dbc.Row([
            dbc.Col([
                html.Label("Play against", htmlFor="challenge-model", className="form-label mb-1"),
                dcc.Dropdown(id="challenge-model", options=model_options(catalog), value=catalog.default_model,
                             clearable=False, searchable=True),
            ], xs=12, md=5),
            dbc.Col([
                html.Div("Photos per game", className="form-label mb-1"),
                dbc.RadioItems(id="challenge-rounds", inline=True, value=DEFAULT_ROUNDS,
                               options=[{"label": str(n), "value": n} for n in ROUND_CHOICES]),
            ], xs=6, md=3),
            dbc.Col(dbc.Button([html.I(className="bi bi-play-fill me-1"), "Start a new game"],
                               id="challenge-start", color="primary", size="lg", n_clicks=0),
                    xs=6, md=4, className="d-flex align-items-end justify-content-end"),
        ], className="g-3"),
    ]), className="mb-3")
    return dbc.Container([
        dcc.Store(id="challenge-game"),   # {"token": ...}: the game itself stays on the server
        setup,
        html.Div(id="challenge-alert"),
        html.Div(id="challenge-score", className="challenge-score mb-2"),
        dcc.Loading(html.Div(id="challenge-body", children=intro()), type="circle", delay_show=300),
    ], id="challenge-page", fluid=True, className="challenge-page d-none")


def intro() -> dbc.Alert:
    return dbc.Alert([html.I(className="bi bi-info-circle me-2"),
                      "Choose how many photos to play and press “Start a new game”."],
                     color="light", className="text-center")


def score_line(you: int, ai: int, played: int) -> html.Div:
    return html.Div([
        html.Span(f"You {you}", className="challenge-you"), html.Span(" · "),
        html.Span(f"AI {ai}", className="challenge-ai"),
        html.Span(f" after {played} photo{'s' if played != 1 else ''}", className="text-body-secondary fs-6"),
    ], id="challenge-score-line")


def round_view(number: int, total: int, photo_uri: str, choices: list[str], round_index: int) -> dbc.Card:
    buttons = [dbc.Button(text, id={"type": "challenge-choice", "round": round_index, "index": i},
                          color="primary", outline=True, size="lg", n_clicks=0, className="challenge-choice")
               for i, text in enumerate(choices)]
    return dbc.Card([
        dbc.CardHeader(f"Photo {number} of {total}", className="fs-5"),
        dbc.CardBody(dbc.Row([
            dbc.Col(html.Img(src=photo_uri, alt=f"photo {number}", className="challenge-photo"), xs=12, md=7),
            dbc.Col([
                html.H3("What does this photo show?", className="h4 mb-3"),
                html.Div(buttons, className="challenge-choices d-grid gap-2"),
            ], xs=12, md=5),
        ], className="g-3 align-items-center")),
    ], id="challenge-round", className="mb-3")


def _verdict(right: bool, text: str) -> html.Div:
    icon, color = ("check-circle-fill", "text-success") if right else ("x-circle-fill", "text-danger")
    return html.Div([html.I(className=f"bi bi-{icon} me-2 {color}"), text], className="fs-5 mb-1")


def map_caption(method_name: str, label: str) -> str:
    return (f"{method_name}: red and yellow mark the parts of the photo that made the AI answer "
            f"“{label}” the most; blue parts hardly counted.")


def reveal_view(r: dict) -> dbc.Card:
    """r: number, total, truth, guess, ai, ai_probability, rows (top-5), ai_index, truth_index,
    map_uri or map_error, method_name, last."""
    you_right, ai_right = r["guess"] == r["truth"], r["ai"] == r["truth"]
    verdicts = [
        _verdict(you_right, f"You said “{r['guess']}”: " + ("right!" if you_right else "not this time.")),
        _verdict(ai_right, f"The AI said “{r['ai']}” ({r['ai_probability']:.0%} sure): "
                           + ("right." if ai_right else "wrong.")),
        html.Div(["The answer: ", html.Strong(r["truth"])], className="fs-5"),
    ]
    if r.get("map_uri"):
        where = html.Figure([
            html.Img(src=r["map_uri"], alt=f"where the AI looked: {r['method_name']}", className="challenge-map"),
            html.Figcaption(map_caption(r["method_name"], r["ai"]), className="figure-caption"),
        ], className="figure mb-0")
    else:
        where = dbc.Alert(r.get("map_error") or "No map for this photo.", color="warning")
    top = dcc.Graph(id="challenge-top5", figure=prediction_figure(r["rows"], r["ai_index"],
                                                                   None if ai_right else r["truth_index"]),
                    config={"displayModeBar": False, "responsive": True}, className="challenge-top5")
    legend = "blue: the AI's answer" + ("" if ai_right else "; orange: the right answer, if it is in its top 5")
    label = "See the results" if r["last"] else "Next photo"
    return dbc.Card([
        dbc.CardHeader(f"Photo {r['number']} of {r['total']}: the answer", className="fs-5"),
        dbc.CardBody([
            html.Div(verdicts, className="mb-3"),
            dbc.Row([
                dbc.Col([html.H4("Where the AI looked", className="h5"), where], xs=12, md=7),
                dbc.Col([html.H4("What the AI thought", className="h5"), top,
                         html.Div(legend, className="small text-body-secondary")], xs=12, md=5),
            ], className="g-3"),
            html.Div(dbc.Button([label, html.I(className="bi bi-arrow-right ms-2")],
                                id={"type": "challenge-next", "name": "next"}, color="primary", size="lg",
                                n_clicks=0), className="d-flex justify-content-end mt-3"),
        ]),
    ], id="challenge-reveal", className="mb-3")


def _mistakes(title: str, items: list[dict], none: str, who: str) -> html.Section:
    cards = [html.Figure([
        html.Img(src=i["thumb_uri"], alt=i["name"], className="challenge-thumb") if i.get("thumb_uri")
        else html.Div("no map", className="challenge-thumb"),
        html.Figcaption([html.Strong(i["truth"]), html.Br(), f"{who} said “{i['said']}”"],
                        className="figure-caption small"),
    ], className="figure challenge-mistake", title=i["name"]) for i in items]
    body = html.Div(cards, className="challenge-mistakes") if cards else html.P(none, className="text-body-secondary")
    return html.Section([html.H4(title, className="h5 mt-3"), body])


def summary_view(s: dict) -> dbc.Card:
    """s: you, ai, total, ai_wrong and you_wrong (lists of {name, truth, said, thumb_uri}), method_name."""
    you, ai = s["you"], s["ai"]
    headline = ("You beat the AI!" if you > ai else "The AI wins this time." if ai > you else "A draw!")
    return dbc.Card([
        dbc.CardHeader("The end of the game", className="fs-5"),
        dbc.CardBody([
            html.H3(headline, className="h2", id="challenge-headline"),
            html.P(f"Out of {s['total']} photos you got {you} right, the AI got {ai} right.", className="lead"),
            html.P(f"The small pictures show where the AI looked ({s['method_name']}): red and yellow "
                   "counted most for its answer.", className="small text-body-secondary"),
            html.Div(_mistakes("Where the AI went wrong", s["ai_wrong"], "Nowhere: the AI named every photo right.",
                               "The AI"), id="challenge-ai-wrong"),
            html.Div(_mistakes("Where you went wrong", s["you_wrong"], "Nowhere: you named every photo right.",
                               "You"), id="challenge-you-wrong"),
            html.Div(dbc.Button([html.I(className="bi bi-arrow-repeat me-2"), "Play again"],
                                id={"type": "challenge-next", "name": "again"}, color="primary", size="lg",
                                n_clicks=0), className="d-flex justify-content-end mt-3"),
        ]),
    ], id="challenge-summary", className="mb-3")


def notice(text: str, color: str = "warning") -> dbc.Alert:
    return dbc.Alert([html.I(className="bi bi-exclamation-triangle me-2"), text], color=color,
                     dismissable=True, className="py-2 mb-2 challenge-notice")
