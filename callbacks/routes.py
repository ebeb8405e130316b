"""Plain HTTP routes beside the Dash endpoints: the results ZIP and the counters.

GET /download/<token>.zip   every shown result: full-size PNGs (each with its title, the class explained,
                            what the colours mean, the model and a colour bar: explain.export), the heatmaps (.npy, float32 in
                            [0, 1] at the explained image's size), the raw maps, and record.json
                            (model, layer, target, contrast, preprocessing, options) to
                            reproduce them.
GET /report/<token>.html    the same results as one self-contained HTML report to hand out
                            (explain.report: pictures embedded, plain-words captions, prints to PDF).
GET /debug/stats            how often the server ran a model (explain and predict calls), which
                            models are loaded: evidence that display changes re-use the cache.
"""
from __future__ import annotations

import html
import io
import json
import re
import zipfile
from datetime import datetime, timezone

import flask
import numpy as np

from callbacks import render as draw
from callbacks import work
from explain import METHODS, OPTIONS, export, report
from explain.errors import ExplainError
from explain.render import encode_image


def _results(deps, record: dict):
    """What a download is made of: the image, the cached entries, the display, their shared-scale
    factors, the model's info and labels (410/404 when the image or the results are gone)."""
    store, registry = deps.store, deps.registry
    stored = store.image(record["image"])
    if stored is None:
        flask.abort(410, "The image is no longer on the server: upload it again.")
    ctx = work.Context(image=record["image"], model=record["model"], layer=record["layer"],
                       target=record["target"], score=record["score"],
                       counterfactual=record["counterfactual"], options=record["options"],
                       contrast=record.get("contrast"))
    entries = {m: e for m, e in work.cached(store, ctx, record["methods"]).items() if "error" not in e}
    if not entries:
        flask.abort(404, "These results are no longer cached: run them again.")
    display = record["display"]
    factors = draw.shared_factors(entries, display) if display.get("scale") == "shared" else {}
    try:
        info = registry.info(record["model"])
        labels = registry.explainer(record["model"]).labels
    except Exception:  # noqa: BLE001 - the record is still useful without the model's details
        info, labels = None, []
    return stored, entries, display, factors, info, labels


def results_zip(deps, record: dict) -> bytes:
    stored, entries, display, factors, info, labels = _results(deps, record)
    model = info.display_name if info else record["model"]
    buffer = io.BytesIO()
    methods = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("input.png", encode_image(stored.image, "png"))
        for m, entry in entries.items():
            files = [f"{m}.png", f"{m}.npy", f"{m}-raw.npy"]
            archive.writestr(files[0], encode_image(_labelled(stored, entry, display, factors.get(m, 1.0), record,
                                                              labels, model)))
            archive.writestr(files[1], _npy(entry["heatmap"]))
            archive.writestr(files[2], _npy(entry["raw"]))
            maps = entry.get("extra", {}).get("maps")
            if maps is not None:
                files.append(f"{m}-maps.npy")
                archive.writestr(files[-1], _npy(maps))
            methods[m] = {
                "name": METHODS[m].name, "seconds": round(entry["seconds"], 4), "target": entry["target"],
                "layer": entry["layer"], "warnings": entry["warnings"], "files": files,
                "signed": bool(entry.get("signed")),
                "extra": {k: v for k, v in entry.get("extra", {}).items() if not isinstance(v, np.ndarray)},
            }
        target, contrast = record["target"], record.get("contrast")
        summary = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "image": {"file": record.get("name"), "sha256": record["image"],
                      "width": stored.original_size[0], "height": stored.original_size[1],
                      "explained_size": [int(stored.image.shape[1]), int(stored.image.shape[0])]},
            "model": {"name": record["model"],
                      **({"display_name": info.display_name, "source": info.source,
                          "input_size": info.input_size, "preprocessing": info.preprocessing,
                          "num_classes": info.num_classes} if info else {})},
            "layer": " + ".join(_layers(record)) or None,   # as each method's "layer" names them
            "layers": _layers(record),
            "target": {"index": target, "label": labels[target] if 0 <= target < len(labels) else None},
            "contrast": None if contrast is None else
            {"index": contrast, "label": labels[contrast] if 0 <= contrast < len(labels) else None},
            "score": record["score"],
            "counterfactual": record["counterfactual"],
            "options": {**{k: o.default for k, o in OPTIONS.items()}, **record["options"]},
            "display": display,
            "methods": methods,
            "reproduce": _command(record, list(entries)),
        }
        archive.writestr("record.json", json.dumps(summary, indent=2, default=_plain))
    return buffer.getvalue()


def results_report(deps, record: dict) -> str:
    """The shown results as one HTML file to hand out (explain.report)."""
    stored, entries, display, factors, info, labels = _results(deps, record)
    target, contrast = record["target"], record.get("contrast")

    def label(i):
        return _label(labels, i)
    predictions = [(p["label"], p["probability"]) for p in work.predictions(deps.store, deps.registry,
                                                                             record["image"], record["model"])]
    panels = []
    for m, entry in entries.items():
        method, signed = METHODS[m], bool(display.get("signed") and entry.get("signed"))
        panels.append(report.Panel(
            name=method.name, picture=draw.full_picture(stored, entry, display, factors.get(m, 1.0)),
            caption=_caption(record, entry, labels, signed, display.get("cmap", "jet")),
            plain=method.plain, paper=method.paper, seconds=entry["seconds"], warnings=entry["warnings"]))
    explained = f"{label(target)}" + (f" rather than {label(contrast)}" if contrast is not None else "")
    title = f"Why {info.display_name if info else record['model']} says “{label(target)}”"
    summary = ""
    if info is not None:
        summary = (f"{info.display_name}: {info.num_classes} classes, input {info.input_size[1]}×"
                   f"{info.input_size[0]}" if info.input_size else info.display_name)
        summary += f"; it knows {info.domain}." if getattr(info, "domain", None) else "."
    return report.to_html(report.Report(
        title=title, photo=stored.image, model=info.display_name if info else record["model"],
        predictions=predictions, panels=panels, model_summary=summary, explained=explained,
        colormap=display.get("cmap", "jet"), signed=bool(display.get("signed")),
        reproduce=_command(record, list(entries)),
        notes=[f"Image: {record.get('name') or 'upload'} (SHA-256 {record['image'][:16]}…), "
               f"{stored.original_size[0]}×{stored.original_size[1]} px."]))


def _label(labels: list[str], i) -> str:
    return labels[i] if i is not None and 0 <= i < len(labels) else f"class {i}"


def _caption(record: dict, entry: dict, labels: list[str], signed: bool, colormap: str = "jet") -> str:
    """What one map's colours mean, in plain words (HTML: names in italics); report and PNGs alike."""
    method, contrast = METHODS[entry["method"]], record.get("contrast")
    return report.caption(method, _label(labels, entry["target"]), mode=entry.get("mode", "relu"),
                          counterfactual=record["counterfactual"],
                          contrast=_label(labels, contrast) if contrast is not None else None,
                          probability=record["score"] == "probability", signed=signed, colormap=colormap)


def _explained(record: dict, entry: dict, labels: list[str]) -> str:
    """The class a map explains, with what changes its meaning: "rather than", counterfactual, score."""
    method, contrast = METHODS[entry["method"]], record.get("contrast")
    if not method.needs_target:
        return "none (this map is the same for every class)"
    text = _label(labels, entry["target"])
    if contrast is not None:
        text += f" rather than {_label(labels, contrast)}"
    if record["counterfactual"] and method.counterfactual:
        text += " (counterfactual: what speaks against it)"
    return text + f"; score: {record['score']}"


def _labelled(stored, entry: dict, display: dict, factor: float, record: dict, labels: list[str],
              model: str):
    """One result's full-size picture with its title, class, caption, model and colour bar."""
    signed = draw.drawn_signed(entry, display)
    caption = html.unescape(re.sub(r"<[^>]+>", "", _caption(record, entry, labels, signed, display.get("cmap", "jet"))))
    return export.labelled(draw.full_picture(stored, entry, display, factor), title=METHODS[entry["method"]].name,
                           explained=_explained(record, entry, labels), caption=caption, model=model,
                           colormap=draw.SIGNED_COLORMAP if signed else display.get("cmap", "jet"),
                           signed=signed)


def linked_record(deps, token: str, what: str) -> dict:
    """The record a ZIP or report link names, with the display the link carries; 404 when gone."""
    record = deps.store.record(token)
    if record is None:
        flask.abort(404, f"This {what} link has expired: show the results again.")
    return shown_display(record, flask.request.args)


def shown_display(record: dict, args) -> dict:
    """The record with the display the link carries (the page adds what is shown to the link in the
    browser, assets/display.js); a link without one keeps the display the results were drawn with."""
    if "cmap" not in args:
        return record
    try:
        display = draw.clean_display(args.get("cmap"), args.get("opacity"), args.get("view"), args.get("scale"),
                                     args.get("signed") == "1")
    except ExplainError as error:
        flask.abort(400, str(error))
    return {**record, "display": display}


def _command(record: dict, methods: list[str]) -> str:
    parts = ["python -m explain input.png", f"--model {record['model']}"]
    if any(METHODS[m].needs_layer for m in methods) and _layers(record):
        parts.append(f"--layer {' '.join(_layers(record))}")
    parts += [f"--method {' '.join(methods)}", f"--target {record['target']}", f"--score {record['score']}"]
    if record.get("contrast") is not None:
        parts.append(f"--contrast {record['contrast']}")
    if record["counterfactual"]:
        parts.append("--counterfactual")
    parts += [f"--option {name}={value}" for name, value in sorted(record["options"].items())]
    return " ".join(parts)


def _layers(record: dict) -> list[str]:
    """The record's layers (a list; one path in records made before layer fusion)."""
    layer = record.get("layer")
    return [layer] if isinstance(layer, str) else list(layer or [])


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.float32))
    return buffer.getvalue()


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def register(deps) -> None:
    server = deps.app.server
    from dash import Input, Output

    # The report link follows the ZIP link in the browser (same token): no server trip.
    deps.app.clientside_callback(
        """function (href, cls) {
            return [href ? href.replace('/download/', '/report/').replace(/\.zip(\?|$)/, '.html$1') : '',
                    (cls || '') + ' ms-2'];
        }""",
        Output("download-report", "href"), Output("download-report", "className"),
        Input("download-zip", "href"), Input("download-zip", "className"))

    @server.route("/download/<token>.zip")
    def download_zip(token):
        record = linked_record(deps, token, "download")
        data = results_zip(deps, record)
        return flask.send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True,
                               download_name=f"camlens-{record['model']}-{token[:8]}.zip")

    @server.route("/report/<token>.html")
    def download_report(token):
        record = linked_record(deps, token, "report")
        return flask.Response(results_report(deps, record), mimetype="text/html",
                              headers={"Content-Disposition":
                                       f'attachment; filename="camlens-report-{token[:8]}.html"'})

    @server.route("/debug/stats")
    def stats():
        counts = deps.store.counts()
        return flask.jsonify(explain_calls=counts.get("explain", 0), predict_calls=counts.get("predict", 0),
                             loaded_models=deps.registry.loaded())
