"""Plotly figures and result cards, built from already-encoded images.

Figures carry pixels as a compressed PNG/JPEG data URI in a `go.Image` (never a float matrix), so
a 1024x768 overlay costs tens of KB. Hover values come from a coarse (at most `HOVER_CELLS` on the
long side), fully transparent heatmap trace laid over the image: it costs ~10 KB and still tells
the heatmap's value under the pointer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import dcc, html

HOVER_CELLS = 32
TITLE_LINE = 16    # px per line above the image: the title, then the caption's lines
EXPORT_SIDE = (800, 2000)   # the camera PNG's long side: the photo's own, within these bounds


def _colorscale(name: str, stops: int = 16):
    """Plotly's colour scale for a colormap (explain.render.lut), so the colour bar is the very
    table the picture is coloured with (assets/display.js builds the same from the same table)."""
    from explain.render import lut

    table = lut(name)
    at = np.linspace(0, 255, stops).round().astype(int)
    return [[round(float(i) / 255, 4), "rgb({},{},{})".format(*table[i])] for i in at]


@dataclass
class Panel:
    """One result figure's content, as the callbacks computed it."""

    method: str
    title: str                     # the method (bold in the figure)
    subtitle: str                  # what the map shows, in plain words (explain.captions), below it
    image_uri: str                 # data URI of the photo under the map ("" for a mosaic)
    width: int                     # coordinates the hover trace and axes use (the input's pixels)
    height: int
    shown_width: int               # pixels in image_uri (a smaller display copy)
    shown_height: int
    hover: np.ndarray | None = None        # coarse values for hover, (rows, cols)
    hover_label: str = "value"
    hover_text: list | None = None         # optional per-cell text (feature-map channel names)
    colormap: str = "jet"
    colorbar: bool = True
    signed: bool = False           # hover values and colour bar run from -1 to 1 (a diverging map)
    warnings: list[str] = field(default_factory=list)
    filename: str = "camlens"
    revision: str = ""
    #: Regions outlined over the image (LIME's top superpixels): {"path": SVG path in the input's
    #: pixel coordinates, "color": CSS colour}.
    outlines: list[dict] = field(default_factory=list)
    note: str = ""                 # small print beside the title: model, time, fused layers
    caption_lines: int = 1         # the most lines any caption variant takes (room kept above)
    meta: dict = field(default_factory=dict)   # what assets/display.js needs to colour the map
    opacity: float = 0.5
    view: str = "overlay"
    legend: tuple[str, str] = ("less", "more")   # the colour bar's two ends, in words


def coarse(values: np.ndarray, cells: int = HOVER_CELLS) -> np.ndarray:
    """Block-average `values` (H, W) down to at most `cells` on the long side, aspect kept."""
    h, w = values.shape
    step = max(1, int(np.ceil(max(h, w) / cells)))
    rows, cols = int(np.ceil(h / step)), int(np.ceil(w / step))
    padded = np.full((rows * step, cols * step), np.nan, dtype=np.float64)
    padded[:h, :w] = values
    with np.errstate(invalid="ignore"):
        return np.nanmean(padded.reshape(rows, step, cols, step), axis=(1, 3))


def title_height(panel: Panel) -> int:
    return TITLE_LINE * (1 + panel.caption_lines + bool(panel.note)) + 10


def _subtitle(note: str, caption: str) -> str:
    """The small print (model, time) as the first line, then the caption: the caption's last
    words end the title block, and the small print never runs under the mode bar."""
    return (f"<span style='font-size:9px'>{note}</span><br>" if note else "") + caption


def image_figure(panel: Panel) -> go.Figure:
    """The photo (trace "photo") in original-pixel coordinates, the map above it as a layout image
    that assets/display.js colours from the grey pixels in `layout.meta.camlens`, and an invisible
    hover/colour-bar trace."""
    w, h = panel.width, panel.height
    figure = go.Figure()
    if panel.image_uri:
        # go.Image puts pixel centres at x0 + i*dx; the display copy is smaller than the input, so
        # scale it up to input pixels: hover and zoom then speak the input's coordinates.
        dx, dy = w / panel.shown_width, h / panel.shown_height
        figure.add_trace(go.Image(source=panel.image_uri, hoverinfo="skip", name="photo", dx=dx, dy=dy,
                                  x0=dx / 2, y0=dy / 2))
    if panel.hover is not None:
        rows, cols = panel.hover.shape
        dx, dy = w / cols, h / rows
        z = np.round(panel.hover, 3)
        low, high = panel.legend
        ticks = [-1, 0, 1] if panel.signed else [0, 0.5, 1]
        figure.add_trace(go.Heatmap(
            z=z, x0=dx / 2, dx=dx, y0=dy / 2, dy=dy, opacity=0, zmin=-1 if panel.signed else 0, zmax=1,
            colorscale=_colorscale(panel.colormap), showscale=panel.colorbar,
            colorbar={"thickness": 10, "len": 0.9, "outlinewidth": 0, "tickfont": {"size": 9}, "x": 1.0,
                      "xpad": 4, "tickvals": ticks, "ticktext": [low, "0" if panel.signed else "", high]},
            text=panel.hover_text, name="map",
            hovertemplate=("%{text}<br>" if panel.hover_text is not None else "")
            + f"x %{{x:.0f}}, y %{{y:.0f}}<br>{panel.hover_label} %{{z:.2f}}<extra></extra>",
        ))
    annotations = []
    if panel.warnings:
        annotations.append({
            "text": "<br>".join("⚠ " + wrap(w_) for w_ in panel.warnings),
            "xref": "paper", "yref": "paper", "x": 0.01, "y": 0.01, "xanchor": "left", "yanchor": "bottom",
            "showarrow": False, "align": "left", "font": {"size": 10, "color": "#664d03"},
            "bgcolor": "rgba(255,243,205,0.92)", "bordercolor": "#ffda6a", "borderpad": 3,
            "visible": True,
        })
    else:   # a slot for the shared-scale note assets/display.js may add
        annotations.append({"text": "", "visible": False, "xref": "paper", "yref": "paper", "x": 0.01, "y": 0.01,
                            "xanchor": "left", "yanchor": "bottom", "showarrow": False, "align": "left",
                            "font": {"size": 10, "color": "#664d03"}, "bgcolor": "rgba(255,243,205,0.92)",
                            "bordercolor": "#ffda6a", "borderpad": 3})
    meta = {**panel.meta, "method": panel.method, "width": w, "height": h}
    if meta.get("captions"):
        meta["captions"] = {k: _subtitle(panel.note, v) for k, v in meta["captions"].items()}
    figure.update_layout(
        title={"text": f"<b>{panel.title}</b>", "font": {"size": 13}, "x": 0.01, "xanchor": "left",
               "y": 1, "yanchor": "top", "yref": "container", "pad": {"t": 6},
               "subtitle": {"text": _subtitle(panel.note, panel.subtitle), "font": {"size": 11, "color": "#6c757d"}}},
        margin={"l": 0, "r": 0, "t": title_height(panel), "b": 0},
        xaxis={"visible": False, "range": [0, w], "constrain": "domain"},
        yaxis={"visible": False, "range": [h, 0], "scaleanchor": "x", "constrain": "domain"},
        annotations=annotations,
        images=[{"source": "", "xref": "x", "yref": "y", "x": 0, "y": 0, "sizex": w, "sizey": h,
                 "xanchor": "left", "yanchor": "top", "sizing": "stretch", "layer": "above",
                 "opacity": 1 if panel.view == "heatmap" else panel.opacity, "name": "map"}],
        shapes=[{"type": "path", "path": o["path"], "line": {"color": o["color"], "width": 2},
                 "layer": "above"} for o in panel.outlines],
        meta={"camlens": meta},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        dragmode="zoom", hovermode="closest", uirevision=panel.revision or panel.method,
        autosize=True,
    )
    return figure


def wrap(text: str, width: int = 70) -> str:
    """Words in lines of at most `width` characters, joined by <br> (Plotly text has no wrapping)."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def export_size(panel: Panel) -> tuple[int, int, float]:
    """(width, height, scale) of the camera button's PNG: the photo's pixels (long side within
    EXPORT_SIDE) with the title, caption and colour bar, laid out at most 900 px wide and scaled."""
    long_side = max(panel.width, panel.height)
    target = min(max(long_side, EXPORT_SIDE[0]), EXPORT_SIDE[1])
    scale = max(1.0, target / 900)
    image_w, image_h = panel.width * target / long_side / scale, panel.height * target / long_side / scale
    return round(image_w + 60), round(image_h + title_height(panel)), round(scale, 3)


def graph_config(filename: str, size: tuple[int, int, float] | None = None) -> dict:
    image = {"format": "png", "filename": filename, "scale": 2}
    if size:
        image.update(width=size[0], height=size[1], scale=size[2])
    return {
        "displaylogo": False,
        "displayModeBar": "hover",
        "responsive": True,
        "toImageButtonOptions": image,
        # Four buttons: short enough to sit beside the title on a phone.
        "modeBarButtons": [["toImage", "zoom2d", "pan2d", "resetScale2d"]],
    }


def result_card(panel: Panel, description: str = "") -> dbc.Col:
    """One grid cell: the figure, sized by the image's aspect ratio, with a PNG download button."""
    graph = dcc.Graph(
        id={"type": "figure", "method": panel.method},
        figure=image_figure(panel),
        config=graph_config(panel.filename, export_size(panel)),
        style={"aspectRatio": f"{panel.width} / {panel.height + title_height(panel) * panel.width / 360}",
               "width": "100%"},
        className="result-graph",
    )
    return dbc.Col(
        html.Div(html.Div(graph, className="card-body p-1"), className="card h-100 result-card", title=description),
        xs=12, sm=6, lg=4, className="result-col", id={"type": "result", "method": panel.method},
    )


def message_card(method: str, name: str, text: str, color: str = "warning", icon: str = "exclamation-triangle",
                 extra=None) -> dbc.Col:
    """A grid cell in place of a figure: why a method has no map (not applicable, pending, failed)."""
    body = [html.Div([html.I(className=f"bi bi-{icon} me-2"), html.Strong(name)]), html.Div(text, className="small mt-1")]
    if extra is not None:
        body.append(extra)
    return dbc.Col(
        dbc.Alert(body, color=color, dismissable=color != "light", className="h-100 mb-0 result-message"),
        xs=12, sm=6, lg=4, className="result-col", id={"type": "result", "method": method},
    )


def prediction_figure(rows: list[dict], target: int | None, contrast: int | None = None) -> go.Figure:
    """Top-k probabilities as horizontal bars, the explained class highlighted (the "rather than"
    class in orange); click a bar to pick it."""
    rows = list(reversed(rows))  # plotly draws the first category at the bottom
    colors = ["#0d6efd" if r["index"] == target else "#fd7e14" if r["index"] == contrast else "#adb5bd"
              for r in rows]
    figure = go.Figure(go.Bar(
        x=[r["probability"] for r in rows],
        y=[_short(r["label"]) for r in rows],
        orientation="h",
        marker_color=colors,
        customdata=[r["index"] for r in rows],
        text=[f"{r['probability']:.1%}" for r in rows],
        textposition="auto",
        hovertemplate="%{y}: %{x:.2%} (class %{customdata})<extra></extra>",
    ))
    figure.update_layout(
        margin={"l": 0, "r": 8, "t": 22, "b": 0},
        title={"text": "Top-5 predictions", "font": {"size": 12}, "x": 0, "y": 0.99, "yanchor": "top"},
        xaxis={"range": [0, 1], "tickformat": ".0%", "fixedrange": True, "tickfont": {"size": 9}},
        yaxis={"fixedrange": True, "automargin": True, "tickfont": {"size": 11}},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", bargap=0.25,
    )
    return figure


def _short(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def original_view(uri: str, name: str, width: int, height: int, note: str = "") -> html.Div:
    caption = f"{name} · {width}×{height}" + (f" · {note}" if note else "")
    return html.Figure([
        html.Img(src=uri, alt=name, className="img-fluid rounded original-image"),
        html.Figcaption(caption, className="figure-caption small text-truncate", title=caption),
    ], className="figure mb-0 d-block")


def domain_note():
    """Beside the predictions, shown when a model that only knows generated scenes sees a photo
    (callbacks.inputs fills the text and the switch's label)."""
    return dbc.Alert([html.I(className="bi bi-exclamation-triangle me-2"), html.Span(id="domain-text"),
                      dbc.Button(id="domain-switch", size="sm", color="warning", className="ms-2")],
                     id="domain-alert", is_open=False, color="warning", className="small py-2 mb-0")
