"""The Compare panel's time against its floor (run by hand; not part of the tests).

    .venv/bin/python bench/compare.py [--models vehicles efficientnet-lite0] [--repeats 5]
                                      [--image-size 640x480]

The grid has computed the chosen methods' heatmaps first (callbacks.work.compute, as the page
does), so Compare must not run them again: it is timed from the cached heatmaps, and the bench
checks that it asked the engine for nothing (the store's `explain` counter). Its floor is the
model passes it cannot avoid, built independently of the engine and timed alone, interleaved
with the runs (median of back-to-back pair ratios):

- deletion / insertion: (methods + random maps) x 2 curves x (steps + 1) forward evaluations
  of the bare model, in batches of 16 on ready inputs;
- sanity check: for each randomisation step of the cascade the bare passes the methods need
  once (one forward + backward to the layer, shared by the CAMs; one to the input for
  gradients); the trained model's maps are the grid's, so they cost nothing.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain import METHODS  # noqa: E402
from explain.metrics import RANDOM_MAPS, _cascade_for, _merge  # noqa: E402

METHODS_BENCHED = ("gradcam", "hirescam", "gradcam++", "gradients")


def _load(name: str):
    """bench/explain.py's Floors (the file shares its name with the engine package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(model: str, repeats: int, image_size: tuple[int, int] | None) -> list[tuple]:
    from app import Config, create_app
    from callbacks import work
    from callbacks.compare import SANITY_STEPS, STEPS, comparison
    from models.scenes import make_scene

    tmp = tempfile.mkdtemp(prefix="camlens-bench-")
    deps = create_app(Config(cache_dir=Path(tmp))).camlens
    store, registry = deps.store, deps.registry
    ex = registry.explainer(model)
    size = image_size or ex.input_size
    image = make_scene(4242, size).image
    stored = store.put_image("b" * 64, image)
    target = work.predictions(store, registry, stored.key, model)[0]["index"]
    ctx = work.Context(image=stored.key, model=model, layer=work.layers_for(registry, model, None),
                       target=int(target))
    methods = list(METHODS_BENCHED)
    work.compute(store, registry, ctx, methods)          # the grid's work, before Compare

    Floors = _load("explain").Floors
    floors = Floors(ex, ctx.layer[0], 16)
    x = ex.prepare(image)
    n_faith = (len(methods) + RANDOM_MAPS) * 2 * (STEPS + 1)
    faith_floor = lambda: floors.batched(floors.fwd, x, n_faith)   # noqa: E731
    kinds = {p for m in methods for p in METHODS[m].passes}
    single = [f for k, f in (("cam", floors.fb_layer), ("grad", floors.fb_input)) if k in kinds]
    runs = len(_merge(_cascade_for(ex, 0).groups, SANITY_STEPS))   # the trained maps are the grid's
    one = tf.constant(x)

    def sanity_floor():
        for _ in range(runs):
            for f in single:
                f(one).numpy()

    cases = [("deletion/insertion", False, faith_floor),
             ("+ sanity check", True, lambda: (faith_floor(), sanity_floor()))]
    print(f"\n## {model}: input {ex.input_size}, image {size[1]}x{size[0]}, methods {', '.join(methods)}; "
          f"{n_faith} masked forwards, sanity {runs} runs x {len(single)} passes; {repeats} runs")
    rows = []
    for label, sanity, floor in cases:
        run = lambda: comparison(store, registry, ctx, methods, sanity=sanity)   # noqa: E731
        before = store.counts().get("explain", 0)
        run(), floor()   # warm: trace, clone the model for the cascade
        ts, fs = [], []
        for _ in range(repeats):
            fs.append(_timed(floor))
            ts.append(_timed(run))
        after = store.counts().get("explain", 0)
        t, f = statistics.median(ts), statistics.median(fs)
        ratio = statistics.median(a / b for a, b in zip(ts, fs))
        again = f", heatmaps recomputed: {after - before}"
        rows.append((model, label, t, f, ratio))
        print(f"{label:20s} {t * 1000:9.1f} ms  floor {f * 1000:9.1f} ms  ratio {ratio:5.2f}{again}",
              flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["vehicles"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image-size", help="WxH of the scene (default: the model's input size)")
    args = p.parse_args(argv)
    size = None
    if args.image_size:
        w, h = (int(v) for v in args.image_size.lower().split("x"))
        size = (h, w)
    for model in args.models:
        bench(model, args.repeats, size)


if __name__ == "__main__":
    main()
