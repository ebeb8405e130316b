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
    assert "No ground-truth mask" in str(view.status_view({**result, "localisation": None}, "abc", "m",
                                                          ["gradcam", "gradients"]))


def test_callbacks_are_registered(compare_app):
    outputs = " ".join(compare_app.callback_map)
    for target in ("compare-result.data", "compare-deletion.figure", "compare-table.data",
                   "compare-status.children"):
        assert target in outputs


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
    assert len(dash_duo.find_elements("#compare-deletion .scatterlayer .trace")) == 2
    assert len(dash_duo.find_elements("#compare-sanity li")) == 2
    assert "No ground-truth mask" in dash_duo.find_element("#compare-status").text
