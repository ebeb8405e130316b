"""ImageNet models on real photos: is a vehicle named on vehicle photos, and not on the others?

    .venv/bin/python bench/photos.py [FOLDER] [--models efficientnet-lite0 ...] [--misses]

FOLDER defaults to ../shared/samples/real (beside the repo). Photos whose name starts with
`negative_` hold no vehicle; all others do. For each model (default: every available model of
the registry with ImageNet outputs), through the registry's Explainer.predict, as the app
does: how often a vehicle class (models.imagenet.VEHICLE_CLASSES) comes first and is in the
top 5 on vehicle photos, and how often something else comes first on the negatives. Prints
a Markdown table; --misses also lists the photos each model gets wrong.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explain.image import load_image  # noqa: E402
from models import Registry  # noqa: E402
from models.imagenet import VEHICLE_CLASSES  # noqa: E402
from models.zoo import imagenet_labels  # noqa: E402

DEFAULT_FOLDER = REPO.parent / "shared" / "samples" / "real"
SUFFIXES = (".jpg", ".jpeg", ".png")


def photos(folder: Path) -> list[tuple[str, bool, object]]:
    """(file name, holds a vehicle, uint8 RGB image), sorted by name."""
    return [(p.name, not p.name.startswith("negative_"), load_image(p.read_bytes()))
            for p in sorted(folder.iterdir()) if p.suffix.lower() in SUFFIXES]


def score(explainer, shots) -> dict:
    """Counts over `shots` for one model, plus its misses and seconds per photo."""
    counts = {"first": 0, "top5": 0, "vehicles": 0, "clean": 0, "negatives": 0}
    misses, start = [], time.perf_counter()
    for name, vehicle, image in shots:
        top = explainer.predict(image, top=5)
        first = top[0].index in VEHICLE_CLASSES
        if vehicle:
            counts["vehicles"] += 1
            counts["first"] += first
            counts["top5"] += any(p.index in VEHICLE_CLASSES for p in top)
        else:
            counts["negatives"] += 1
            counts["clean"] += not first
        if first != vehicle:
            misses.append(f"{name}: {top[0].label} {top[0].probability:.2f}")
    counts["seconds"] = (time.perf_counter() - start) / max(len(shots), 1)
    counts["misses"] = misses
    return counts


def _cell(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.0f}%)" if total else "–"


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| model | vehicle first | vehicle in top 5 | non-vehicle first (negatives) "
             "| ms per photo |", "|---|---|---|---|---|"]
    for name, c in rows:
        lines.append(f"| {name} | {_cell(c['first'], c['vehicles'])} | "
                     f"{_cell(c['top5'], c['vehicles'])} | {_cell(c['clean'], c['negatives'])} "
                     f"| {1000 * c['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="registry names (default: every available ImageNet model)")
    p.add_argument("--misses", action="store_true", help="list the photos each model gets wrong")
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        sys.exit(f"error: no folder {args.folder}")
    registry = Registry()
    names = args.models or [i.name for i in registry.list()
                            if i.available and i.num_classes == 1000]
    shots = photos(args.folder)
    print(f"{len(shots)} photos in {args.folder} "
          f"({sum(v for _, v, _ in shots)} with a vehicle)\n")
    rows, imagenet = [], imagenet_labels()
    for name in names:
        explainer = registry.explainer(name)
        if explainer.labels != imagenet:
            print(f"skipped {name}: its classes are not ImageNet's")
            continue
        rows.append((name, score(explainer, shots)))
    print(table(rows))
    if args.misses:
        for name, c in rows:
            print(f"\n{name} misses: " + ("; ".join(c["misses"]) or "none"))


if __name__ == "__main__":
    main()
