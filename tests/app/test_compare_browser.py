"""The Compare panel's verdict, the agreement card, boxes on an upload and two models, in Chromium."""
import time

import pytest

from app import Config, create_app


@pytest.fixture
def tiny_app(tmp_path, user_models):
    return create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models))


def _upload(dash_duo, url, path):
    dash_duo.wait_for_page(url, timeout=20)
    dash_duo.wait_for_element("#upload input[type=file]", timeout=20)
    dash_duo.find_element("#upload input[type=file]").send_keys(str(path))
    dash_duo.wait_for_element("#results-grid .result-graph", timeout=60)


def _click(dash_duo, selector):
    dash_duo.driver.execute_script("arguments[0].scrollIntoView(); arguments[0].click();",
                                   dash_duo.find_element(selector))


def _no_csp_errors(dash_duo):
    logs = dash_duo.driver.get_log("browser")
    assert not [e for e in logs if "Content Security Policy" in e.get("message", "")], logs


def test_agreement_card_with_two_maps_and_none_with_one(dash_duo, tiny_app, images):
    dash_duo.start_server(tiny_app)
    _upload(dash_duo, dash_duo.server_url + "/?model=tiny-gap.keras&methods=gradcam", images["small"])
    time.sleep(1.0)    # the agreement callback has answered for the one map
    assert dash_duo.find_elements("#agreement-card") == []
    _click(dash_duo, "#method-gradients")
    dash_duo.wait_for_element("#agreement-card #agreement-graph .heatmaplayer", timeout=30)
    # two heatmap traces (Spearman, top-10% IoU) with the two methods on their axes
    names = dash_duo.driver.execute_script(
        "const g = document.querySelector('#agreement-graph .js-plotly-plot');"
        "return [g.data.length, g.data[0].customdata[0].map(p => p[1]), g.data[0].z[0][0], g.data[1].z[1][1],"
        "        g.data[0].x];")
    assert names[0] == 2 and sorted(names[1]) == ["Grad-CAM", "Vanilla gradients"]
    assert sorted(names[4]) == ["Grad-CAM", "Vanilla <br>gradients"]     # whole names, wrapped
    assert names[2] == pytest.approx(1.0) and names[3] == pytest.approx(1.0)
    _click(dash_duo, "#method-gradients")      # back to one map: the card goes
    dash_duo.wait_for_no_elements("#agreement-card", timeout=20)
    _no_csp_errors(dash_duo)


def test_verdict_table_and_a_box_drawn_on_an_upload(dash_duo, tiny_app, images):
    """Compare opens with the verdict table; a box drawn on the upload gives a pointing-game result."""
    dash_duo.start_server(tiny_app)
    _upload(dash_duo, dash_duo.server_url + "/?model=tiny-gap.keras&methods=gradcam,gradients", images["small"])
    dash_duo.driver.execute_script("document.querySelector('#compare-boxes-section').open = true;")
    dash_duo.wait_for_element("#compare-boxes-figure svg image", timeout=20)
    # draw a box as Plotly's drawrect tool reports it (the whole list of shapes, image pixels)
    dash_duo.driver.execute_script(
        "const g = document.querySelector('#compare-boxes-figure .js-plotly-plot');"
        "Plotly.relayout(g, {shapes: [{type: 'rect', x0: 20, y0: 30, x1: 120, y1: 140}]});")
    dash_duo.wait_for_contains_text("#compare-boxes-info", "1 box(es) marked", timeout=20)
    _click(dash_duo, "#compare-run")
    dash_duo.wait_for_element("#compare-verdict-table tbody tr", timeout=60)
    body = dash_duo.find_element("#compare-body")
    # the verdict table comes first, the experts' curves after it
    order = dash_duo.driver.execute_script(
        "const t = document.querySelector('#compare-verdict-table'), c = document.querySelector('#compare-deletion');"
        "return !!(t.compareDocumentPosition(c) & Node.DOCUMENT_POSITION_FOLLOWING);")
    assert order
    rows = dash_duo.find_elements("#compare-verdict-table tbody tr")
    assert len(rows) == 2
    text = body.text
    assert "which map to trust on this image" in text.lower()
    assert any(w in rows[0].text for w in ("random", "sanity"))
    pointing = [c.text for c in dash_duo.find_elements('#compare-table td[data-dash-column="pointing_game"]')]
    assert len(pointing) == 2 and all(p in ("0.000", "1.000") or 0 <= float(p) <= 1 for p in pointing)
    assert "your 1 box(es)" in dash_duo.find_element("#compare-status").text
    header = dash_duo.find_element('#compare-table th[data-dash-column="pointing_game"]').text
    assert "chance 0.43" in header        # (100 x 110) / (160 x 160) of the image
    _no_csp_errors(dash_duo)


def test_two_models_side_by_side(dash_duo, tmp_path):
    """The bundled vehicles and vehicles-shortcut on one scene: both models' rows."""
    from models.scenes import make_scene
    from PIL import Image

    path = tmp_path / "scene.png"
    Image.fromarray(make_scene(21, 96).image).save(path)
    dash_duo.start_server(create_app(Config(cache_dir=tmp_path / "cache")))
    _upload(dash_duo, dash_duo.server_url + "/?model=vehicles&methods=gradcam,gradients", path)
    dash_duo.driver.execute_script("document.querySelector('#compare-sanity-on').click();")   # faster
    label = "Vehicles with a shortcut (bundled, confounded backgrounds)"
    dash_duo.driver.execute_script(
        "const d = document.querySelector('#compare-model2');"
        "d.scrollIntoView({block: 'center'}); (d.querySelector('.dash-dropdown') || d).click();")
    dash_duo.wait_for_element(".dash-dropdown-option", timeout=10)
    dash_duo.driver.execute_script(
        "const o = [...document.querySelectorAll('.dash-dropdown-option')].find(e => e.textContent.trim() === arguments[0]);"
        "o.click();", label)
    dash_duo.wait_for_contains_text("#compare-model2", "Vehicles with a shortcut", timeout=10)
    _click(dash_duo, "#compare-run")
    dash_duo.wait_for_element("#compare-models-table tbody tr", timeout=80)
    table = dash_duo.find_element("#compare-models-table")
    head = table.find_element("css selector", "thead").text
    assert "vehicles" in head and "vehicles-shortcut" in head
    rows = table.find_elements("css selector", "tbody tr")
    assert sorted(r.find_element("css selector", "th").text for r in rows) == ["Grad-CAM", "Vanilla gradients"]
    for row in rows:   # both models' deletion AUCs and their difference, and two verdicts
        cells = [c.text for c in row.find_elements("css selector", "td")]
        assert len(cells) == 8
        a, b, delta = (float(cells[i]) for i in range(3))
        assert delta == pytest.approx(b - a, abs=2e-3)
        assert cells[6] and cells[7]
    assert "Both explain" in dash_duo.find_element("#compare-models").text
    _no_csp_errors(dash_duo)
