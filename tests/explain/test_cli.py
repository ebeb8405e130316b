"""python -m explain: files written, and one-line errors with a non-zero exit on bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.cli import explain_main as run
from explain_testkit import gap_cnn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model = d / "tiny.keras"
    gap_cnn(seed=6).save(model)
    image = d / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(image)
    (d / "broken.png").write_bytes(b"not an image")
    return d, model, image


def test_cli_writes_overlays_heatmaps_and_summary(files, tmp_path):
    d, model, image = files
    out = tmp_path / "out"
    code = run([str(image), "--model", str(model), "--method", "gradcam", "gradients",
                "--method", "eigencam", "--target", "1", "--out", str(out)])
    assert code == 0
    for m in ("gradcam", "gradients", "eigencam"):
        png = np.asarray(Image.open(out / f"{m}.png"))
        assert png.shape == (30, 45, 3)
        heat = np.load(out / f"{m}.npy")
        assert heat.shape == (30, 45) and heat.dtype == np.float32 and 0 <= heat.min() <= heat.max() <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == 1 and summary["layer"] == "r2"
    assert set(summary["methods"]) == {"gradcam", "gradients", "eigencam"}
    assert summary["methods"]["gradcam"]["seconds"] >= 0
    assert len(summary["predictions"]) == 4 and {"index", "label", "probability"} <= set(summary["predictions"][0])


@pytest.mark.parametrize("args, expect", [
    (["missing.png", "--model", "{model}"], "no image file"),
    (["{broken}", "--model", "{model}"], "image"),
    (["{image}", "--model", "nothing.keras"], "no model file"),
    (["{image}", "--model", "{model}", "--method", "magic"], "unknown method"),
    (["{image}", "--model", "{model}", "--layer", "head"], "no spatial output"),
    (["{image}", "--model", "{model}", "--target", "9"], "target"),
    (["{image}", "--model", "{model}", "--option", "occlusion_patch"], "NAME=VALUE"),
    (["{image}", "--model", "{model}", "--option", "colour=red"], "unknown option 'colour'"),
    (["{image}", "--model", "{model}", "--method", "occlusion", "--option", "occlusion_patch=big"],
     "must be a number"),
    (["{image}", "--model", "{model}", "--contrast", "9"], "contrast"),
    (["{image}", "--model", "{model}", "--opacity", "nan"], "opacity must be between 0 and 1"),
    (["{image}", "--model", "{model}", "--opacity", "1.5"], "opacity must be between 0 and 1"),
    (["{image}", "--model", "{model}", "--opacity", "half"], "opacity"),
    (["{image}", "--model", "{model}", "--colormap", "rainbow"], "invalid choice"),
])
def test_cli_bad_input_one_line_nonzero(files, tmp_path, capsys, args, expect):
    d, model, image = files
    argv = [a.format(model=model, image=image, broken=d / "broken.png") for a in args]
    code = run(argv + ["--out", str(tmp_path / "o")])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and expect in err


def test_cli_method_options_reach_the_engine(files, tmp_path):
    d, model, image = files
    maps = {}
    for patch in (4, 12):
        out = tmp_path / f"p{patch}"
        assert run([str(image), "--model", str(model), "--method", "occlusion",
                    "--option", f"occlusion_patch={patch}", "--option", "occlusion_fill=black",
                    "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["options"] == {"occlusion_patch": str(patch), "occlusion_fill": "black"}
        maps[patch] = np.load(out / "occlusion.npy")
    assert not np.allclose(maps[4], maps[12])


def test_a_model_file_is_read_with_its_sidecar(files, tmp_path):
    d, model, image = files
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "tiny.keras").write_bytes(model.read_bytes())
    (folder / "tiny.keras.json").write_text(json.dumps({"labels": ["cat", "dog", "bus", "car"]}))
    out = tmp_path / "o"
    assert run([str(image), "--model", str(folder / "tiny.keras"), "--target", "2", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["target_label"] == "bus"


def test_python_dash_m_entry_point(files, tmp_path):
    d, model, image = files
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    ok = subprocess.run([sys.executable, "-m", "explain", str(image), "--model", str(model),
                         "--method", "hirescam", "--out", str(tmp_path / "o")],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o" / "hirescam.png").is_file() and (tmp_path / "o" / "summary.json").is_file()


def test_cli_new_methods_on_a_nested_transfer_model(files, tmp_path):
    """CNN Fixations, Ablation-CAM and Eigen-Grad-CAM from the command line on a transfer model: a
    Keras application nested as one layer under a new head (the layer path names the inner layer)."""
    import keras

    d, _, image = files
    base = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(64, 64, 3), alpha=0.25)
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(
        keras.layers.GlobalAveragePooling2D()(base(inputs)))
    path = tmp_path / "transfer.keras"
    keras.Model(inputs, outputs).save(path)
    out = tmp_path / "out"
    code = run([str(image), "--model", str(path), "--method", "cnn-fixations", "ablationcam", "eigengradcam",
                "--layer", f"{base.name}/conv_pw_13_relu", "--option", "ablationcam_top_k=8", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"cnn-fixations", "ablationcam", "eigengradcam"}
    for m in summary["methods"]:
        heat = np.load(out / f"{m}.npy")
        assert heat.shape == (30, 45) and np.isfinite(heat).all()


def test_cli_report_is_one_self_contained_file(files, tmp_path):
    import re

    d, model, image = files
    out = tmp_path / "out"
    assert run([str(image), "--model", str(model), "--method", "gradcam", "eigencam", "--report",
                "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page)
    assert links and all(link.startswith("data:") for link in links)
    assert page.count("<figure class='panel'>") == 2 and "Grad-CAM" in page and "Eigen-CAM" in page
