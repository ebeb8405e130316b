"""Command line: explain one image with one model (`python -m explain`, see models.cli).

    python -m explain IMAGE [--model NAME_OR_FILE] [--layer L ...] [--method M ...] [--target K]
                            [--contrast K] [--score logit|probability] [--counterfactual]
                            [--option NAME=VALUE ...] [--colormap C] [--opacity A] [--out DIR]
                            [--report]

Writes METHOD.png (overlay) and METHOD.npy (heatmap) per method and summary.json (predictions,
layer, target, each method's time and warnings). Any bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TF start-up chatter is noise here


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line instead of usage + message, as every other bad input
        raise ExplainInputError(f"{message} (see --help)")


def _opacity(text: str) -> float:
    value = float(text)   # argparse turns a ValueError into "invalid _opacity value"
    if not 0.0 <= value <= 1.0:   # NaN too
        raise argparse.ArgumentTypeError(f"opacity must be between 0 and 1, not {text}")
    return value


def _parser(default_model: str | None) -> argparse.ArgumentParser:
    from explain.methods import DEFAULT_METHODS, METHODS
    from explain.render import COLORMAPS
    p = _Parser(prog="python -m explain", description="Explain a Keras image classifier's "
                                "prediction for one image.", formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="methods:\n" + "\n".join(f"  {m.id:22} {m.plain}" for m in METHODS.values()))
    p.add_argument("image", help="image file (PNG, JPEG, ...)")
    p.add_argument("--model", default=default_model, required=default_model is None,
                   help=f"registry name (your own models by name too) or a .keras/.h5 file "
                        f"(default: {default_model})")
    p.add_argument("--layer", action="extend", nargs="+", metavar="L",
                   help="layer path for CAM methods, e.g. resnet50v2/conv5_block3_out; several: "
                        "the CAM family fuses their maps (mean of the per-layer normalised maps)")
    p.add_argument("--method", dest="methods", action="extend", nargs="+", metavar="M",
                   help=f"one or more of the methods below (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--target", type=int, help="class index to explain (default: the top-1 class)")
    p.add_argument("--contrast", type=int, help="explain why the target rather than this class "
                   "(score = S_target - S_contrast)")
    p.add_argument("--score", choices=("logit", "probability"), default="logit")
    p.add_argument("--counterfactual", action="store_true", help="explain evidence against the target")
    p.add_argument("--colormap", default="jet", choices=tuple(COLORMAPS),
                   help="the overlays' colours (viridis to cividis are perceptually uniform; "
                        "cividis also reads with red-green colour blindness)")
    p.add_argument("--opacity", type=_opacity, default=0.5, help="0 (photo only) to 1 (map only)")
    p.add_argument("--option", dest="options", action="append", default=[], metavar="NAME=VALUE",
                   help="a method option, repeatable, e.g. occlusion_patch=16 (see explain.OPTIONS)")
    p.add_argument("--out", default="explain-out", help="output folder (created)")
    p.add_argument("--report", action="store_true",
                   help="also write report.html: one self-contained file to hand out (prints to PDF)")
    return p


class ExplainInputError(Exception):
    """A bad command-line input found before anything is loaded."""


def _load_image(path: str):
    from explain.image import load_image

    return load_image(Path(path).read_bytes())


def _options(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs; the engine checks names and converts numbers."""
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ExplainInputError(f"--option takes NAME=VALUE, not {pair!r}")
        options[name.strip()] = value.strip()
    return options


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; keep stderr for our one line."""
    if "tensorflow" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # captured stderr (tests): nothing to hide
        import tensorflow  # noqa: F401
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def run(argv, explainer_for: Callable[[str], object], default_model: str | None = None) -> int:
    """The CLI with `explainer_for(name_or_file)` giving the explainer (models.cli passes the
    registry's); returns the exit status."""
    try:
        args = _parser(default_model).parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)   # the report's reproducing line
        if not Path(args.image).is_file():
            raise ExplainInputError(f"no image file {args.image}")
        args.options = _options(args.options)
        _import_tensorflow_quietly()
        return _run(args, explainer_for)
    except Exception as e:   # noqa: BLE001 - the CLI's contract: one line, non-zero exit
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        msg = " ".join(str(msg).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


def _run(args, explainer_for) -> int:
    import numpy as np

    from explain import render
    from explain.methods import DEFAULT_METHODS

    image = _load_image(args.image)
    ex = explainer_for(args.model)
    methods = args.methods or list(DEFAULT_METHODS)
    results = ex.explain(image, methods, layer=args.layer, target=args.target, score=args.score,
                         counterfactual=args.counterfactual, contrast=args.contrast, **args.options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for m, r in results.items():
        (out / f"{m}.png").write_bytes(render.encode_image(
            render.overlay(image, r.heatmap, args.colormap, args.opacity)))
        np.save(out / f"{m}.npy", r.heatmap)
    first = next(iter(results.values()))
    layers = {r.layer for r in results.values() if r.layer}
    summary = {
        "image": str(args.image),
        "model": args.model,
        "image_size": list(image.shape[:2]),
        "layer": " + ".join(args.layer) if args.layer
        else (sorted(layers)[0] if len(layers) == 1 else ex.default_layer),
        "target": first.target,
        "target_label": ex.labels[first.target],
        "score": args.score,
        "counterfactual": args.counterfactual,
        "contrast": args.contrast,
        "options": args.options,
        "predictions": [vars(p) for p in ex.predict(image)],
        "methods": {m: {"seconds": round(r.seconds, 4), "layer": r.layer, "target": r.target,
                        "warnings": r.warnings, "png": f"{m}.png", "npy": f"{m}.npy"}
                    for m, r in results.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.report:
        (out / "report.html").write_text(_report(args, ex, image, results, summary), encoding="utf-8")
    print(f"{len(results)} method(s) -> {out}/ (target {first.target}: {ex.labels[first.target]})")
    return 0


def _report(args, ex, image, results, summary) -> str:
    """report.html (explain.report) for this run, with the line that reproduces it."""
    from explain import METHODS, render, report

    labels = ex.labels
    target, contrast = summary["target"], args.contrast
    panels = [report.Panel(
        name=METHODS[m].name, picture=render.overlay(image, r.heatmap, args.colormap, args.opacity),
        caption=report.caption(METHODS[m], labels[r.target], mode=r.mode, counterfactual=args.counterfactual,
                               contrast=labels[contrast] if contrast is not None else None,
                               probability=args.score == "probability", colormap=args.colormap),
        plain=METHODS[m].plain, paper=METHODS[m].paper, seconds=r.seconds, warnings=r.warnings)
        for m, r in results.items()]
    explained = labels[target] + (f" rather than {labels[contrast]}" if contrast is not None else "")
    return report.to_html(report.Report(
        title=f"Why {args.model} says “{labels[target]}”", photo=image, model=args.model,
        predictions=[(p["label"], p["probability"]) for p in summary["predictions"]], panels=panels,
        explained=explained, colormap=args.colormap,
        reproduce="python -m explain " + " ".join(args.argv)))
