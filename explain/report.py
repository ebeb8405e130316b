"""A report to hand out: one self-contained HTML file (every picture embedded as a data URI, no
request leaves it, so it opens offline and prints cleanly to PDF from a browser).

    html = report.to_html(report.Report(title=..., photo=image, model=..., predictions=[...],
                                        panels=[report.Panel(...), ...], reproduce="python -m explain ..."))

Words are for people who are not ML experts: each picture says what its colours mean for the
explained class (`caption`), the method's one plain line comes from its declaration, the paper
is in small print. The app (callbacks.routes) and the CLI (`python -m explain ... --report`)
build the same file.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from explain.captions import describe, legend
from explain.render import colorize, colorize_signed, encode_image
from explain.spec import Method

#: Long side of the pictures embedded in the report (enough for print, small enough to mail).
SIDE = 900


@dataclass
class Panel:
    """One method's picture in the report."""

    name: str                # "Grad-CAM"
    picture: np.ndarray      # uint8 RGB overlay, as shown
    caption: str             # what the colours mean (see `caption`)
    plain: str = ""          # the method in one plain line (its declaration's `plain`)
    paper: str = ""
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    title: str
    photo: np.ndarray                         # uint8 RGB
    model: str                                # display name
    predictions: list[tuple[str, float]]      # (label, probability), best first
    panels: list[Panel]
    model_summary: str = ""                   # what the model is and knows, one or two lines
    explained: str = ""                       # "sports car" (and "rather than convertible")
    colormap: str = "jet"
    signed: bool = False                      # the legend is the diverging one
    compare: list[dict] | None = None         # rows of the Compare verdict, when it was run
    reproduce: str = ""                       # the command line that makes these maps again
    notes: list[str] = field(default_factory=list)


def caption(method: Method, label: str | None, **how) -> str:
    """The plain-words caption of `method`'s map (explain.captions.describe, same keywords), as
    HTML: first letter capitalised, the class names in italics."""
    text = describe(method, label, **how)
    text = html.escape(text[:1].upper() + text[1:], quote=False) + "."
    for name in sorted({n for n in (label, how.get("contrast")) if n}, key=len, reverse=True):
        text = text.replace(f" {html.escape(name, quote=False)}", f" <i>{html.escape(name, quote=False)}</i>")
    return text.replace(" against ", " <b>against</b> ", 1) if how.get("counterfactual") and method.counterfactual \
        else text


def to_html(report: Report) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    top = "".join(
        f"<tr><td>{_e(label)}</td><td class='bar'><span style='width:{100 * p:.1f}%'></span></td>"
        f"<td class='num'>{100 * p:.1f}%</td></tr>" for label, p in report.predictions)
    panels = "".join(_panel(p) for p in report.panels)
    compare = _compare(report.compare) if report.compare else ""
    notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report.title)}</title>
<style>{_CSS}</style></head>
<body><main>
<header><h1>{_e(report.title)}</h1>
<p class="meta">Made with camlens on {created} · model: <b>{_e(report.model)}</b></p></header>
<section class="top">
  <figure class="photo"><img alt="the photo" src="{_uri(report.photo)}"></figure>
  <div><h2>What the model answered</h2><table class="preds">{top}</table>
  <p>Explained below: <b>{report.explained or _e(report.predictions[0][0])}</b>.</p>
  <p class="small">{_e(report.model_summary)}</p></div>
</section>
<section><h2>Why: where the model looked</h2>
<div class="legend"><span>{legend(report.signed)[0]}</span>
<img alt="colour scale" src="{_legend(report.colormap, report.signed)}"><span>{legend(report.signed)[1]}</span></div>
<div class="grid">{panels}</div></section>
{compare}
<section class="small"><h2>How to make these again</h2>
<pre>{_e(report.reproduce)}</pre>{f'<ul>{notes}</ul>' if notes else ''}</section>
</main></body></html>
"""


def _panel(p: Panel) -> str:
    when = "" if p.seconds is None else f" · {p.seconds * 1000:.0f} ms" if p.seconds < 1 else f" · {p.seconds:.1f} s"
    warn = "".join(f"<li>{_e(w)}</li>" for w in p.warnings)
    return (f"<figure class='panel'><img alt='{_e(p.name)}' src='{_uri(p.picture)}'>"
            f"<figcaption><b>{_e(p.name)}</b><span class=small>{when}</span><br>{p.caption}"
            f"{f'<br><span class=small>{_e(p.plain)}</span>' if p.plain else ''}"
            f"{f'<br><span class=paper>{_e(p.paper)}</span>' if p.paper else ''}"
            f"{f'<ul class=warn>{warn}</ul>' if warn else ''}</figcaption></figure>")


def _compare(rows: list[dict]) -> str:
    head = "".join(f"<th>{_e(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<section><h2>Which map to trust</h2><table class='compare'><tr>{head}</tr>{body}</table></section>"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _uri(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    if max(h, w) > SIDE:
        import cv2

        s = SIDE / max(h, w)
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(image, "jpeg", quality=88)).decode("ascii")


def _legend(colormap: str, signed: bool) -> str:
    ramp = np.linspace(-1 if signed else 0, 1, 256, dtype=np.float32)[None].repeat(12, axis=0)
    picture = colorize_signed(ramp) if signed else colorize(ramp, colormap)
    return "data:image/png;base64," + base64.b64encode(encode_image(picture, "png")).decode("ascii")


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#212529;margin:0;background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:1.4rem 0 .6rem}
.meta,.small,.paper{color:#6c757d}.small{font-size:.85rem}.paper{font-size:.75rem;font-style:italic}
.top{display:flex;gap:24px;flex-wrap:wrap}.photo{margin:0;flex:0 1 420px}.photo img{max-width:100%;border-radius:6px}
.preds{border-collapse:collapse;min-width:320px}.preds td{padding:2px 8px 2px 0}
.bar span{display:inline-block;height:10px;background:#0d6efd;border-radius:2px}.bar{width:160px}.num{text-align:right}
.legend{display:flex;align-items:center;gap:8px;font-size:.85rem;color:#6c757d}.legend img{width:240px;height:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.panel{margin:0;border:1px solid #dee2e6;border-radius:6px;padding:8px;break-inside:avoid;page-break-inside:avoid}
.panel img{width:100%;border-radius:4px}.warn{color:#997404;font-size:.8rem;margin:.3rem 0 0;padding-left:1.1rem}
.compare{border-collapse:collapse;font-size:.85rem}.compare td,.compare th{border:1px solid #dee2e6;padding:3px 6px}
pre{white-space:pre-wrap;background:#f8f9fa;padding:8px;border-radius:4px;font-size:.8rem}
@media print{main{padding:0}h2{break-after:avoid}.grid{grid-template-columns:repeat(2,1fr)}}
"""
