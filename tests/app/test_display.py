"""The result grid's display in a real browser (assets/display.js): colormap, opacity, view, scale
and Signed change every figure with no request for figures to the server; panels are linked
(zoom, pan, crosshair with each panel's value); the camera PNG is full size with its title."""
import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

#: Twelve fast methods of the tiny test model (one a feature-map mosaic).
TWELVE = ("gradcam,gradcam++,xgradcam,layercam,hirescam,gradcam-guided,eigengradcam,cam,eigencam,"
          "gradients,gradient-x-input,activations")


@pytest.fixture
def requests_seen(camlens):
    """Every request the server gets from now on: (path, the callback's outputs for Dash's
    callback endpoint). Appended to Flask's before-request hooks directly (the server is running)."""
    import flask

    seen = []

    def note():
        body = flask.request.get_json(silent=True) if flask.request.method == "POST" else None
        seen.append((flask.request.path, (body or {}).get("output", "") if isinstance(body, dict) else ""))

    camlens.dash.server.before_request_funcs.setdefault(None, []).insert(0, note)
    return seen


def drawn(page) -> list[dict]:
    """Per result figure: the map layer's opacity and source, the photo's visibility, the colour
    bar's scale, whether display.js has drawn it with the current display."""
    return page.duo.driver.execute_script("""
        return [...document.querySelectorAll('#results-grid .js-plotly-plot')].map(gd => {
          const m = gd.layout.meta && gd.layout.meta.camlens, im = (gd.layout.images || [])[0] || {};
          return {method: m && m.method, kind: m && m.kind, source: im.source || '', opacity: im.opacity,
                  photo: gd.data[0] && gd.data[0].visible, applied: !!(gd._camlens && gd._camlens.meta === m),
                  x: gd._fullLayout.xaxis.range.slice(), y: gd._fullLayout.yaxis.range.slice(),
                  subtitle: gd.layout.title.subtitle.text, colorscale: JSON.stringify(gd.data[m && m.kind === 'mosaic' ? 0 : 1].colorscale)};
        });""")


def ready(page, count: int, timeout: float = 30) -> list[dict]:
    """Wait until `count` figures are drawn by display.js (map layer filled)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        figures = drawn(page)
        if len(figures) == count and all(f["applied"] and f["source"].startswith("data:image/") for f in figures):
            return figures
        time.sleep(0.1)
    raise AssertionError(f"expected {count} drawn figures: {drawn(page)}")


def pixels(page, index: int = 0) -> np.ndarray:
    graph = page.duo.find_elements("#results-grid .result-graph")[index]
    return np.asarray(Image.open(io.BytesIO(graph.screenshot_as_png)).convert("RGB"), np.int16)


def figure_requests(seen) -> list:
    """Requests that could have drawn figures: any but the address bar's (urlstate writes the
    view into the URL, a separate callback)."""
    return [r for r in seen if not (r[0].endswith("_dash-update-component") and r[1] == "url-out.search")]


def test_opacity_and_colormap_change_every_figure_in_the_browser(camlens, images, requests_seen):
    page = camlens.open(f"?model=tiny-gap.keras&methods={TWELVE}")
    page.upload(images["scene"])
    before = ready(page, 12)
    assert {f["kind"] for f in before} == {"overlay", "mosaic"}
    picture = pixels(page)
    requests_seen.clear()

    # Opacity: four steps of the slider by keyboard; time from the key to all 12 figures redrawn.
    driver = page.duo.driver
    driver.execute_script("window.__keyAt = []; document.addEventListener('keydown', e => window.__keyAt.push(e.timeStamp), true);")
    handle = page.duo.find_element("#opacity [role=slider]")
    handle.send_keys(Keys.ARROW_RIGHT)
    assert _wait(lambda: all(f["opacity"] == pytest.approx(0.55) for f in drawn(page) if f["kind"] == "overlay"))
    opacity_ms = _elapsed(driver, "__keyAt")
    handle.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT,
                     Keys.ARROW_RIGHT)
    assert _wait(lambda: all(f["opacity"] == pytest.approx(0.85) for f in drawn(page) if f["kind"] == "overlay"))
    time.sleep(0.3)
    after = pixels(page)
    assert np.abs(after - picture).mean() > 2, "the figure's pixels did not change"
    assert _wait(lambda: "opacity=0.85" in driver.current_url)

    # Colormap: every map layer is coloured anew, the colour bar with it (the pictures for the
    # other colormaps are coloured while the browser is idle: give it that second).
    time.sleep(2)
    driver.execute_script("window.__changeAt = []; document.querySelector('#colormap')"
                          ".addEventListener('change', e => window.__changeAt.push(e.timeStamp), true);")
    Select(page.duo.find_element("#colormap")).select_by_value("viridis")
    assert _wait(lambda: all(a["source"] != b["source"] and a["colorscale"] != b["colorscale"]
                             for a, b in zip(drawn(page), before)))
    colormap_ms = _elapsed(driver, "__changeAt")
    time.sleep(0.3)
    assert np.abs(pixels(page) - after).mean() > 2
    # Heatmap only: the photo is hidden, the map opaque.
    page.click("#view input[value=heatmap]")
    assert _wait(lambda: all(f["opacity"] == 1 for f in drawn(page) if f["kind"] == "overlay"))

    assert figure_requests(requests_seen) == [], figure_requests(requests_seen)
    assert len(page.duo.find_elements("#results-grid .result-graph")) == 12
    print(f"\n12 figures: opacity {opacity_ms:.0f} ms, colormap {colormap_ms:.0f} ms from the input event")
    assert opacity_ms < 100, opacity_ms
    assert page.duo.get_logs() == []


def _wait(predicate, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _elapsed(driver, events: str) -> float:
    """ms from the first recorded input event to display.js's last redraw of every figure."""
    time.sleep(0.3)
    print(driver.execute_script(f"return [window.camlensDisplay.last, window.{events}]"))
    return driver.execute_script(
        f"const s = window.camlensDisplay.last; return s.end - window.{events}[0];")
