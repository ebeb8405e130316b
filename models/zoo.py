"""The Keras ImageNet zoo, offline: weights come only from Keras' own download cache.

`keras.applications.X(weights="imagenet")` downloads a file into `$KERAS_HOME/models`
(default `~/.keras/models`) the first time. camlens looks for that same file and builds the
model with `weights=<its path>`, so nothing is ever downloaded: a model whose file is
missing is listed as unavailable with the file name and the folder to put it in. Each
family keeps its own `preprocess_input` and the usual CAM layer as default.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ZooModel:
    name: str            # registry name
    display_name: str
    builder: str         # attribute of keras.applications
    module: str          # keras.applications submodule holding preprocess_input
    weights_file: str    # the file Keras downloads with include_top=True
    default_layer: str
    preprocessing: str   # short text for the UI
    paper: str
    input_size: tuple[int, int] = (224, 224)
    kwargs: dict = field(default_factory=dict)


_TF = "x / 127.5 - 1"
_CAFFE = "RGB→BGR, minus ImageNet mean"


def _mobilenet(alpha: float, text: str) -> ZooModel:
    return ZooModel(
        f"mobilenet-{alpha:g}", f"MobileNet α={alpha:g} (ImageNet)", "MobileNet", "mobilenet",
        f"mobilenet_{text}_224_tf.h5", "conv_pw_13_relu", _TF,
        "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile "
        "Vision Applications", kwargs={"alpha": alpha})


ZOO: tuple[ZooModel, ...] = (
    ZooModel("resnet50v2", "ResNet50V2 (ImageNet)", "ResNet50V2", "resnet_v2",
             "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5", "post_relu", _TF,
             "He et al. 2016, Identity Mappings in Deep Residual Networks"),
    ZooModel("resnet50", "ResNet50 (ImageNet)", "ResNet50", "resnet50",
             "resnet50_weights_tf_dim_ordering_tf_kernels.h5", "conv5_block3_out", _CAFFE,
             "He et al. 2016, Deep Residual Learning for Image Recognition"),
    ZooModel("vgg16", "VGG16 (ImageNet)", "VGG16", "vgg16",
             "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "block5_conv3", _CAFFE,
             "Simonyan & Zisserman 2015, Very Deep Convolutional Networks for Large-Scale "
             "Image Recognition"),
    ZooModel("inceptionv3", "InceptionV3 (ImageNet)", "InceptionV3", "inception_v3",
             "inception_v3_weights_tf_dim_ordering_tf_kernels.h5", "mixed10", _TF,
             "Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision",
             input_size=(299, 299)),
    ZooModel("mobilenetv2", "MobileNetV2 (ImageNet)", "MobileNetV2", "mobilenet_v2",
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", "out_relu", _TF,
             "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks"),
    ZooModel("efficientnetb0", "EfficientNetB0 (ImageNet)", "EfficientNetB0", "efficientnet",
             "efficientnetb0.h5", "top_activation", "none (the model rescales itself)",
             "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural "
             "Networks"),
    ZooModel("xception", "Xception (ImageNet)", "Xception", "xception",
             "xception_weights_tf_dim_ordering_tf_kernels.h5", "block14_sepconv2_act", _TF,
             "Chollet 2017, Xception: Deep Learning with Depthwise Separable Convolutions",
             input_size=(299, 299)),
    ZooModel("densenet121", "DenseNet121 (ImageNet)", "DenseNet121", "densenet",
             "densenet121_weights_tf_dim_ordering_tf_kernels.h5", "relu",
             "x / 255, ImageNet mean/std",
             "Huang et al. 2017, Densely Connected Convolutional Networks"),
    _mobilenet(0.25, "2_5"),
    _mobilenet(0.5, "5_0"),
    _mobilenet(0.75, "7_5"),
    _mobilenet(1.0, "1_0"),
)


def keras_home() -> Path:
    """Keras' cache folder, found the way Keras finds it: $KERAS_HOME, else ~/.keras, else
    /tmp/.keras when the home folder is not writable."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path("~").expanduser()
    if not os.access(home, os.W_OK):
        return Path("/tmp/.keras")
    return home / ".keras"


def weights_path(spec: ZooModel, home: Path | None = None) -> Path:
    return (home or keras_home()) / "models" / spec.weights_file


def missing_reason(spec: ZooModel, home: Path | None = None) -> str:
    folder = weights_path(spec, home).parent
    kw = "".join(f"{k}={v}, " for k, v in spec.kwargs.items())
    return (f"Weights file {spec.weights_file} is not in {folder}. Keras downloads it there "
            f"on first use when online (python -c \"import keras; keras.applications."
            f"{spec.builder}({kw}weights='imagenet')\"); offline, copy the file into that "
            "folder, or set KERAS_HOME to a folder whose models/ subfolder holds it.")


@functools.cache
def imagenet_names() -> tuple[tuple[str, str], ...]:
    """(WordNet id, name) of the 1000 ImageNet classes in Keras' order, shipped in the repo."""
    pairs = json.loads((MODELS_DIR / "imagenet_classes.json").read_text(encoding="utf-8"))
    return tuple((wnid, name) for wnid, name in pairs)


def imagenet_labels() -> list[str]:
    """Readable ImageNet class names ("sports car")."""
    return [name.replace("_", " ") for _, name in imagenet_names()]


class _Preprocess:
    """The family's own keras.applications preprocess_input, on a copy (some modes divide
    in place)."""

    def __init__(self, module: str):
        self.module = module

    def __call__(self, x):
        import numpy as np

        mod = importlib.import_module(f"keras.applications.{self.module}")
        return np.asarray(mod.preprocess_input(np.array(x, np.float32, copy=True)), np.float32)


def preprocess_fn(spec: ZooModel) -> _Preprocess:
    return _Preprocess(spec.module)


def build(spec: ZooModel, path: Path):
    """The model with its ImageNet top, weights from `path` (no download)."""
    import keras

    builder = getattr(keras.applications, spec.builder)
    return builder(weights=str(path), include_top=True, input_shape=(*spec.input_size, 3),
                   **spec.kwargs)


def card(spec: ZooModel, home: Path | None = None) -> str:
    return "\n".join([
        f"### {spec.display_name}",
        "",
        f"**Paper**: {spec.paper}.",
        "",
        f"**Data**: ImageNet-1k (1000 classes); weights from Keras' cache "
        f"(`{weights_path(spec, home)}`), never downloaded by camlens.",
        "",
        f"**Input**: {spec.input_size[0]}x{spec.input_size[1]} RGB; preprocessing "
        f"{spec.preprocessing} (`keras.applications.{spec.module}.preprocess_input`). "
        f"Default layer for CAM: `{spec.default_layer}`.",
        "",
    ])


def download(names: list[str]) -> list[Path]:
    """Fill Keras' cache with these zoo models' ImageNet weights, the way Keras itself does
    (needs internet: the Docker build runs it so the container can then run offline)."""
    by_name = {spec.name: spec for spec in ZOO}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"not a zoo model: {', '.join(unknown)} (choose from {', '.join(by_name)})")
    import keras

    paths = []
    for name in names:
        spec = by_name[name]
        getattr(keras.applications, spec.builder)(weights="imagenet", include_top=True, **spec.kwargs)
        path = weights_path(spec)
        if not path.is_file():
            raise RuntimeError(f"Keras did not leave {spec.weights_file} in {path.parent}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m models.zoo",
                                     description="Download zoo weights into Keras' cache (needs internet).")
    parser.add_argument("names", nargs="+", metavar="NAME", help=", ".join(spec.name for spec in ZOO))
    args = parser.parse_args(argv)
    try:
        for path in download(args.names):
            print(path)
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
