"""Batch evaluation of explanation methods: the numbers behind "which explanation to trust".

    python -m explain.evaluate --model vehicles --methods gradcam gradients --samples 100 \\
        [--scenes standard|deconfounded] --out runs/vehicles
    python -m explain.evaluate --model vehicles-shortcut --methods gradcam --images photos/ --out runs/x

Images are fresh generated scenes (models.scenes, seeds disjoint from training, each with its
vehicle mask) or every picture in a folder (a mask beside it as `<stem>.mask.png` is used when
present). For each image and method: deletion / insertion AUC (Petsiuk et al. 2018), pointing
game (Zhang et al. 2016) and energy in mask (Wang et al. 2020) where a mask exists, optionally
the sanity check (Adebayo et al. 2018); see explain.metrics. Writes `results.csv` (one row per
image and method) and `summary.md` (mean ± standard deviation per method). Progress goes to
stderr; bad input gives one line `evaluate: error: ...` and exit status 2 (1 for a failure
while running).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, TextIO

import numpy as np

from explain.errors import ExplainError
from explain.metrics import (BASELINES, DEFAULT_BASELINE, RANDOM_MAPS, SANITY_THRESHOLD, energy_in_mask,
                             faithfulness, mask_fraction, pointing_game, sanity_check)
from explain.verdict import LEVELS, verdict
from explain.methods import METHODS

#: First scene seed: apart from the training (0...) and held-out (5e6...) ranges of models.train,
#: the tests' (7e6...) and the sample gallery's (9e6...), so every evaluated scene is new.
SCENE_SEED = 8_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MASK_SUFFIX = ".mask.png"
#: The sanity check merges the model's layers into at most this many randomisation steps.
SANITY_STEPS = 8
COLUMNS = ("image", "method", "label", "predicted", "probability", "target", "deletion_auc",
           "insertion_auc", "random_deletion_auc", "random_insertion_auc", "pointing_game",
           "energy_in_mask", "mask_fraction", "seconds", "verdict")
SANITY_COLUMNS = ("sanity_spearman", "sanity_ssim", "sanity_passed")


class UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


@dataclass
class Sample:
    name: str
    image: np.ndarray                # uint8 (H, W, 3)
    mask: np.ndarray | None = None   # bool (H, W): the object's pixels
    label: int | None = None         # index into the model's labels, when known


# -- image sources ------------------------------------------------------------------------------

def folder_images(folder: Path) -> list[Path]:
    """Picture files directly in `folder` (masks excluded), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.lower().endswith(MASK_SUFFIX))


def folder_samples(paths: Sequence[Path], warn: Callable[[str], None]) -> Iterator[Sample]:
    """Decode each file (explain.image.load_image); undecodable files are skipped with a warning."""
    from explain.image import load_image

    for path in paths:
        try:
            image = load_image(path.read_bytes())
            mask_path = path.with_name(path.stem + MASK_SUFFIX)
            mask = None
            if mask_path.is_file():
                mask = load_image(mask_path.read_bytes()).max(axis=-1) > 127
                if mask.shape != image.shape[:2]:
                    raise ExplainError(f"its mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]}, "
                                       f"the image {image.shape[1]}x{image.shape[0]}")
        except (OSError, ExplainError) as e:
            warn(f"skipped {path.name}: {e}")
            continue
        yield Sample(path.name, image, mask)


# -- the evaluation ------------------------------------------------------------------------------

def evaluate_image(explainer, sample: Sample, methods: Sequence[str], *, layer: str | None = None,
                   target: str = "predicted", steps: int = 20, baseline: str = DEFAULT_BASELINE,
                   score: str = "probability", batch_size: int = 16, sanity: bool = False,
                   sanity_steps: int | None = SANITY_STEPS,
                   progress: Callable[[float], None] | None = None) -> list[dict]:
    """One row per method for one image (see COLUMNS); localisation empty without a mask."""
    top = explainer.predict(sample.image, top=1)[0]
    t = sample.label if target == "label" and sample.label is not None else top.index
    parts = (0.2, 0.8) if not sanity else (0.15, 0.45, 0.4)

    def stage(i):
        start = sum(parts[:i])
        return None if progress is None else (lambda f: progress(start + parts[i] * f))

    results = explainer.explain(sample.image, methods, layer, t, progress=stage(0),
                                batch_size=batch_size)
    heatmaps = {m: r.heatmap for m, r in results.items()}
    faith, rand = faithfulness(explainer, sample.image, heatmaps, t, steps=steps,
                               baseline=baseline, score=score, batch_size=batch_size,
                               progress=stage(1))
    checks = (sanity_check(explainer, sample.image, methods, layer, t, max_steps=sanity_steps,
                           progress=stage(2), batch_size=batch_size) if sanity else {})
    rows = []
    for m in methods:
        row = {"image": sample.name, "method": m,
               "label": "" if sample.label is None else explainer.labels[sample.label],
               "predicted": top.label, "probability": top.probability,
               "target": explainer.labels[t],
               "deletion_auc": faith[m].deletion.auc, "insertion_auc": faith[m].insertion.auc,
               "random_deletion_auc": rand.deletion_auc, "random_insertion_auc": rand.insertion_auc,
               "pointing_game": None, "energy_in_mask": None, "mask_fraction": None,
               "seconds": results[m].seconds, "verdict": None}
        if sample.mask is not None:
            row.update(pointing_game=pointing_game(heatmaps[m], sample.mask),
                       energy_in_mask=energy_in_mask(heatmaps[m], sample.mask),
                       mask_fraction=mask_fraction(sample.mask))
        if sanity:
            c = checks[m]
            row.update(sanity_spearman=c.score, sanity_ssim=float(np.mean(c.ssim)) if c.ssim else None,
                       sanity_passed=c.passed)
        row["verdict"] = verdict(row["deletion_auc"], row["insertion_auc"], rand.deletion_auc,
                                 rand.insertion_auc, checks[m].passed if sanity else "off",
                                 rand.spread).level
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def write_results(rows: Sequence[dict], path: Path, sanity: bool = False) -> None:
    columns = COLUMNS + (SANITY_COLUMNS if sanity else ())
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow([_cell(row.get(c)) for c in columns])


def _stats(values) -> tuple[float, float, int]:
    v = np.array([float(x) for x in values if x is not None and not
                  (isinstance(x, float) and math.isnan(x))], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _fmt(mean: float, sd: float, n: int, total: int) -> str:
    if n == 0:
        return "–"
    text = f"{mean:.3f} ± {sd:.3f}"
    return text if n == total else f"{text} (n={n})"


def summarise(rows: Sequence[dict], methods: Sequence[str], about: Sequence[str],
              sanity: bool = False) -> str:
    """Markdown: what was run, then one table row per method (mean ± sample standard deviation
    over images; n shown when some values are missing, e.g. a blank map's energy)."""
    cols = [("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑"),
            ("pointing_game", "pointing game ↑"), ("energy_in_mask", "energy in mask ↑")]
    if sanity:
        cols += [("sanity_spearman", "sanity Spearman ↓"), ("sanity_passed", "sanity passed")]
    has_mask = any(r.get("mask_fraction") is not None for r in rows)
    head = (["method"] + [c[1] for c in cols] + (["chance (mask area)"] if has_mask else [])
            + ["verdicts (explain.verdict)"])
    lines = list(about) + ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        sub = [r for r in rows if r["method"] == m]
        cells = [METHODS[m].name if m in METHODS else m]
        for key, _ in cols:
            mean, sd, n = _stats(r.get(key) for r in sub)
            if key == "sanity_passed":   # a count reads better than a mean of 0/1
                cells.append(f"{round(mean * n)}/{n}" if n else "–")
            else:
                cells.append(_fmt(mean, sd, n, len(sub)))
        if has_mask:
            cells.append(_fmt(*_stats(r.get("mask_fraction") for r in sub), len(sub)))
        counts = {lv: sum(r.get("verdict") == lv for r in sub) for lv in LEVELS}
        cells.append(", ".join(f"{LEVELS[lv].lower()} {n}/{len(sub)}" for lv, n in counts.items() if n) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- progress bar -----------------------------------------------------------------------------------

class ProgressBar:
    """A one-line bar on a terminal (redrawn with \\r), a line per 10 % otherwise (logs, CI)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 30):
        self.total, self.stream, self.width = max(1, total), stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.last_decile = -1

    def update(self, done: float, note: str = "") -> None:
        frac = min(1.0, max(0.0, done / self.total))
        elapsed = time.monotonic() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        fill = int(round(frac * self.width))
        text = (f"[{'#' * fill}{'.' * (self.width - fill)}] {frac:4.0%} {done:.1f}/{self.total} "
                f"images, {elapsed:.0f}s elapsed" + (f", ~{eta:.0f}s left" if frac > 0 else "")
                + (f"  {note}" if note else ""))
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(150))
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- command line ------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m explain.evaluate",
                description="Score explanation methods over many images (deletion/insertion AUC, "
                            "pointing game, energy in mask; optional sanity check).")
    p.add_argument("--model", required=True,
                   help="registry name (vehicles, vehicles-shortcut, a zoo model) or a .keras/.h5 file")
    p.add_argument("--methods", nargs="+", default=["gradcam"],
                   help=f"method ids, space or comma separated (default gradcam): {', '.join(METHODS)}")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", type=int, help="evaluate N fresh generated scenes with masks")
    src.add_argument("--images", type=Path, help="evaluate every picture in this folder")
    p.add_argument("--scenes", choices=("standard", "deconfounded"),
                   help="with --samples: random backgrounds (standard, default) or every vehicle on a "
                        "background other than its class's shortcut background (deconfounded)")
    p.add_argument("--out", required=True, type=Path, help="folder for results.csv and summary.md")
    p.add_argument("--layer", help="layer for the CAM methods (default: the model's)")
    p.add_argument("--target", choices=("predicted", "label"), default="predicted",
                   help="class to explain: the model's top-1 (default) or the scene's true class")
    p.add_argument("--steps", type=int, default=20, help="deletion/insertion steps (default 20)")
    p.add_argument("--baseline", choices=BASELINES, default=DEFAULT_BASELINE,
                   help=f"what removed pixels become, and insertion starts from (default "
                        f"{DEFAULT_BASELINE}; RISE used black for deletion, blur for insertion)")
    p.add_argument("--score", choices=("probability", "logit"), default="probability",
                   help="curve score (default probability, as in RISE)")
    p.add_argument("--sanity", action="store_true",
                   help="also run the cascading randomisation sanity check per image (slower)")
    p.add_argument("--seed", type=int, default=SCENE_SEED, help=f"first scene seed (default {SCENE_SEED})")
    p.add_argument("--size", type=int, help="scene size in pixels (default: the model's input size)")
    p.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16)")
    return p


def _methods(raw: Sequence[str]) -> list[str]:
    names = [m for item in raw for m in item.replace(",", " ").split()]
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise UsageError(f"unknown method {bad[0]!r}; choose from: {', '.join(METHODS)}")
    if not names:
        raise UsageError("no method given")
    return list(dict.fromkeys(names))


def _check_args(args) -> None:
    if args.samples is not None and args.samples < 1:
        raise UsageError("--samples must be at least 1")
    if args.images is not None:
        if args.scenes:
            raise UsageError("--scenes only applies to --samples")
        if not args.images.is_dir():
            raise UsageError(f"--images: {args.images} is not a folder")
        if not folder_images(args.images):
            raise UsageError(f"--images: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files in {args.images}")
    if args.steps < 1:
        raise UsageError("--steps must be at least 1")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.size is not None and args.size < 8:
        raise UsageError("--size must be at least 8")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a folder")


class Models(Protocol):
    """What the evaluation needs from the model side (models.cli provides it)."""

    def explainer_for(self, spec: str): ...

    def scene_samples(self, n: int, size: tuple[int, int], labels: Sequence[str], scenes: str,
                      seed: int) -> Iterator[Sample]: ...


def run(args, models: Models, stream: TextIO = sys.stderr) -> tuple[list[dict], str]:
    methods = _methods(args.methods)
    _check_args(args)
    try:
        explainer = models.explainer_for(args.model)
    except LookupError as e:
        raise UsageError(f"--model: {e.args[0] if e.args else e}") from None
    if args.layer:
        try:
            explainer.graph.resolve(args.layer)
        except ExplainError as e:
            raise UsageError(f"--layer: {e}") from None
    warnings: list[str] = []
    if args.samples is not None:
        scenes = args.scenes or "standard"
        size = (args.size, args.size) if args.size else explainer.input_size
        total = args.samples
        samples = models.scene_samples(total, size, explainer.labels, scenes, args.seed)
        source = (f"{total} fresh {scenes} scenes ({size[1]}x{size[0]} px, seeds {args.seed}–"
                  f"{args.seed + total - 1})")
    else:
        paths = folder_images(args.images)
        total = len(paths)
        samples = folder_samples(paths, warnings.append)
        source = f"{total} images from {args.images}"
    bar = ProgressBar(total, stream)
    bar.update(0, "loading")
    rows, correct, labelled, done = [], 0, 0, 0
    try:
        for i, sample in enumerate(samples):
            while warnings:
                stream.write(("\n" if bar.tty else "") + "warning: " + warnings.pop(0) + "\n")
            rows += evaluate_image(
                explainer, sample, methods, layer=args.layer, target=args.target, steps=args.steps,
                baseline=args.baseline, score=args.score, batch_size=args.batch_size,
                sanity=args.sanity, progress=lambda f, i=i: bar.update(i + f, sample.name))
            done += 1
            if sample.label is not None:
                labelled += 1
                correct += rows[-1]["predicted"] == explainer.labels[sample.label]
            bar.update(i + 1, sample.name)
    finally:
        bar.close()
    for w in warnings:
        stream.write("warning: " + w + "\n")
    if not rows:
        raise ExplainError("no image could be evaluated")
    about = [f"# Explanation metrics: {args.model}", "",
             f"- images: {source}; evaluated {done}",
             f"- explained class: {'the true class' if args.target == 'label' else 'the top-1 prediction'}"
             + (f"; model accuracy on these images: {correct / labelled:.1%} ({correct}/{labelled})"
                if labelled else ""),
             f"- layer: {args.layer or explainer.default_layer}",
             f"- deletion / insertion (Petsiuk et al. 2018): {args.steps} steps, {args.score} of the "
             f"explained class, baseline {args.baseline}; area under the curve over the share of pixels; "
             f"random = the same for {RANDOM_MAPS} seeded random maps on each image",
             "- pointing game (Zhang et al. 2016): the map's maximum inside the object mask; energy in "
             "mask (Wang et al. 2020): share of the map's mass inside it; chance = the mask's area",
             "- cells: mean ± standard deviation over images; verdicts: per image, better than the random "
             "maps and passing the sanity check = trustworthy (explain.verdict)"]
    if args.sanity:
        about.append("- sanity (Adebayo et al. 2018): Spearman correlation with the trained model's map "
                     "while the layers are re-initialised from the top down, averaged over the cascade "
                     f"(at most {SANITY_STEPS} steps); passed = below {SANITY_THRESHOLD}")
    return rows, summarise(rows, methods, about, args.sanity)


def main(argv: Sequence[str] | None, models: Models, stream: TextIO = sys.stderr) -> int:
    """`python -m explain.evaluate` (models.cli.evaluate_main passes the registry's `models`)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        rows, summary = run(args, models, stream)
        args.out.mkdir(parents=True, exist_ok=True)
        write_results(rows, args.out / "results.csv", args.sanity)
        (args.out / "summary.md").write_text(summary, encoding="utf-8")
    except UsageError as e:
        stream.write(f"evaluate: error: {' '.join(str(e).split())}\n")
        return 2
    except (ExplainError, OSError) as e:
        stream.write(f"evaluate: error: {' '.join(str(e).split())}\n")
        return 1
    except KeyboardInterrupt:
        stream.write("evaluate: interrupted\n")
        return 130
    stream.write(f"wrote {args.out / 'results.csv'} and {args.out / 'summary.md'}\n")
    return 0


if __name__ == "__main__":   # the registry sits above explain: hand over to models.cli by name
    import importlib

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(importlib.import_module("models.cli").evaluate_main())
