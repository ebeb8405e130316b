"""Explain-engine latency against its own floor (run by hand; not part of the tests).

    .venv/bin/python bench/explain.py [--models resnet50v2 small] [--repeats 9]
                                      [--image-sizes input 640x480] [--scorecam-sweep]

For each model and method: the warm median latency of Explainer.explain(image, [method]), the
median of the bare compiled passes that method needs, and the median ratio of back-to-back pairs
of the two, measured in the same run, interleaved (so load from other processes hits both alike):

- gradient CAMs, CAM, Eigen-CAM, activations: one forward (+ backward to the layer);
- gradients / guided backprop: one forward + backward to the input;
- guided Grad-CAM: both of the above;
- SmoothGrad / integrated gradients: N+1 batched forward + backward passes to the input;
- Score-CAM / occlusion: one forward + N batched forwards.

Targets (issue 3): every method <= 1.3x its floor; the six gradient CAMs together <= 1.5x one
forward + backward. `--scorecam-sweep` measures Score-CAM's top-k channel option: time and the
rank correlation of the top-k map with the all-channel map.
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

from explain import METHODS, Explainer  # noqa: E402
from explain.methods import OPTIONS, blackbox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def resnet() -> tuple[str, Explainer]:
    model = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3))
    pre = keras.applications.resnet_v2.preprocess_input
    return "ResNet50V2 224 (random weights)", Explainer(model, preprocess=pre)


def small() -> tuple[str, Explainer]:
    bundled = ROOT / "models" / "vehicles.keras"
    if bundled.is_file():
        try:
            from models import Registry
            return "vehicles (bundled)", Registry().explainer("vehicles")
        except Exception as e:  # noqa: BLE001 - fall back to the stand-in and say so
            print(f"# vehicles via the registry failed ({e}); loading the file directly")
            model = keras.saving.load_model(bundled, compile=False)
            return "vehicles (file)", Explainer(model, preprocess=lambda x: x / 255.0)
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((128, 128, 3))
    x = L.Rescaling(1 / 255.0)(inp)
    for f in (32, 64, 96, 128):
        x = L.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = L.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(6, activation="softmax")(x)
    return "small CNN 128 stand-in (random weights)", Explainer(keras.Model(inp, out))


class Floors:
    """Bare compiled passes built independently of the engine (keras.Model + GradientTape)."""

    def __init__(self, ex: Explainer, layer: str, batch: int):
        self.ex, self.layer, self.batch = ex, layer, batch
        m = ex.model
        try:
            A = m.get_layer(layer).output if "/" not in layer else None
        except ValueError:
            A = None
        if A is not None:
            gm = keras.Model(m.inputs, [A, m.output])

            def run_layer(x):
                return gm(x, training=False)
        else:   # nested layer: only reachable through the engine's flat graph
            def run_layer(x):
                out, taps = ex.graph.run(x, (layer,), logits=False)
                return taps[layer], out
        spec = tf.TensorSpec([None, *ex.input_size, ex.channels], tf.float32)

        @tf.function(input_signature=[spec], autograph=False)
        def fwd(x):
            return m(x, training=False)

        @tf.function(input_signature=[spec], autograph=False)
        def fb_layer(x):
            with tf.GradientTape() as tape:
                a, o = run_layer(x)
                s = tf.reduce_sum(o[:, 0])
            return tape.gradient(s, a)

        @tf.function(input_signature=[spec], autograph=False)
        def fb_input(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = tf.reduce_sum(m(x, training=False)[:, 0])
            return tape.gradient(s, x)

        # Concrete functions, as the engine calls them: the floor carries no dispatch overhead.
        self.fwd, self.fb_layer, self.fb_input = (f.get_concrete_function() for f in (fwd, fb_layer, fb_input))

    def batched(self, fn, x, n):
        for start in range(0, n, self.batch):
            k = min(self.batch, n - start)
            fn(tf.constant(np.repeat(x, k, axis=0))).numpy()

    def for_method(self, m: str, x: np.ndarray, opts: dict, channels: int):
        """A callable running the bare passes method `m` declares (explain.spec.Method): its shared
        passes, then its own evaluations batched through the pass kind it traces."""
        method, one = METHODS[m], tf.constant(x)
        single = {"cam": self.fb_layer, "grad": self.fb_input, "guided": self.fb_input, "forward": self.fwd,
                  "acts": None if "cam" in method.passes else self.fwd}
        steps = [fn for p in method.passes if (fn := single[p]) is not None]
        n = method.units(self.ex, opts, self.layer) if method.units else 0
        batched = self.fb_input if "grad" in method.traces else self.fwd
        return lambda: ([fn(one).numpy() for fn in steps], n and self.batched(batched, x, n))


#: Model-agnostic methods: measured against batched forward throughput by bench/blackbox.py.
BLACK_BOX = tuple(m.id for m in blackbox.METHODS)
#: The CAMs computed from the layer's forward + backward pass alone: one call shares it.
LAYER_PASS_CAMS = [m.id for m in METHODS.values() if m.passes == ("cam",)]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(name: str, ex: Explainer, repeats: int, image: np.ndarray, only=None) -> list[tuple]:
    opts = {k: o.default for k, o in OPTIONS.items()}
    layer = ex.default_layer
    floors = Floors(ex, layer, opts["batch_size"])
    x = ex.prepare(image)
    channels = int(ex.graph.layers[layer].shape[-1])
    rows = []
    cases = [(m, [m]) for m in METHODS if m not in BLACK_BOX] + [("gradcam-all", LAYER_PASS_CAMS)]
    cases = [c for c in cases if not only or c[0] in only]
    print(f"\n## {name}: input {ex.input_size}, layer {layer} ({channels} channels), "
          f"image {image.shape[1]}x{image.shape[0]}, {repeats} runs (slow methods: {max(3, repeats // 3)})")
    for label, methods in cases:
        floor = floors.for_method(methods[0], x, opts, channels)
        run = lambda: ex.explain(image, methods)   # noqa: E731
        run(), floor()   # warm: trace and allocate
        reps = max(3, repeats // 3) if any(METHODS[m].slow for m in methods) else repeats
        ts, fs = [], []
        for _ in range(reps):
            fs.append(_timed(floor))
            ts.append(_timed(run))
        t, f = statistics.median(ts), statistics.median(fs)
        # Median of the back-to-back pairs' ratios: the machine's drift (other load, clock) hits
        # both halves of a pair alike, so this is steadier than a ratio of medians.
        ratio = statistics.median(a / b for a, b in zip(ts, fs))
        target = 1.5 if label == "gradcam-all" else 1.3
        rows.append((label, t, f, ratio, target))
        print(f"{label:22s} {t * 1000:9.1f} ms  floor {f * 1000:9.1f} ms  ratio {ratio:5.2f}  "
              f"{'ok' if ratio <= target else 'OVER'} (<= {target})", flush=True)
    return rows


def scorecam_sweep(ex: Explainer, images: list[np.ndarray], ks=(8, 16, 32, 64, 128, 256, 0)) -> None:
    """Top-k Score-CAM vs all channels: median time and mean Spearman rank correlation of the raw
    maps (k channels with the largest mean activation), over `images`."""
    from scipy.stats import spearmanr
    channels = int(ex.graph.layers[ex.default_layer].shape[-1])
    ks = sorted({k for k in ks if k < channels} | {0}, key=lambda k: k or 10 ** 9, reverse=True)
    ex.explain(images[0], ["scorecam"], scorecam_top_k=8)
    times = {k: [] for k in ks}
    rhos = {k: [] for k in ks}
    for image in images:
        full = None
        for k in ks:
            t = time.perf_counter()
            raw = ex.explain(image, ["scorecam"], scorecam_top_k=k)["scorecam"].raw
            times[k].append(time.perf_counter() - t)
            full = raw if full is None else full
            rhos[k].append(spearmanr(raw.ravel(), full.ravel())[0])
    print(f"\nScore-CAM top-k sweep over {len(images)} images ({channels} channels; "
          "rank correlation with all channels):")
    for k in reversed(ks):
        print(f"  k={k or channels:>5}  {statistics.median(times[k]):7.2f} s  "
              f"spearman mean {np.mean(rhos[k]):5.3f}  min {np.min(rhos[k]):5.3f}")


def sweep_images(ex: Explainer, fallback: np.ndarray, n: int = 6) -> list[np.ndarray]:
    """Generated scenes (objects the bundled model knows) when the models package is there."""
    try:
        from models.scenes import make_scene
    except ImportError:
        return [fallback]
    return [make_scene(seed, ex.input_size).image for seed in range(100, 100 + n)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50v2", "small"], choices=["resnet50v2", "small"])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--methods", nargs="+", help="only these (ids, or gradcam-all)")
    p.add_argument("--scorecam-sweep", action="store_true")
    p.add_argument("--image-sizes", nargs="+", default=["input", "640x480"], metavar="WxH",
                   help="sizes of the explained image, 'input' = the model's own input size (the "
                        "engine against its passes, the issue's target); heatmaps are made at the "
                        "image's size, so a small model pays visibly for a large photo's resizing")
    args = p.parse_args(argv)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}")
    for which in args.models:
        name, ex = resnet() if which == "resnet50v2" else small()
        for size in args.image_sizes:
            width, height = ex.input_size[::-1] if size == "input" else \
                (int(v) for v in size.lower().split("x"))
            bench(name, ex, args.repeats, noise_image(height, width), args.methods)
        if args.scorecam_sweep:
            image = noise_image(*ex.input_size)
            scorecam_sweep(ex, sweep_images(ex, image) if which == "small" else [image])


def noise_image(height: int, width: int) -> np.ndarray:
    """Deterministic mid-grey noise (no saturated pixels)."""
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.clip(image.astype(int) // 3 + 60, 0, 255).astype(np.uint8))


if __name__ == "__main__":
    main()
