"""Signed maps on the page and "rather than" (contrast) classes, without a browser: drawing,
cache keys, URL state, the ZIP record."""
import io
import json
import zipfile

import numpy as np
import pytest

from app import Config, create_app
from callbacks import render, results, urlstate, work
from explain.errors import ExplainError


@pytest.fixture
def deps(tmp_path, user_models):
    return create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models)).camlens


class Stored:
    def __init__(self, image):
        self.image = self.display = image


def entry(raw, signed=True, method="integrated-gradients", **more):
    raw = np.asarray(raw, np.float32)
    heat = np.abs(raw) / np.abs(raw).max()
    return {"method": method, "heatmap": heat, "raw": raw, "seconds": 0.01, "target": 1, "layer": None,
            "warnings": [], "extra": {}, "signed": signed, "mode": "magnitude", **more}


def test_a_signed_entry_is_drawn_red_where_it_raised_the_score_and_blue_where_it_lowered_it():
    raw = np.zeros((8, 8), np.float32)
    raw[:, :4], raw[:, 4:] = 2.0, -1.0
    base = np.full((16, 16, 3), 128, np.uint8)
    display = {"cmap": "jet", "opacity": 1.0, "view": "heatmap", "signed": True}
    picture, values, signed = render.shown(base, entry(raw), display, 1.0)
    assert signed and values.min() == pytest.approx(-0.5) and values.max() == pytest.approx(1.0)
    red, blue = picture[8, 2].astype(int), picture[8, 13].astype(int)
    assert red[0] > red[2] + 60 and blue[2] > blue[0] + 60
    # Off: the same entry drawn as before, from its [0, 1] heatmap with the chosen colour map.
    plain, heat, signed = render.shown(base, entry(raw), {**display, "signed": False}, 1.0)
    assert not signed and heat.min() >= 0
    # An unsigned entry stays unsigned with the switch on.
    assert not render.shown(base, entry(raw, signed=False, method="gradcam"), display, 1.0)[2]


def test_a_signed_panel_has_a_colour_bar_from_minus_one_to_one_and_says_what_the_colours_mean():
    raw = np.linspace(-1, 3, 64, dtype=np.float32).reshape(8, 8)
    stored = Stored(np.full((16, 16, 3), 128, np.uint8))
    display = {"cmap": "viridis", "opacity": 0.5, "view": "overlay", "signed": True}
    panel = render.panel(stored, entry(raw), display, ["car", "bus", "truck"], 1.0, "r")
    assert panel.signed and panel.colormap == "rdbu"
    words = panel.subtitle.replace("<br>", " ")
    assert words == "red: the parts of the photo that raised the model's score for bus; blue: the parts that lowered it"
    from layouts.figures import image_figure
    bar = image_figure(panel).data[1]
    assert bar.zmin == -1 and bar.zmax == 1 and bar.showscale
    contrasted = render.panel(stored, entry(raw, contrast=2), display, ["car", "bus", "truck"], 1.0, "r")
    assert contrasted.subtitle.replace("<br>", " ").endswith("favour bus rather than truck; blue: the parts that favour truck")
    unsigned = render.panel(stored, entry(raw, contrast=2), {**display, "signed": False}, ["car", "bus", "truck"],
                            1.0, "r")
    assert unsigned.subtitle.replace("<br>", " ").endswith("made the model prefer bus rather than truck") \
        and not unsigned.signed
    # The browser switches captions without the server: each variant is in the figure's meta.
    assert panel.meta["captions"]["signed"] == panel.subtitle and "viridis" in panel.meta["captions"]


def test_shared_scale_of_signed_maps_uses_their_largest_size():
    a, b = entry(np.array([[-4.0, 1.0]])), entry(np.array([[2.0, -1.0]]), method="gradient-x-input")
    factors = render.shared_factors({"integrated-gradients": a, "gradient-x-input": b}, {"signed": True})
    assert factors == {"integrated-gradients": 1.0, "gradient-x-input": 0.5}


def test_url_state_round_trips_the_contrast_and_the_signed_display():
    values = {"model": "vehicles", "layer": "conv", "contrast": 2, "signed": True, "cmap": "cividis"}
    query = urlstate.build(values)
    assert "contrast=2" in query and "signed=1" in query
    assert urlstate.parse(query) == values
    assert urlstate.build({"model": "m", "contrast": None, "signed": False}) == "?model=m"
    assert urlstate.parse("?contrast=-1&signed=yes") == {}
    assert urlstate.parse("?contrast=0")["contrast"] == 0


def test_the_same_class_as_rather_than_is_refused(deps, images):
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    image = {"key": stored.key}
    with pytest.raises(ExplainError, match="another class"):
        results.make_context(deps.store, deps.registry, image, "tiny-gap.keras", "conv_b", 1, "logit", False,
                             [], [], 1)
    ctx = results.make_context(deps.store, deps.registry, image, "tiny-gap.keras", "conv_b", 1, "logit", False,
                               [], [], 0)
    assert ctx.contrast == 0 and ctx.key("gradcam") != work.Context(**{**vars(ctx), "contrast": None}).key("gradcam")


def test_a_contrast_run_is_signed_and_the_zip_records_it(deps, images):
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=2, contrast=0)
    entries = work.compute(deps.store, deps.registry, ctx, ["gradcam", "gradients"])
    assert entries["gradcam"]["signed"] and entries["gradcam"]["contrast"] == 0
    assert not entries["gradients"]["signed"]   # |gradient|: no sign to show
    display = {"cmap": "jet", "opacity": 0.5, "view": "overlay", "scale": "shared", "signed": True}
    token = deps.store.put_record({
        "image": stored.key, "name": "small.png", "model": "tiny-gap.keras", "layer": "conv_b", "target": 2,
        "contrast": 0, "score": "logit", "counterfactual": False, "options": {},
        "methods": ["gradcam", "gradients"], "display": display})
    response = deps.app.server.test_client().get(f"/download/{token}.zip")
    assert response.status_code == 200
    record = json.loads(zipfile.ZipFile(io.BytesIO(response.data)).read("record.json"))
    assert record["contrast"] == {"index": 0, "label": "car"}
    assert "--target 2" in record["reproduce"] and "--contrast 0" in record["reproduce"]
    assert record["methods"]["gradcam"]["signed"] and not record["methods"]["gradients"]["signed"]
