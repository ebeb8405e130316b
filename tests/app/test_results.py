"""The app's server side without a browser: caching, payload size, ZIP, URL state, jobs."""
import io
import json
import zipfile

import numpy as np
import pytest

from app import Config, create_app
from callbacks import render, urlstate, work
from explain.errors import ExplainError
from layouts.figures import result_card


@pytest.fixture
def deps(tmp_path, user_models):
    return create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models)).camlens


def upload_array(deps, image: np.ndarray):
    from explain.render import encode_image

    return work.upload(deps.store, encode_image(image, "png"), deps.limits)


def test_display_options_redraw_from_the_cache_without_running_the_model(deps, images):
    stored = work.upload(deps.store, images["scene"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=1)
    first = work.compute(deps.store, deps.registry, ctx, ["gradcam", "layercam", "gradients"])
    assert deps.store.counts()["explain"] == 1  # one call for all three
    again = work.compute(deps.store, deps.registry, ctx, ["gradcam", "gradients"])
    assert deps.store.counts()["explain"] == 1
    assert np.array_equal(first["gradcam"]["heatmap"], again["gradcam"]["heatmap"])
    displays = [("jet", 0.5, "overlay"), ("jet", 0.8, "overlay"), ("viridis", 0.5, "overlay"), ("jet", 0.5, "heatmap")]
    # The ZIP's full-size pictures follow the display; the page's figure carries the same grey map
    # whatever the display (the browser colours it: assets/display.js).
    pictures = {render.full_picture(stored, first["gradcam"], {"cmap": c, "opacity": o, "view": v}).tobytes()
                for c, o, v in displays}
    greys = {render.panel(stored, first["gradcam"], {"cmap": c, "opacity": o, "view": v}, ["a"] * 3, 1.0,
                          "r").meta["gray"] for c, o, v in displays}
    assert len(pictures) == 4 and len(greys) == 1 and deps.store.counts()["explain"] == 1
    # A different layer re-runs the layer methods only; the pixel method stays cached.
    other = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_a", target=1)
    assert other.key("gradients") == ctx.key("gradients") and other.key("gradcam") != ctx.key("gradcam")


def test_cache_keys_ignore_what_a_method_does_not_depend_on():
    base = work.Context(image="i", model="m", layer="l1", target=0)
    changed = work.Context(image="i", model="m", layer="l1", target=2, counterfactual=True,
                           options={"smoothgrad_samples": 50})
    assert base.key("activations") == changed.key("activations")      # class-agnostic
    assert base.key("gradients") != changed.key("gradients")          # target matters
    assert work.Context(image="i", model="m", layer="l1", target=0, options={"ig_steps": 8}).key("gradcam") \
        == base.key("gradcam")                                         # another method's option
    assert base.key("smoothgrad") != work.Context(image="i", model="m", layer="l1", target=0,
                                                  options={"smoothgrad_samples": 50}).key("smoothgrad")


def test_form_options_are_validated():
    assert work.clean_options({"smoothgrad_samples": "40", "ig_steps": None, "occlusion_fill": "blur",
                               "ig_baseline": "black"}) == {"smoothgrad_samples": 40, "occlusion_fill": "blur"}
    with pytest.raises(ExplainError, match="whole number"):
        work.clean_options({"ig_steps": 2.5})
    with pytest.raises(ExplainError, match="at least 0"):
        work.clean_options({"scorecam_top_k": -1})


@pytest.mark.parametrize("kind", ["scene", "noise"])
def test_an_overlay_figure_for_a_1024x768_upload_is_under_200_kb(deps, images, kind):
    if kind == "scene":
        stored = work.upload(deps.store, images["scene"].read_bytes(), deps.limits)
    else:  # the worst case for JPEG: every pixel random
        stored = upload_array(deps, np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8))
    assert stored.original_size == (1024, 768)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=0)
    entry = work.compute(deps.store, deps.registry, ctx, ["gradcam"])["gradcam"]
    panel = render.panel(stored, entry, {"cmap": "jet", "opacity": 0.5, "view": "overlay"}, ["car"] * 3, 1.0, "r")
    size = len(json.dumps(result_card(panel).to_plotly_json(), cls=__import__("plotly").utils.PlotlyJSONEncoder))
    assert 10_000 < size < 200_000, size
    assert panel.image_uri.startswith("data:image/jpeg;base64,")


def test_results_zip_holds_pictures_heatmaps_and_a_record(deps, images):
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=2,
                       options={"activations_top_k": 4})
    work.compute(deps.store, deps.registry, ctx, ["gradcam", "activations"])
    token = deps.store.put_record({
        "image": stored.key, "name": "small.png", "model": "tiny-gap.keras", "layer": "conv_b", "target": 2,
        "score": "logit", "counterfactual": False, "options": {"activations_top_k": 4},
        "methods": ["gradcam", "activations"],
        "display": {"cmap": "jet", "opacity": 0.5, "view": "overlay", "scale": "map"}})
    response = deps.app.server.test_client().get(f"/download/{token}.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = set(archive.namelist())
    assert {"input.png", "record.json", "gradcam.png", "gradcam.npy", "gradcam-raw.npy",
            "activations-maps.npy"} <= names
    heatmap = np.load(io.BytesIO(archive.read("gradcam.npy")))
    assert heatmap.shape == (160, 160) and heatmap.dtype == np.float32 and 0 <= heatmap.min() <= heatmap.max() <= 1
    record = json.loads(archive.read("record.json"))
    assert record["model"]["name"] == "tiny-gap.keras" and record["model"]["preprocessing"]
    assert record["layer"] == "conv_b" and record["target"] == {"index": 2, "label": "truck"}
    assert record["options"]["smoothgrad_samples"] == 25 and record["image"]["sha256"] == stored.key
    assert "--method gradcam activations" in record["reproduce"] and "--target 2" in record["reproduce"]
    assert "--option activations_top_k=4" in record["reproduce"]
    assert deps.app.server.test_client().get("/download/nosuchtoken.zip").status_code == 404

    # Each PNG is the full-size picture with a title strip above and a colour bar below it.
    from PIL import Image

    from explain import export
    from explain.render import colorize
    png = np.asarray(Image.open(io.BytesIO(archive.read("gradcam.png"))).convert("RGB"))
    entry = work.cached(deps.store, ctx, ["gradcam"])["gradcam"]
    bare = render.full_picture(stored, entry, {"cmap": "jet", "opacity": 0.5, "view": "overlay", "scale": "map"})
    assert bare.shape == (160, 160, 3) and png.shape[1] == export.MIN_WIDTH and png.shape[0] > 160 + 60
    left = (export.MIN_WIDTH - 160) // 2
    tops = [t for t in range(png.shape[0] - 160) if np.array_equal(png[t:t + 160, left:left + 160], bare)]
    assert len(tops) == 1 and tops[0] > 40                 # once, below a strip of text
    assert np.any(png[:tops[0]] != 255, axis=-1).sum() > 300
    below = png[tops[0] + 160:].reshape(-1, 3)
    for end in colorize(np.array([[0.0, 1.0]], np.float32), "jet")[0]:   # the bar's two ends
        assert np.abs(below.astype(int) - end).max(axis=1).min() <= 1


def test_url_state_round_trip_and_bad_values_are_ignored():
    values = {"model": "vehicles", "layer": "backbone/conv3", "methods": ["gradcam++", "gradcam", "occlusion"],
              "cmap": "viridis", "opacity": 0.35, "view": "heatmap", "scale": "shared", "score": "probability",
              "cf": True}
    query = urlstate.build(values)
    parsed = urlstate.parse(query)
    assert parsed["methods"] == ["gradcam", "gradcam++", "occlusion"]  # the page's order
    assert {k: v for k, v in parsed.items() if k != "methods"} == {k: v for k, v in values.items() if k != "methods"}
    assert urlstate.build({"model": "m", "methods": ["gradcam"], "cmap": "jet", "opacity": 0.5}) == "?model=m"
    assert urlstate.parse("?methods=nope,gradcam++&opacity=lots&cmap=rainbow&view=3d") == {"methods": ["gradcam++"]}
    assert urlstate.parse("?opacity=7")["opacity"] == pytest.approx(1.0)


def test_healthz_lists_the_available_models(deps):
    body = deps.app.server.test_client().get("/healthz").get_json()
    assert {"tiny-gap.keras", "tiny-flat.keras"} <= set(body["models"])
    unavailable = [m.name for m in deps.registry.list() if not m.available]
    assert not set(unavailable) & set(body["models"])


def test_uploads_are_keyed_by_content_and_bounded(deps, images):
    data = images["small"].read_bytes()
    a = work.upload(deps.store, data, deps.limits)
    b = work.upload(deps.store, data, deps.limits)
    assert a.key == b.key == __import__("hashlib").sha256(data).hexdigest()
    assert deps.store.uploads.size_limit <= 2**30 and deps.store.results.size_limit <= 2**31
    big = work.upload(deps.store, images["scene"].read_bytes(), deps.limits)
    assert big.image.shape == (768, 1024, 3) and max(big.display.shape) <= 720


def test_engine_warnings_are_drawn_on_their_figure(deps):
    from callbacks import sample_path

    path = sample_path("bus-on-snow.png")
    if path is None or not any(m.name == "vehicles" and m.available for m in deps.registry.list()):
        pytest.skip("needs the bundled vehicles model and its gallery (models.train, models.gallery)")
    stored = work.upload(deps.store, path.read_bytes(), deps.limits)
    top = work.predictions(deps.store, deps.registry, stored.key, "vehicles")[0]
    ctx = work.Context(image=stored.key, model="vehicles", layer=None, target=top["index"], score="probability")
    entry = work.compute(deps.store, deps.registry, ctx, ["gradients"])["gradients"]
    panel = render.panel(stored, entry, {"cmap": "jet", "opacity": 0.5, "view": "overlay"}, ["x"] * 5, 1.0, "r")
    from layouts.figures import image_figure

    figure = image_figure(panel)
    notes = " ".join(a.text for a in figure.layout.annotations)
    if top["probability"] > 0.999:
        assert "saturated" in notes and "saturated" in " ".join(entry["warnings"])
    assert [w for w in entry["warnings"] if w.split()[0] not in notes] == []


def test_activations_are_a_grid_of_feature_maps_with_channel_hover(deps, images):
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=0,
                       options={"activations_top_k": 9})
    entry = work.compute(deps.store, deps.registry, ctx, ["activations"])["activations"]
    panel = render.panel(stored, entry, {"cmap": "viridis", "opacity": 0.5, "view": "overlay"}, [], 1.0, "r")
    assert panel.subtitle.startswith("9 strongest channels")
    channels = {t for row in panel.hover_text for t in row if t}
    assert channels == {f"channel {c}" for c in entry["extra"]["channels"]} and len(channels) == 9
    assert panel.width > 2 * 16 and abs(panel.width - panel.height) <= 2  # a 3x3 grid of square tiles


def test_the_redis_store_keeps_uploads_and_heatmaps_for_workers_elsewhere(tmp_path, user_models, images):
    """With CAMLENS_REDIS_URL the caches live in Redis (here fakeredis, same protocol) and hold
    no pickles: a Celery worker on another machine computes, the web server draws."""
    fakeredis = pytest.importorskip("fakeredis")
    from callbacks.store import Store
    from models import Registry

    server = fakeredis.FakeServer()
    web = Store(tmp_path, redis=fakeredis.FakeRedis(server=server))
    worker = Store(tmp_path / "elsewhere", redis=fakeredis.FakeRedis(server=server))
    registry = Registry(user_models)
    limits = create_app(Config(cache_dir=tmp_path / "c")).camlens.limits
    stored = work.upload(web, images["small"].read_bytes(), limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=1)
    computed = work.compute(worker, registry, ctx, ["gradcam", "activations"])          # on the worker
    seen = work.cached(web, ctx, ["gradcam", "activations"])                              # on the server
    assert np.array_equal(seen["gradcam"]["heatmap"], computed["gradcam"]["heatmap"])
    assert seen["activations"]["extra"]["maps"].shape == computed["activations"]["extra"]["maps"].shape
    assert web.image(stored.key).original_size == (160, 160) and web.counts() == {"explain": 1}
    raw = fakeredis.FakeRedis(server=server).get("camlens:uploads:" + repr(stored.key))
    assert raw and b"pickle" not in raw[:200] and raw[8:9] == b"{"  # JSON + .npz, never a pickle
    assert fakeredis.FakeRedis(server=server).ttl("camlens:uploads:" + repr(stored.key)) > 0


def test_cache_keys_follow_the_declarations():
    """Counterfactual and contrast split the cache exactly for the methods that honour them, so
    toggling either never serves a stale map; class-agnostic maps are shared across classes."""
    from explain import METHODS

    base = work.Context(image="i", model="m", layer="l", target=1)
    flipped = work.Context(image="i", model="m", layer="l", target=1, counterfactual=True)
    contrast = work.Context(image="i", model="m", layer="l", target=1, contrast=2)
    other_class = work.Context(image="i", model="m", layer="l", target=3)
    for m, info in METHODS.items():
        assert (base.key(m) != flipped.key(m)) == info.counterfactual, m
        assert (base.key(m) != contrast.key(m)) == info.needs_target, m
        assert (base.key(m) != other_class.key(m)) == info.needs_target, m


def test_contrast_and_counterfactual_change_the_computed_maps(deps, images):
    stored = work.upload(deps.store, images["scene"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=1)
    methods = ["gradcam", "hirescam", "gradients", "eigencam"]
    plain = work.compute(deps.store, deps.registry, ctx, methods)
    versus = work.compute(deps.store, deps.registry, work.Context(**{**vars(ctx), "contrast": 0}), methods)
    against = work.compute(deps.store, deps.registry, work.Context(**{**vars(ctx), "counterfactual": True}),
                           methods)
    for m in ("gradcam", "hirescam", "gradients"):
        assert not np.allclose(plain[m]["raw"], versus[m]["raw"]), m
    for m in ("gradcam", "hirescam"):
        assert not np.allclose(plain[m]["raw"], against[m]["raw"]), m
    np.testing.assert_array_equal(plain["eigencam"]["raw"], versus["eigencam"]["raw"])


def test_the_set_of_layers_is_part_of_the_cache_key_and_fused_maps_are_cached(deps, images):
    one = work.Context(image="i", model="m", layer=("a",), target=0)
    assert work.Context(image="i", model="m", layer="a", target=0).key("gradcam") == one.key("gradcam")
    assert one.key("gradcam") != work.Context(image="i", model="m", layer=("a", "b"), target=0).key("gradcam")
    assert one.key("gradients") == work.Context(image="i", model="m", layer=("a", "b"), target=0).key("gradients")
    # the page's selection, in any order, is the model's order; none chosen is the default layer
    assert work.layers_for(deps.registry, "tiny-gap.keras", ["conv_b", "conv_a"]) == ("conv_a", "conv_b")
    assert work.layers_for(deps.registry, "tiny-gap.keras", []) == ("conv_b",)
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer=("conv_a", "conv_b"), target=1)
    before = deps.store.counts().get("explain", 0)
    entries = work.compute(deps.store, deps.registry, ctx, ["gradcam", "cam", "gradients"])
    assert entries["gradcam"]["layer"] == "conv_a + conv_b" and entries["gradcam"]["extra"]["layers"] == ["conv_a", "conv_b"]
    assert "takes one layer" in entries["cam"]["error"] and "error" not in entries["gradients"]
    assert deps.store.counts().get("explain", 0) == 1 + before   # CAM's error did not split the call
    calls = deps.store.counts().get("explain", 0)
    assert work.compute(deps.store, deps.registry, ctx, ["gradcam", "cam", "gradients"]).keys() == entries.keys()
    assert deps.store.counts().get("explain", 0) == calls   # all three from the cache
    assert urlstate.build({"model": "m", "layer": ["conv_a", "conv_b"]}) == "?model=m&layer=conv_a,conv_b"
    assert urlstate.parse("?layer=conv_a,conv_b")["layer"] == "conv_a,conv_b"


def test_results_zip_keeps_several_layers(deps, images):
    stored = work.upload(deps.store, images["small"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer=("conv_a", "conv_b"), target=2)
    work.compute(deps.store, deps.registry, ctx, ["gradcam"])
    token = deps.store.put_record({
        "image": stored.key, "name": "small.png", "model": "tiny-gap.keras", "layer": ["conv_a", "conv_b"],
        "target": 2, "score": "logit", "counterfactual": False, "options": {}, "methods": ["gradcam"],
        "display": {"cmap": "jet", "opacity": 0.5, "view": "overlay", "scale": "map"}})
    archive = zipfile.ZipFile(io.BytesIO(deps.app.server.test_client().get(f"/download/{token}.zip").data))
    record = json.loads(archive.read("record.json"))
    assert record["layer"] == "conv_a + conv_b" and record["layers"] == ["conv_a", "conv_b"]
    assert record["methods"]["gradcam"]["layer"] == "conv_a + conv_b"
    assert "--layer conv_a conv_b" in record["reproduce"]


@pytest.mark.parametrize("cmap, opacity, view, scale, message", [
    ("rainbow", 0.5, "overlay", "map", "Unknown colormap"),
    ("jet", "abc", "overlay", "map", "Opacity"),
    ("jet", float("nan"), "overlay", "map", "Opacity"),
    ("jet", 3, "overlay", "map", "Opacity"),
    ("jet", 0.5, "3d", "map", "Unknown view"),
    ("jet", 0.5, "overlay", "log", "colour scale"),
])
def test_forged_display_values_get_a_plain_message(cmap, opacity, view, scale, message):
    with pytest.raises(ExplainError, match=message):
        render.clean_display(cmap, opacity, view, scale)
    assert render.clean_display(None, None, None, None) == {"cmap": "jet", "opacity": 0.5, "view": "overlay",
                                                            "scale": "map", "signed": False}


def test_the_report_is_one_self_contained_html_file(deps, images):
    """The report to hand out: the photo, the top-5 and one picture per method, each with what its
    colours mean in plain words, every picture embedded (no src or href leaves the file)."""
    import re

    stored = work.upload(deps.store, images["scene"].read_bytes(), deps.limits)
    ctx = work.Context(image=stored.key, model="tiny-gap.keras", layer="conv_b", target=1)
    work.compute(deps.store, deps.registry, ctx, ["gradcam", "gradients", "eigencam"])
    token = deps.store.put_record({
        "image": stored.key, "name": "scene.png", "model": "tiny-gap.keras", "layer": "conv_b", "target": 1,
        "score": "logit", "counterfactual": False, "options": {}, "methods": ["gradcam", "gradients", "eigencam"],
        "display": {"cmap": "jet", "opacity": 0.5, "view": "overlay", "scale": "map"}})
    answer = deps.app.server.test_client().get(f"/report/{token}.html")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page)
    assert links and all(link.startswith("data:") for link in links), [x[:40] for x in links]
    assert len(re.findall(r"<figure class='panel'>", page)) == 3
    assert all(f"<tr><td>{name}</td>" in page for name in ("car", "bus", "truck"))   # the tiny model's classes
    assert "raised the model's score for" in page and "whatever the class" in page   # eigencam: no class
    assert "python -m explain input.png --model tiny-gap.keras" in page
    assert deps.app.server.test_client().get("/report/nope.html").status_code == 404
