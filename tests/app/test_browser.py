"""The real page in headless Chromium."""
from app import Config, create_app


def test_page_shows_control_panel_and_results(dash_duo, tmp_path):
    dash_duo.start_server(create_app(Config(cache_dir=tmp_path)))
    dash_duo.wait_for_element("#control-panel", timeout=20)
    dash_duo.wait_for_element("#results")
    assert "Controls" in dash_duo.find_element("#control-panel").text
    # Bootstrap is really applied (served locally): the navbar is dark, the card has a border.
    navbar_bg = dash_duo.driver.execute_script(
        "return getComputedStyle(document.querySelector('nav.navbar')).backgroundColor")
    assert navbar_bg not in ("rgba(0, 0, 0, 0)", "transparent")
    # The default model, the photo classifier every install has, loads (and warms up) on its own:
    # its layers fill the layer menu. Waiting for that also lets the server finish the request
    # before the test runner stops it.
    dash_duo.wait_for_contains_text("#model", "EfficientNet-Lite0", timeout=20)
    dash_duo.wait_for_contains_text("#layer", "head_relu", timeout=60)
    assert dash_duo.get_logs() == []
