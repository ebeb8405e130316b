"""Model files with an optional sidecar: your own models folder, and the bundled models.

Any `.keras` (Keras 3) or `.h5` (legacy full-model HDF5) file is offered. Beside it, an
optional sidecar `<file>.json` (for `digits.keras`, `digits.keras.json`) says what the file
cannot; every key is optional:

    {
      "display_name": "Digits (MNIST)",   # menu text; default: the file name
      "labels": ["zero", "one", ...],     # one per output; default "class 0".."class N-1"
                                          #   (the ImageNet names when there are 1000 outputs)
      "input_size": [28, 28],             # [height, width]; only needed when the model's input
                                          #   has no fixed size (default then 224x224)
      "preprocessing": "0-1",             # how 0..255 RGB pixels become model input:
                                          #   "0-1"   x / 255 (the default)
                                          #   "-1-1"  x / 127.5 - 1 (Inception, MobileNet)
                                          #   "caffe" RGB->BGR, minus the ImageNet mean (VGG, ResNet50)
                                          #   "torch" x / 255, ImageNet mean/std (DenseNet, PyTorch ports)
                                          #   "none"  0..255 as is (model rescales itself)
      "default_layer": "conv2d_1",        # layer for the CAM methods ("sub/layer" inside nested
                                          #   models); default: the last layer with a spatial map
      "domain": "handwritten digits",     # in plain words, what inputs the model knows
                                          #   ("photos", "scenes", ...); default: not said
      "description": "Markdown text",     # shown as the model card ...
      "card": "digits.md"                 # ... or a Markdown file beside the model
    }

Grayscale models (input with 1 channel) get the picture converted to gray by the explainer.
Loading uses Keras' safe mode, and a model holding a `Lambda` layer (Python code) is refused
before Keras sees it. Checking a file is cheap: the `.keras` architecture is rebuilt from its
`config.json` without weights; only `explainer()` loads the weights.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def _zero_one(x):
    return np.asarray(x, np.float32) / 255.0


def _minus_one_one(x):
    return np.asarray(x, np.float32) / 127.5 - 1.0


def _caffe(x):
    return np.asarray(x, np.float32)[..., ::-1] - _CAFFE_MEAN_BGR


def _torch(x):
    return (np.asarray(x, np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD


def _none(x):
    return np.asarray(x, np.float32)


# name -> (function on float32 (N, H, W, C) 0..255, short text for the UI, needs RGB)
PREPROCESSING: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, bool]] = {
    "0-1": (_zero_one, "x / 255", False),
    "-1-1": (_minus_one_one, "x / 127.5 - 1", False),
    "caffe": (_caffe, "RGB→BGR, minus ImageNet mean", True),
    "torch": (_torch, "x / 255, ImageNet mean/std", True),
    "none": (_none, "none (0..255)", False),
}

MODEL_SUFFIXES = (".keras", ".h5")


class FileProblem(Exception):
    """Why a model file cannot be offered; the message is shown to the user as is."""


@dataclass
class FileModel:
    """What a model file and its sidecar say, checked."""

    path: Path
    display_name: str
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    num_classes: int | None = None
    labels: list[str] | None = None
    preprocessing: str = "0-1"
    default_layer: str | None = None
    card: str | None = None
    domain: str | None = None
    sidecar: dict = field(default_factory=dict)

    @property
    def preprocess(self) -> Callable[[np.ndarray], np.ndarray]:
        return PREPROCESSING[self.preprocessing][0]

    def label_list(self) -> list[str]:
        if self.labels:
            return list(self.labels)
        if self.num_classes == 1000:
            from models.zoo import imagenet_labels
            return imagenet_labels()
        return [f"class {i}" for i in range(self.num_classes or 0)]


def stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime, size, sidecar mtime): an edit to the file or its sidecar invalidates caches."""
    try:
        st = path.stat()
    except OSError:
        return None
    try:
        side = sidecar_path(path).stat().st_mtime_ns
    except OSError:
        side = 0
    return (st.st_mtime_ns, st.st_size, side)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict:
    """The checked sidecar of `path` ({} if absent); FileProblem when it is malformed."""
    side = sidecar_path(path)
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileProblem(f"{side.name} is not valid JSON ({e}).") from None
    if not isinstance(data, dict):
        raise FileProblem(f"{side.name} must hold a JSON object.")
    labels = data.get("labels")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(s, str) for s in labels)):
        raise FileProblem(f"{side.name}: \"labels\" must be a list of strings.")
    size = data.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and v > 0 for v in size)):
        raise FileProblem(f"{side.name}: \"input_size\" must be [height, width] in pixels.")
    prep = data.get("preprocessing", "0-1")
    if prep not in PREPROCESSING:
        raise FileProblem(f"{side.name}: \"preprocessing\" {prep!r} is not one of "
                          f"{', '.join(PREPROCESSING)}.")
    for key in ("display_name", "default_layer", "description", "card", "domain"):
        if key in data and not isinstance(data[key], str):
            raise FileProblem(f"{side.name}: \"{key}\" must be a string.")
    return data


def _has_lambda(config) -> bool:
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            return True
        return any(_has_lambda(v) for v in config.values())
    if isinstance(config, list):
        return any(_has_lambda(v) for v in config)
    return False


LAMBDA_REFUSED = ("holds a Lambda layer, i.e. Python code; camlens loads models in Keras safe "
                  "mode and does not run code from model files. Rebuild it with built-in layers "
                  "(e.g. Rescaling instead of a Lambda) and save it again.")


def read_config(path: Path) -> dict:
    """The architecture stored in the file, without touching weights; FileProblem if the
    file is unreadable, truncated, not a full model, or carries a Lambda layer."""
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as e:
            raise FileProblem(f"{path.name} is not a readable .keras file (truncated or "
                              f"corrupt: {e}). Save the model again with model.save().") from None
    else:
        import h5py
        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
        except OSError as e:
            raise FileProblem(f"{path.name} is not a readable HDF5 file (truncated or corrupt: "
                              f"{str(e).splitlines()[0]}).") from None
        if raw is None:
            raise FileProblem(f"{path.name} holds weights only, no architecture. Save the whole "
                              "model (model.save('name.keras')) to use it here.")
        try:
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError as e:
            raise FileProblem(f"{path.name}: unreadable model config ({e}).") from None
    if _has_lambda(config):
        raise FileProblem(f"{path.name} {LAMBDA_REFUSED}")
    return config


def first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def build_architecture(path: Path, config: dict):
    """The model without its weights for `.keras` (cheap), the whole model for `.h5`
    (Keras 3 rebuilds legacy configs only while loading)."""
    import keras

    try:
        if path.suffix == ".keras":
            return keras.saving.deserialize_keras_object(config, safe_mode=True)
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot use it", said clearly
        raise FileProblem(f"{path.name} cannot be rebuilt by Keras: {first_line(e)}") from None


def _get_layer(model, path: str):
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def check_model(model, fm: FileModel) -> FileModel:
    """Fill `fm` from the model's shapes; FileProblem unless it is a one-image-in,
    class-scores-out classifier consistent with the sidecar."""
    name = fm.path.name
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise FileProblem(f"{name} has {len(model.inputs)} inputs and {len(model.outputs)} "
                          "outputs; camlens explains models with one image in and class "
                          "scores out.")
    ishape = tuple(model.inputs[0].shape)
    oshape = tuple(model.outputs[0].shape)
    if len(ishape) != 4:
        raise FileProblem(f"{name} takes input of shape {ishape}, not a batch of images "
                          "(N, height, width, channels).")
    if ishape[3] not in (1, 3):
        raise FileProblem(f"{name} takes {ishape[3]}-channel images; camlens feeds RGB (3) "
                          "or grayscale (1).")
    if len(oshape) != 2 or not oshape[1]:
        raise FileProblem(f"{name} outputs shape {oshape}, not class scores (N, classes): "
                          "camlens explains classifiers.")
    h, w = ishape[1], ishape[2]
    side = fm.sidecar.get("input_size")
    if side and (h or w) and (h, w) != tuple(side):
        raise FileProblem(f"{name}: sidecar input_size {side} disagrees with the model's "
                          f"fixed input {h}x{w}.")
    fm.input_size = (int(h), int(w)) if h and w else tuple(side) if side else (224, 224)
    fm.channels = int(ishape[3])
    fm.num_classes = int(oshape[1])
    if fm.labels is not None and len(fm.labels) != fm.num_classes:
        raise FileProblem(f"{name}: the sidecar lists {len(fm.labels)} labels but the model "
                          f"has {fm.num_classes} outputs.")
    if fm.channels == 1 and PREPROCESSING[fm.preprocessing][2]:
        raise FileProblem(f"{name}: preprocessing {fm.preprocessing!r} needs RGB, but the "
                          "model takes grayscale images.")
    if fm.default_layer:
        try:
            _get_layer(model, fm.default_layer)
        except (ValueError, AttributeError):
            raise FileProblem(f"{name}: default_layer {fm.default_layer!r} is not a layer of "
                              "the model.") from None
    return fm


def describe(path: Path, sidecar: dict) -> FileModel:
    """A FileModel from the sidecar alone (nothing read from the model file yet)."""
    card = sidecar.get("description")
    if "card" in sidecar:
        folder = path.parent.resolve()
        card_file = (folder / sidecar["card"]).resolve()
        if card_file.parent == folder:  # only a file beside the model, nothing elsewhere
            try:
                card = card_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                pass
    size = sidecar.get("input_size")
    return FileModel(path=path, display_name=sidecar.get("display_name", path.name),
                     input_size=tuple(size) if size else None,
                     labels=sidecar.get("labels"),
                     preprocessing=sidecar.get("preprocessing", "0-1"),
                     default_layer=sidecar.get("default_layer"), card=card,
                     domain=sidecar.get("domain"), sidecar=sidecar)


def inspect_file(path: Path) -> FileModel:
    """Check a model file without loading its weights (`.keras`); FileProblem says why not."""
    fm = describe(path, read_sidecar(path))
    config = read_config(path)
    return check_model(build_architecture(path, config), fm)


def load_file(path: Path) -> tuple[object, FileModel]:
    """Load the model with its weights (safe mode) and check it."""
    import keras

    fm = describe(path, read_sidecar(path))
    read_config(path)  # refuse Lambda layers and broken files before Keras parses them
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001
        raise FileProblem(f"{path.name} cannot be loaded: {first_line(e)}") from None
    return model, check_model(model, fm)


def model_files(folder: Path) -> list[Path]:
    """The model files directly inside `folder`, sorted by name."""
    try:
        return sorted(p for p in folder.iterdir()
                      if p.suffix in MODEL_SUFFIXES and p.is_file())
    except OSError:
        return []
