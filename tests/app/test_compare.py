"""The Compare view: its numbers (callbacks.compare.comparison), its drawing (layouts.compare),
the callbacks' wiring, and one run in the browser."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from app import Config, create_app


@pytest.fixture
def compare_app(tmp_path, user_models):
    """The real app on the tiny models (the Compare panel sits below the results grid)."""
    return create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models))


def _context(app, image: np.ndarray, model="tiny-gap.keras", target=0):
    from callbacks import work

    stored = app.camlens.store.put_image("k" * 64, image)
    return work.Context(image=stored.key, model=model, layer=None, target=target)


def test_comparison_numbers_with_a_mask(compare_app):
    from callbacks.compare import STEPS, comparison

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    mask = np.zeros((80, 100), bool)
    mask[20:50, 30:70] = True
    deps = compare_app.camlens
    seen = []
    result = comparison(deps.store, deps.registry, _context(compare_app, image),
                        ["gradcam", "gradients", "cam"], mask=mask,
                        progress=lambda f, label: seen.append((f, label)))
    json.dumps(result, allow_nan=False)          # goes to the browser as JSON: no NaN
    assert result["methods"] == ["gradcam", "gradients", "cam"] and not result["errors"]
    curve = result["curves"]["gradcam"]
    assert len(curve["fractions"]) == len(curve["deletion"]) == STEPS + 1
    assert curve["deletion_auc"] == pytest.approx(np.trapezoid(curve["deletion"], curve["fractions"]))
    assert result["chance"] == pytest.approx(mask.mean())
    assert result["localisation"]["gradients"]["pointing_game"] in (0.0, 1.0)
    assert set(result["sanity"]) == {"gradcam", "gradients", "cam"}
    assert all(s["passed"] in (True, False, None) for s in result["sanity"].values())
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[-1] == (1.0, "done")
    assert {label for _, label in seen} >= {"heatmaps", "deletion / insertion", "sanity check"}


def test_comparison_without_mask_and_with_a_failing_method(compare_app):
    from callbacks.compare import comparison

    image = np.full((48, 48, 3), 120, np.uint8)
    deps = compare_app.camlens
    result = comparison(deps.store, deps.registry, _context(compare_app, image, "tiny-flat.keras"),
                        ["gradcam", "cam"], sanity=False, baseline="grey")
    assert result["localisation"] is None and result["sanity"] is None
    assert result["methods"] == ["gradcam"] and "GlobalAveragePooling" in result["errors"]["cam"]
    assert result["baseline"] == "grey"


def test_sample_masks_are_found_by_content(tmp_path):
    from callbacks.compare import sample_mask

    image = np.zeros((30, 40, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "bus-snow.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "bus-snow.mask.png")
    Image.fromarray(image + 1).save(tmp_path / "no-mask.png")
    key = hashlib.sha256((tmp_path / "bus-snow.png").read_bytes()).hexdigest()
    found = sample_mask(key, tmp_path)
    assert found is not None and found.sum() == 75 and found[7, 10]
    other = hashlib.sha256((tmp_path / "no-mask.png").read_bytes()).hexdigest()
    assert sample_mask(other, tmp_path) is None
    assert sample_mask("0" * 64, tmp_path / "missing") is None
    # the gallery's index.json may name the mask file (models.gallery)
    Image.fromarray(image + 2).save(tmp_path / "odd.png")
    Image.fromarray(255 - mask).save(tmp_path / "odd-truth.png")
    (tmp_path / "index.json").write_text(json.dumps({"samples": [{"file": "odd.png", "mask": "odd-truth.png"}]}))
    odd = sample_mask(hashlib.sha256((tmp_path / "odd.png").read_bytes()).hexdigest(), tmp_path)
    assert odd is not None and odd.sum() == 30 * 40 - 75


def test_layout_draws_a_result():
    from layouts import compare as view

    result = {
        "image": "abc", "model": "m", "target_label": "bus", "steps": 2, "baseline": "grey",
        "seconds": 1.5, "requested": ["gradcam", "gradients"], "methods": ["gradcam", "gradients"],
        "names": {"gradcam": "Grad-CAM", "gradients": "Vanilla gradients"}, "errors": {},
        "curves": {m: {"fractions": [0, 0.5, 1], "deletion": [0.9, 0.2, 0.1],
                       "insertion": [0.1, 0.8, 0.9], "deletion_auc": 0.35, "insertion_auc": 0.65}
                   for m in ("gradcam", "gradients")},
        "localisation": {"gradcam": {"pointing_game": 1.0, "energy_in_mask": 0.7},
                         "gradients": {"pointing_game": 0.0, "energy_in_mask": None}},
        "chance": 0.2,
        "sanity": {"gradcam": {"steps": ["head", "c2"], "spearman": [0.1, 0.0], "ssim": [0.2, 0.1],
                               "score": 0.05, "passed": True, "message": "Passes"},
                   "gradients": {"steps": ["head", "c2"], "spearman": [0.9, 0.7], "ssim": [0.9, 0.9],
                                 "score": 0.8, "passed": False, "message": "Fails"}},
    }
    panel = str(view.compare_panel())
    for ident in ("compare-run", "compare-cancel", "compare-progress", "compare-table", "compare-result"):
        assert f"id='{ident}'" in panel
    fig = view.curves_figure(result, "deletion")
    assert [t.name for t in fig.data] == ["Grad-CAM (0.350)", "Vanilla gradients (0.350)"]
    assert list(fig.data[0].y) == [0.9, 0.2, 0.1]
    rows = view.table_rows(result)
    assert rows[1] == {"method": "Vanilla gradients", "deletion_auc": 0.35, "insertion_auc": 0.65,
                       "pointing_game": 0.0, "energy_in_mask": None, "sanity_spearman": 0.8,
                       "verdict": "fails"}
    columns = [c["id"] for c in view.table_columns(True, True, 0.2)]
    assert columns == ["method", "deletion_auc", "insertion_auc", "pointing_game", "energy_in_mask",
                       "sanity_spearman", "verdict"]
    assert len(view.sanity_figure(result).data) == 2
    text = str(view.status_view(result, "abc", "m", ["gradcam", "gradients"]))
    assert "out of date" not in text and "bus" in text
    assert "out of date" in str(view.status_view(result, "other", "m", ["gradcam", "gradients"]))
    # a second model or boxes chosen since the numbers were computed
    assert "second model or boxes" in str(view.status_view(result, "abc", "m", ["gradcam", "gradients"], "m2"))
    assert "out of date" in str(view.status_view(result, "abc", "m", ["gradcam", "gradients"], None, [[0, 0, 5, 5]]))
    assert "out of date" in str(view.status_view(result, "abc", "m", ["gradcam", "gradients"], None, [["x"]]))
    boxed = {**result, "box_list": [[0, 0, 5, 5]]}
    assert "out of date" not in str(view.status_view(boxed, "abc", "m", ["gradcam", "gradients"], None, [[0, 0, 5, 5]]))
    assert "No ground-truth mask" in str(view.status_view({**result, "localisation": None}, "abc", "m",
                                                          ["gradcam", "gradients"]))


def test_callbacks_are_registered(compare_app):
    outputs = " ".join(compare_app.callback_map)
    for target in ("compare-result.data", "compare-deletion.figure", "compare-table.data",
                   "compare-status.children"):
        assert target in outputs


def test_compare_progress_is_worded_beside_its_bar_not_inside_it(compare_app):
    """A label inside the bar cannot be read at 3 %: the words go to their own line."""
    from layouts import compare as view

    progress = compare_app.callback_map["compare-result.data"]["background"]["progress"]
    assert [str(o) for o in progress] == ["compare-progress.value", "compare-progress-text.children"]
    panel = str(view.compare_panel())
    assert "id='compare-progress-text'" in panel and "role='status'" in panel


def test_compare_in_the_browser(dash_duo, compare_app, images):
    """Upload, choose two methods, press Compare: curves, a sortable table and verdicts appear."""
    dash_duo.start_server(compare_app)
    dash_duo.wait_for_page(dash_duo.server_url + "/?model=tiny-gap.keras&methods=gradcam,gradients",
                           timeout=20)
    dash_duo.wait_for_element("#upload input[type=file]", timeout=20)
    dash_duo.find_element("#upload input[type=file]").send_keys(str(images["small"]))
    dash_duo.wait_for_element("#results-grid .result-graph", timeout=30)
    button = dash_duo.find_element("#compare-run")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", button)
    dash_duo.wait_for_element("#compare-table td", timeout=60)

    def column(name):
        cells = dash_duo.find_elements(f'#compare-table td[data-dash-column="{name}"]')
        return [c.text for c in cells]
    assert sorted(column("method")) == ["Grad-CAM", "Vanilla gradients"]
    sort = dash_duo.find_element('#compare-table th[data-dash-column="deletion_auc"] .column-header--sort')
    dash_duo.driver.execute_script("arguments[0].click();", sort)   # ascending
    values = [float(v) for v in column("deletion_auc")]
    assert values == sorted(values)
    dash_duo.driver.execute_script("arguments[0].click();", sort)   # descending
    assert [float(v) for v in column("deletion_auc")] == sorted(values, reverse=True)
    # two methods and the random maps' baseline
    assert len(dash_duo.find_elements("#compare-deletion .scatterlayer .trace")) == 3
    assert "random maps" in dash_duo.find_element("#compare-deletion").text
    assert len(dash_duo.find_elements("#compare-sanity li")) == 2
    assert "No ground-truth mask" in dash_duo.find_element("#compare-status").text


# -- verdicts, boxes, two models, agreement ------------------------------------------------------

def test_comparison_has_a_random_baseline_and_a_verdict_per_method(compare_app):
    from callbacks.compare import comparison
    from explain.verdict import LEVELS

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    deps = compare_app.camlens
    result = comparison(deps.store, deps.registry, _context(compare_app, image),
                        ["gradcam", "gradients"], sanity=True)
    json.dumps(result, allow_nan=False)
    rand = result["random"]
    assert rand["n"] == 3 and len(rand["deletion"]) == len(result["curves"]["gradcam"]["deletion"])
    for m in ("gradcam", "gradients"):
        v = result["verdicts"][m]
        assert v["level"] in LEVELS and v["sentence"].startswith(LEVELS[v["level"]] + ":")
        passed = result["sanity"][m]["passed"]
        if passed is False:
            assert v["level"] == "distrust"
        if v["level"] == "trust":
            assert passed is True and v["margin"] > 0
    # the random maps do not depend on the methods asked for (fixed seed, same image)
    again = comparison(deps.store, deps.registry, _context(compare_app, image), ["gradcam"], sanity=False)
    assert again["random"]["deletion_auc"] == pytest.approx(rand["deletion_auc"])
    assert again["verdicts"]["gradcam"]["level"] in ("faithful", "doubt", "unknown")


def test_boxes_replace_the_mask_for_localisation(compare_app):
    from callbacks.compare import comparison

    image = np.random.default_rng(2).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    deps = compare_app.camlens
    everything = comparison(deps.store, deps.registry, _context(compare_app, image), ["gradcam"],
                            sanity=False, boxes=[[-10, -10, 200, 200]])   # clipped to the image
    assert everything["mask_source"] == "boxes" and everything["boxes"] == 1
    assert everything["chance"] == pytest.approx(1.0)
    assert everything["localisation"]["gradcam"]["pointing_game"] == 1.0
    two = comparison(deps.store, deps.registry, _context(compare_app, image), ["gradcam"], sanity=False,
                     boxes=[[0, 0, 50, 40], [50, 40, 100, 80]])
    assert two["chance"] == pytest.approx(0.5) and two["boxes"] == 2
    from explain.errors import ExplainError
    with pytest.raises(ExplainError):
        comparison(deps.store, deps.registry, _context(compare_app, image), ["gradcam"], sanity=False,
                   boxes=[[0, 0, "x", 3]])


def test_read_shapes_from_plotly_relayout_events():
    from callbacks.compare import read_shapes
    from explain.errors import ExplainError

    drawn = {"shapes": [{"type": "rect", "x0": 10, "y0": 5, "x1": 30.5, "y1": 25, "line": {}},
                        {"type": "rect", "x0": 90, "y0": 70, "x1": 150, "y1": 120}]}
    boxes = read_shapes(drawn, [], (80, 100))
    assert boxes == [[10, 5, 30.5, 25], [90, 70, 100, 80]]              # the second clipped
    moved = read_shapes({"shapes[1].x0": 60, "shapes[1].y0": 60}, boxes, (80, 100))
    assert moved[1] == [60, 60, 100, 80] and moved[0] == boxes[0]
    assert read_shapes({"xaxis.range[0]": 3}, boxes, (80, 100)) == boxes  # a zoom keeps them
    assert read_shapes({"shapes": []}, boxes, (80, 100)) == []             # all erased
    for bad in ({"shapes": [{"type": "circle", "x0": 1, "y0": 1, "x1": 2, "y1": 2}]},
                {"shapes": "no"}, {"shapes": [{"type": "rect", "x0": None}]},
                {"shapes[7].x0": 3}, {"shapes": [{"type": "rect", "x0": 0, "y0": 0, "x1": 1e400, "y1": 3}]}):
        with pytest.raises(ExplainError):
            read_shapes(bad, boxes, (80, 100))


def test_two_models_side_by_side(tmp_path):
    """vehicles and vehicles-shortcut (bundled, same classes): both explain the same class."""
    from callbacks.compare import comparison
    from callbacks import work
    from models.scenes import make_scene

    app = create_app(Config(cache_dir=tmp_path / "cache"))
    deps = app.camlens
    stored = deps.store.put_image("v" * 64, make_scene(11, 96).image)
    context = work.Context(image=stored.key, model="vehicles", layer=None,
                           target=work.predictions(deps.store, deps.registry, stored.key, "vehicles")[0]["index"])
    result = comparison(deps.store, deps.registry, context, ["gradcam", "gradients"], sanity=False,
                        second_model="vehicles-shortcut")
    json.dumps(result, allow_nan=False)
    second = result["second"]
    assert second["model"] == "vehicles-shortcut" and second["target"] == result["target"]
    assert set(second["curves"]) == {"gradcam", "gradients"} and set(second["verdicts"]) == {"gradcam", "gradients"}
    assert second["random"]["n"] == 3
    assert 0 <= second["predicted"]["probability"] <= 1 and second["predicted"]["label"]
    from layouts import compare as view
    text = str(view.models_view(result))
    assert "vehicles-shortcut" in text and "compare-model-row" in text and "Both explain" in text
    same = comparison(deps.store, deps.registry, context, ["gradcam"], sanity=False, second_model="vehicles")
    assert "already chosen" in same["second"]["error"]
    gone = comparison(deps.store, deps.registry, context, ["gradcam"], sanity=False, second_model="nope")
    assert "nope" in gone["second"]["error"]


def test_second_model_with_other_classes_explains_its_own_top_class(compare_app):
    from callbacks.compare import comparison

    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    deps = compare_app.camlens
    result = comparison(deps.store, deps.registry, _context(compare_app, image), ["gradcam"], sanity=False,
                        second_model="tiny-flat.keras")
    second = result["second"]
    assert second["target_label"] in ("class 0", "class 1") and "gradcam" in second["curves"]
    assert "the models' classes differ" in str(__import__("layouts.compare", fromlist=["x"]).models_view(result))


def test_verdict_and_agreement_views():
    from layouts import compare as view

    result = {"methods": ["gradcam", "gradients"], "names": {"gradcam": "Grad-CAM", "gradients": "Vanilla gradients"},
              "random": {"n": 3},
              "verdicts": {"gradcam": {"level": "trust", "headline": "Trustworthy here",
                                       "sentence": "Trustworthy here: removing what it points at ...",
                                       "margin": 0.2},
                           "gradients": {"level": "distrust", "headline": "Do not trust here",
                                         "sentence": "Do not trust here: it barely changes ...", "margin": 0.3}},
              "warnings": {"gradients": ["a plain note"]}}
    text = str(view.verdict_view(result))
    assert "compare-verdict-table" in text and "Which map to trust on this image" in text
    assert "Removing what it points at" in text and "a plain note" in text
    assert view.verdict_view({"methods": [], "names": {}}) == []
    fig = view.agreement_figure(["A", "B"], np.eye(2), np.eye(2), 0.1)
    assert len(fig.data) == 2 and fig.data[0].zmin == -1 and list(fig.data[1].z[0]) == [1.0, 0.0]
    assert "agreement-graph" in str(view.agreement_card(["A", "B"], np.eye(2), np.eye(2), 0.1))
    ticks = view.sanity_figure({"methods": ["gradcam"], "names": {"gradcam": "Grad-CAM"},
                                "sanity": {"gradcam": {"steps": ["a … b_block4_expand_bn (15 layers)"],
                                                       "reached": ["block4a_expand_bn"], "spearman": [0.2]}}})
    assert ticks.layout.xaxis.ticktext == ("block4a_<br>expand_bn",)


def test_models_view_says_when_the_second_model_sees_another_class():
    from layouts import compare as view

    curves = {"gradcam": {"deletion_auc": 0.2, "insertion_auc": 0.9}}
    verdicts = {"gradcam": {"level": "trust", "headline": "Trustworthy here", "sentence": "Trustworthy here: …"}}
    result = {"model": "vehicles", "target_label": "pickup", "methods": ["gradcam"], "names": {"gradcam": "Grad-CAM"},
              "curves": curves, "verdicts": verdicts,
              "second": {"model": "vehicles-shortcut", "target_label": "pickup", "methods": ["gradcam"],
                         "curves": {"gradcam": {"deletion_auc": 0.0, "insertion_auc": 0.05}}, "verdicts": {},
                         "predicted": {"label": "car", "probability": 0.99}}}
    text = str(view.models_view(result))
    assert "vehicles-shortcut itself predicts “car” (99%)" in text
    assert "-0.200" in text and "-0.850" in text          # the differences, second minus first
    assert view.models_view({**result, "second": None}) == []
    assert "Second model (x): gone" in str(view.models_view({**result, "second": {"model": "x", "error": "gone"}}))
