"""Black-box methods' throughput against the model's own (run by hand; not part of the tests).

    .venv/bin/python bench/blackbox.py [--model vehicles] [--repeats 3] [--batch-size 16] [--sweep]

For LIME, SHAP, RISE and expected gradients: model evaluations per second of
Explainer.explain(image, [method]) at the default budget (evaluations = Explainer.cost), against
the bare model's batched throughput at the same batch size, measured in the same run, interleaved
(so load from other processes hits both alike): a `tf.function` of `model(x)` on ready-made
inputs for the three masking methods, and of `model(x)` + the gradient to the input for expected
gradients. Target (issue 7): every method >= 80% of its floor.

`--sweep` measures how the default budgets were chosen: per method, the rank correlation
(Spearman) of the map at each budget with a map at 8x the default budget (another seed), over
generated scenes, and the time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain.methods import OPTIONS  # noqa: E402

BUDGET = {"lime": "lime_samples", "shap": "shap_evals", "rise": "rise_masks",
          "expected-gradients": "eg_samples"}


def floors(ex, batch: int):
    """Evaluations of the bare model: forward, and forward + gradient to the input, `n` at a time
    in batches of `batch` on ready inputs."""
    model = ex.model
    spec = tf.TensorSpec([None, *ex.input_size, ex.channels], tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def forward(x):
        return model(x, training=False)

    @tf.function(input_signature=[spec], autograph=False)
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            s = tf.reduce_sum(model(x, training=False)[:, 0])
        return tape.gradient(s, x)

    def runner(fn, x, n):
        full = tf.constant(np.repeat(x, batch, axis=0))

        def run():
            for start in range(0, n, batch):
                k = min(batch, n - start)
                fn(full if k == batch else full[:k]).numpy()
        return run
    return forward, gradient, runner


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(ex, image, repeats: int, batch: int, methods=tuple(BUDGET)) -> list[tuple]:
    forward, gradient, runner = floors(ex, batch)
    x = ex.prepare(image)
    rows = []
    print(f"\n{'method':20s} {'evals':>6s} {'method ev/s':>12s} {'model ev/s':>11s} {'ratio':>6s}")
    for m in methods:
        n = ex.cost([m], batch_size=batch)[m]
        floor = runner(gradient if m == "expected-gradients" else forward, x, n)
        run = lambda: ex.explain(image, [m], batch_size=batch)   # noqa: E731
        run(), floor()   # warm: trace, JIT (SHAP's numba), allocate
        ts, fs = [], []
        for _ in range(repeats):
            fs.append(_timed(floor))
            ts.append(_timed(run))
        t, f = statistics.median(ts), statistics.median(fs)
        rows.append((m, n, n / t, n / f, f / t))
        print(f"{m:20s} {n:6d} {n / t:12.0f} {n / f:11.0f} {f / t:6.2f} "
              f"{'ok' if f / t >= 0.8 else 'UNDER'} (>= 0.80)", flush=True)
    return rows


def sweep(ex, images, methods=tuple(BUDGET), factors=(0.25, 0.5, 1, 2)) -> None:
    """Each budget's map against a map at 8x the default budget (seed 1), mean/min over images:
    Spearman of the raw (signed) maps, and Pearson of the heatmaps (what the app shows)."""
    from scipy.stats import pearsonr, spearmanr
    print(f"\nbudget sweep over {len(images)} scenes (against 8x the default budget, other seed):")
    for m in methods:
        opt = BUDGET[m]
        default = int(OPTIONS[opt].default)
        refs = [ex.explain(im, [m], seed=1, **{opt: 8 * default})[m] for im in images]
        for f in factors:
            n = max(3, int(default * f))
            rho, r, secs = [], [], []
            for im, ref in zip(images, refs):
                t = time.perf_counter()
                res = ex.explain(im, [m], **{opt: n})[m]
                secs.append(time.perf_counter() - t)
                rho.append(spearmanr(res.raw.ravel(), ref.raw.ravel())[0])
                r.append(pearsonr(res.heatmap.ravel(), ref.heatmap.ravel())[0])
            print(f"  {m:20s} {opt}={n:<6d} {statistics.median(secs):6.2f} s  raw spearman mean "
                  f"{np.mean(rho):5.3f} min {np.min(rho):5.3f}  heatmap pearson mean {np.mean(r):5.3f} "
                  f"min {np.min(r):5.3f}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vehicles")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=int(OPTIONS["batch_size"].default))
    p.add_argument("--methods", nargs="+", default=list(BUDGET), choices=list(BUDGET))
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--scenes", type=int, default=4, help="scenes for --sweep")
    args = p.parse_args(argv)
    from models import Registry
    from models.scenes import make_scene
    ex = Registry().explainer(args.model)
    image = make_scene(100, 224).image
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}; model {args.model}, input {ex.input_size}, "
          f"batch {args.batch_size}, image 224x224 scene, {args.repeats} runs (median)")
    bench(ex, image, args.repeats, args.batch_size, args.methods)
    if args.sweep:
        sweep(ex, [make_scene(200 + i, 224).image for i in range(args.scenes)], args.methods)


if __name__ == "__main__":
    main()
