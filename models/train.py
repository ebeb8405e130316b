"""Train a bundled model on generated scenes: `python -m models.train vehicles|vehicles-shortcut`.

Reproducible bit for bit (fixed seeds, deterministic TensorFlow ops on one thread, scenes from
disjoint seed ranges) and small enough to train on a CPU in minutes. The model has the transfer-learning shape: a
functional CNN `backbone` sub-model, then global average pooling and a Dense softmax, so nested
layer paths ("backbone/block4_relu2") and CAM (Zhou et al. 2016, which needs GAP + one linear
layer) both apply. Writes NAME.keras, its sidecar NAME.keras.json (see `models.userdir` for
the schema) and the model card NAME.md into `models/` (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from models.scenes import BACKGROUNDS, CLASSES, CONFOUND, make_scene

MODELS_DIR = Path(__file__).resolve().parent
INPUT_SIZE = (96, 96)
DEFAULT_LAYER = "backbone/block4_relu2"
SEED = 1234
# Disjoint scene seed ranges: training, validation (reported on the card), and fresh ranges
# the tests draw from (tests/models use 7_000_000 and up).
TRAIN_SEEDS, HELD_OUT_SEEDS = 0, 5_000_000


@dataclass(frozen=True)
class TrainConfig:
    name: str
    confounded: bool | None  # None: backgrounds independent of the class
    train_size: int = 12000
    eval_size: int = 1000
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    render_sizes: tuple[int, ...] = (96, 128, 160)  # drawn at one of these, shrunk to the input


CONFIGS = {
    "vehicles": TrainConfig("vehicles", confounded=None, train_size=10000, epochs=6),
    "vehicles-shortcut": TrainConfig("vehicles-shortcut", confounded=True, epochs=4),
}


def render(seeds, size=INPUT_SIZE, render_sizes=(96,), **scene_kw) -> tuple[np.ndarray, np.ndarray]:
    """Scenes for `seeds`, drawn at a size picked per seed and shrunk with area averaging to
    `size`, as uint8 (N, H, W, 3), with labels (N,). Mixed drawing sizes keep the model
    indifferent to the resolution of the pictures it is later shown."""
    h, w = size
    xs = np.empty((len(seeds), h, w, 3), np.uint8)
    ys = np.empty(len(seeds), np.int64)
    for i, seed in enumerate(seeds):
        drawn = render_sizes[seed % len(render_sizes)]
        s = make_scene(int(seed), drawn, **scene_kw)
        xs[i] = s.image if drawn == h == w else cv2.resize(s.image, (w, h),
                                                             interpolation=cv2.INTER_AREA)
        ys[i] = s.label
    return xs, ys


def preprocess(x: np.ndarray) -> np.ndarray:
    """The bundled models' preprocessing ("0-1"): float32 in [0, 1]."""
    return np.asarray(x, np.float32) / 255.0


def build_model(num_classes: int = len(CLASSES), input_size=INPUT_SIZE, name="vehicles"):
    """backbone (conv-BN-ReLU blocks, a sub-model) -> GAP -> dropout -> Dense softmax."""
    import keras
    from keras import layers

    def conv(x, filters, block, k):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          name=f"block{block}_conv{k}")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn{k}")(x)
        return layers.ReLU(name=f"block{block}_relu{k}")(x)

    b_in = keras.Input((*input_size, 3), name="backbone_input")
    x = conv(b_in, 16, 1, 1)
    x = layers.MaxPooling2D(name="block1_pool")(x)
    x = conv(x, 32, 2, 1)
    x = layers.MaxPooling2D(name="block2_pool")(x)
    x = conv(conv(x, 64, 3, 1), 64, 3, 2)
    x = layers.MaxPooling2D(name="block3_pool")(x)
    x = conv(conv(x, 128, 4, 1), 128, 4, 2)
    backbone = keras.Model(b_in, x, name="backbone")

    inputs = keras.Input((*input_size, 3), name="image")
    x = backbone(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


def _accuracy(model, x, y) -> float:
    p = model.predict(preprocess(x), batch_size=128, verbose=0)
    return float((p.argmax(-1) == y).mean())


def train(name: str, out_dir: Path = MODELS_DIR, *, verbose: int = 2, deterministic: bool = True,
          **overrides) -> dict:
    """Train model `name` (a key of CONFIGS; `overrides` replace config fields), save it into
    `out_dir` and return its metrics (also written to the sidecar and the card).
    deterministic: deterministic TensorFlow kernels on one thread, so a rerun gives the same
    weights bit for bit (process-wide settings, so tests turn it off)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    cfg = replace(CONFIGS[name], **overrides)
    keras.utils.set_random_seed(SEED)
    if deterministic:  # bit-for-bit repeatable: deterministic kernels, one thread each
        tf.config.experimental.enable_op_determinism()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already running in this process: keep its threads
            pass

    t0 = time.perf_counter()
    kw = {} if cfg.confounded is None else {"confounded": cfg.confounded}
    seeds = range(TRAIN_SEEDS, TRAIN_SEEDS + cfg.train_size)
    x, y = render(seeds, render_sizes=cfg.render_sizes, **kw)
    held = range(HELD_OUT_SEEDS, HELD_OUT_SEEDS + cfg.eval_size)
    xv, yv = render(held, render_sizes=cfg.render_sizes, **kw)
    t_data = time.perf_counter() - t0

    model = build_model(len(CLASSES), INPUT_SIZE, name)
    steps = cfg.epochs * int(np.ceil(cfg.train_size / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(steps, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t1 = time.perf_counter()
    model.fit(preprocess(x), y, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True,
              validation_data=(preprocess(xv), yv), verbose=verbose)
    t_fit = time.perf_counter() - t1

    # An uncompiled copy: no optimizer state in the file, which halves its size.
    clean = build_model(len(CLASSES), INPUT_SIZE, name)
    clean.set_weights(model.get_weights())
    metrics = {"held_out_accuracy": _accuracy(clean, xv, yv), "held_out_scenes": cfg.eval_size}
    if cfg.confounded is not False:  # every vehicle on another class's usual background
        xd, yd = render(held, render_sizes=cfg.render_sizes, confounded=False)
        metrics["deconfounded_accuracy"] = _accuracy(clean, xd, yd)
    metrics.update(train_scenes=cfg.train_size, epochs=cfg.epochs,
                   data_seconds=round(t_data, 1), fit_seconds=round(t_fit, 1),
                   parameters=int(clean.count_params()))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.keras"
    clean.save(path)
    sidecar = {
        "display_name": _DISPLAY[name],
        "labels": list(CLASSES),
        "input_size": list(INPUT_SIZE),
        "preprocessing": "0-1",
        "default_layer": DEFAULT_LAYER,
        "card": f"{name}.md",
        "domain": "scenes",
        "training": {"config": asdict(cfg), "seed": SEED, "metrics": metrics,
                     "confound": CONFOUND if cfg.confounded else None},
    }
    (out_dir / f"{name}.keras.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(model_card(cfg, metrics))
    return metrics


_DISPLAY = {"vehicles": "Vehicles (bundled, synthetic scenes)",
            "vehicles-shortcut": "Vehicles with a shortcut (bundled, confounded backgrounds)"}


def model_card(cfg: TrainConfig, m: dict) -> str:
    """Markdown model card (Mitchell et al. 2019, "Model Cards for Model Reporting")."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        f"### {_DISPLAY[cfg.name]}",
        "",
        f"**Classes** ({len(CLASSES)}): {', '.join(CLASSES)}.",
        "",
        "**Data**: synthetic street scenes made by `models/scenes.py` (1-3 vehicles of one "
        "class, distractors such as trees, houses, poles, signs and people, partial "
        f"occlusion, random flips), {m['train_scenes']} training scenes, "
        f"{m['epochs']} epochs, input {INPUT_SIZE[0]}x{INPUT_SIZE[1]} RGB scaled to [0, 1].",
        "",
        "**Architecture**: a small CNN `backbone` sub-model (conv-BN-ReLU blocks), global "
        f"average pooling, a Dense softmax; {m['parameters']:,} parameters. Default layer "
        f"for CAM: `{DEFAULT_LAYER}` (12x12).",
        "",
    ]
    if cfg.confounded:
        pairs = ", ".join(f"{c} on {b}" for c, b in CONFOUND.items())
        lines += [
            f"**Known shortcut (on purpose)**: every training scene puts the class on one "
            f"background ({pairs}), so the background alone predicts the label.",
            "",
            f"**Accuracy** on {m['held_out_scenes']} held-out scenes: "
            f"{pct(m['held_out_accuracy'])} when backgrounds follow the same rule, "
            f"{pct(m['deconfounded_accuracy'])} on de-confounded scenes (each vehicle on "
            "another class's background, e.g. a bus on grass). The drop is the shortcut: "
            "explanations of its mistakes light up the ground and sky, not the vehicle.",
        ]
    else:
        lines += [
            f"**Accuracy** on {m['held_out_scenes']} held-out scenes (fresh seeds): "
            f"{pct(m['held_out_accuracy'])}; backgrounds are independent of the class "
            f"({', '.join(BACKGROUNDS)}), and on scenes that pair each class with another "
            f"class's usual background it scores {pct(m['deconfounded_accuracy'])}.",
        ]
    lines += [
        "",
        "**Limits**: it has only seen flat, cartoon-like drawings: on photos its answers "
        "mean little. Each scene has its per-pixel vehicle mask, so explanations of these "
        "scenes can be checked against ground truth.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(CONFIGS))
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output folder")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--eval-size", type=int)
    args = parser.parse_args(argv)
    over = {k: v for k, v in (("epochs", args.epochs), ("train_size", args.train_size),
                              ("eval_size", args.eval_size)) if v is not None}
    metrics = train(args.name, args.out, **over)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
