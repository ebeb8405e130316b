"""assets/samples: in step with the generator, and the demonstrations it promises hold."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models import Registry
from models.gallery import OCCLUSION, PLAN, SIZE
from models.scenes import CONFOUND, make_scene

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"


@pytest.fixture(scope="module")
def index():
    return json.loads((SAMPLES / "index.json").read_text())["samples"]


def _png(path, flag=cv2.IMREAD_COLOR):
    image = cv2.imread(str(path), flag)
    assert image is not None, path
    return image


def test_every_sample_is_the_scene_its_seed_draws(index):
    assert [e["file"] for e in index] == [f"{slug}.png" for slug, *_ in PLAN]
    for entry, (_, title, options, deconf) in zip(index, PLAN):
        scene = make_scene(entry["seed"], SIZE, occlusion=OCCLUSION, **options)
        image = cv2.cvtColor(_png(SAMPLES / entry["file"]), cv2.COLOR_BGR2RGB)
        mask = _png(SAMPLES / entry["mask"], cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(image, scene.image), entry["file"]
        assert np.array_equal(mask > 127, scene.mask) and set(np.unique(mask)) <= {0, 255}
        assert (entry["class"], entry["background"], entry["vehicles"], entry["title"]) == (
            scene.class_name, scene.background, scene.n_vehicles, title)
        assert entry["multi"] == (scene.n_vehicles > 1) and entry["deconfounded"] == deconf
        if deconf:
            assert entry["background"] != CONFOUND[entry["class"]]


def test_gallery_has_singles_multis_and_deconfounded_scenes(index):
    assert sum(e["multi"] for e in index) >= 3
    assert sum(e["deconfounded"] for e in index) >= 4
    assert {e["class"] for e in index if not e["multi"]} == set(CONFOUND)
    assert any(e["class"] == "bus" and e["background"] == "grass" for e in index)


def test_the_shortcut_model_is_caught_out_where_the_gallery_says(index, keras_home):
    reg = Registry()
    vehicles, shortcut = reg.explainer("vehicles"), reg.explainer("vehicles-shortcut")
    for entry in index:
        image = cv2.cvtColor(_png(SAMPLES / entry["file"]), cv2.COLOR_BGR2RGB)
        assert vehicles.predict(image, 1)[0].index == entry["label"], entry["file"]
        fooled = shortcut.predict(image, 1)[0].label
        if entry["deconfounded"]:
            background_class = next(c for c, b in CONFOUND.items() if b == entry["background"])
            assert fooled == background_class, entry["file"]
