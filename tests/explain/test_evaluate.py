"""The batch evaluation CLI: scenes and folders in, results.csv and summary.md out, one-line errors."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from explain.evaluate import COLUMNS, summarise  # noqa: E402
from models.cli import evaluate_main as main  # noqa: E402
from models.scenes import CLASSES, CONFOUND  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
L = keras.layers


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny 5-class scene classifier saved as a user model file with its sidecar."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(len(CLASSES), activation="softmax", name="head")(x))
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    path.with_name("tiny.keras.json").write_text(json.dumps({"labels": list(CLASSES)}))
    return path


def run(*argv):
    err = io.StringIO()
    return main([str(a) for a in argv], stream=err), err.getvalue()


def read_rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_scenes_write_results_and_summary(model_file, tmp_path):
    out = tmp_path / "run"
    code, err = run("--model", model_file, "--methods", "gradcam,gradients", "--samples", 3,
                    "--steps", 5, "--out", out)
    assert code == 0, err
    assert "100%" in err and "wrote" in err        # progress bar, then where the files are
    rows = read_rows(out)
    assert list(rows[0])[:len(COLUMNS)] == list(COLUMNS)
    assert len(rows) == 6 and [r["method"] for r in rows[:2]] == ["gradcam", "gradients"]
    for r in rows:
        assert r["label"] in CLASSES and r["predicted"] in CLASSES
        assert r["pointing_game"] in ("0", "1")
        assert 0.0 <= float(r["energy_in_mask"]) <= 1.0
        assert 0.0 < float(r["mask_fraction"]) < 1.0
        assert 0.0 <= float(r["deletion_auc"]) <= 1.0 and 0.0 <= float(r["insertion_auc"]) <= 1.0
        assert 0.0 <= float(r["random_deletion_auc"]) <= 1.0
        assert r["verdict"] in ("faithful", "doubt", "unknown")      # no sanity check: never "trust"
    summary = (out / "summary.md").read_text()
    assert "verdicts (explain.verdict)" in summary
    assert "| Grad-CAM |" in summary and "| Vanilla gradients |" in summary
    assert "±" in summary and "3 fresh standard scenes" in summary and "baseline grey;" in summary
    # the table's numbers are the means of the CSV's
    mean = np.mean([float(r["energy_in_mask"]) for r in rows if r["method"] == "gradcam"])
    assert f"{mean:.3f} ±" in summary


def test_deconfounded_scenes_avoid_the_shortcut_background(model_file, tmp_path):
    code, err = run("--model", model_file, "--methods", "gradcam", "--samples", 4,
                    "--scenes", "deconfounded", "--steps", 2, "--target", "label", "--out", tmp_path)
    assert code == 0, err
    for r in read_rows(tmp_path):
        _, seed, cls, background = r["image"].split("-")
        assert CONFOUND[cls] != background
        assert r["target"] == r["label"] == cls


def test_folder_with_masks_and_a_broken_file(model_file, tmp_path):
    images = tmp_path / "pics"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(images / f"{name}.png")
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(images / "a.mask.png")
    (images / "c.jpg").write_bytes(b"not a picture")
    out = tmp_path / "out"
    code, err = run("--model", model_file, "--methods", "gradcam", "--images", images,
                    "--steps", 3, "--baseline", "blur", "--out", out)
    assert code == 0, err
    assert "warning: skipped c.jpg" in err
    rows = {r["image"]: r for r in read_rows(out)}
    assert set(rows) == {"a.png", "b.png"}
    assert rows["a.png"]["mask_fraction"] == f"{200 / 2000:.6g}"
    assert rows["b.png"]["pointing_game"] == rows["b.png"]["energy_in_mask"] == ""
    assert rows["a.png"]["label"] == ""
    assert "baseline blur;" in (out / "summary.md").read_text()


def test_sanity_columns(model_file, tmp_path):
    code, err = run("--model", model_file, "--methods", "gradcam", "--samples", 1, "--steps", 2,
                    "--sanity", "--out", tmp_path)
    assert code == 0, err
    row = read_rows(tmp_path)[0]
    assert -1.0 <= float(row["sanity_spearman"]) <= 1.0 and row["sanity_passed"] in ("0", "1", "")
    summary = (tmp_path / "summary.md").read_text()
    assert "sanity Spearman" in summary and (" 1/1 |" in summary or " 0/1 |" in summary)
    assert row["verdict"] in ("trust", "doubt", "distrust", "unknown")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "gradcam", "--samples", "2"], "required: --model"),
    (["--model", "M", "--methods", "nope", "--samples", "2"], "unknown method 'nope'"),
    (["--model", "M", "--samples", "0"], "--samples must be at least 1"),
    (["--model", "M", "--samples", "2", "--images", "."], "not allowed with argument"),
    (["--model", "M", "--images", "/no/such/dir"], "is not a folder"),
    (["--model", "M", "--images", "EMPTY"], "no png/"),
    (["--model", "M", "--images", "EMPTY", "--scenes", "standard"], "--scenes only applies"),
    (["--model", "M", "--samples", "2", "--steps", "0"], "--steps must be at least 1"),
    (["--model", "M", "--samples", "2", "--baseline", "pink"], "invalid choice: 'pink'"),
    (["--model", "M", "--samples", "2", "--layer", "nope"], "--layer: no layer 'nope'"),
    (["--model", "no-such-model", "--samples", "2"], "No model named 'no-such-model'"),
    (["--model", "/no/such.keras", "--samples", "2"], "no model file /no/such.keras"),
])
def test_bad_input_is_one_line_and_exit_2(model_file, tmp_path, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [str(model_file) if a == "M" else str(tmp_path / "empty") if a == "EMPTY" else a
            for a in argv]
    code, err = run(*argv, "--out", tmp_path / "out")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("evaluate: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_module_runs_from_the_shell(tmp_path):
    """`python -m explain.evaluate`: usable help, and bad input ends with one error line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "explain.evaluate", "--model", "vehicles",
                           "--methods", "gradcam", "--samples", "-3", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "evaluate: error: --samples must be at least 1"


def test_summary_formats_mean_and_spread():
    rows = [{"method": "gradcam", "deletion_auc": d, "insertion_auc": 0.5, "pointing_game": p,
             "energy_in_mask": e, "mask_fraction": 0.2}
            for d, p, e in ((0.1, 1.0, 0.6), (0.3, 0.0, float("nan")))]
    text = summarise(rows, ["gradcam"], ["# title"])
    line = next(x for x in text.splitlines() if x.startswith("| Grad-CAM"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == f"0.200 ± {np.std([0.1, 0.3], ddof=1):.3f}"
    assert cells[3] == "0.500 ± 0.707"
    assert cells[4] == "0.600 ± 0.000 (n=1)"          # a blank map's NaN is left out, and said so
    assert cells[5] == "0.200 ± 0.000"
