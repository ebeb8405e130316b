"""The real page in headless Chromium."""
import pytest

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


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""
    import re

    def luminance(css):
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _over(top: str, page: str) -> str:
    """The opaque colour of a translucent rgba() `top` painted over `page`."""
    import re

    t, p = [float(v) for v in re.findall(r"[\d.]+", top)], [float(v) for v in re.findall(r"[\d.]+", page)]
    a = t[3] if len(t) > 3 else 1.0
    return "rgb({}, {}, {})".format(*(round(a * x + (1 - a) * y) for x, y in zip(t[:3], p[:3])))



@pytest.mark.parametrize("theme", ["bootstrap", "flatly", "darkly"])
def test_every_theme_is_readable_and_offline(dash_duo, tmp_path, theme):
    """The model and layer fields are readable (WCAG contrast >= 4.5) in light and dark themes, and
    no request leaves the app (the themes' web fonts are not fetched)."""
    dash_duo.start_server(create_app(Config(cache_dir=tmp_path, theme=theme)))
    dash_duo.wait_for_contains_text("#layer", "head_relu", timeout=60)
    for field in ("#model", "#layer"):
        fg, bg = dash_duo.driver.execute_script(
            "const e = document.querySelector(arguments[0] + ' .dash-dropdown') || document.querySelector(arguments[0]);"
            "let b = e, bg = 'rgba(0, 0, 0, 0)';"
            "while (b && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) { bg = getComputedStyle(b).backgroundColor; b = b.parentElement; }"
            "return [getComputedStyle(e).color, bg];", field)
        assert _contrast(fg, bg) >= 4.5, (theme, field, fg, bg)
    # the empty-state note (an alert-light) too
    fg, bg, page = dash_duo.driver.execute_script(
        "const e = document.querySelector('#results-grid .alert');"
        "return [getComputedStyle(e).color, getComputedStyle(e).backgroundColor,"
        " getComputedStyle(document.body).backgroundColor];")
    assert _contrast(fg, _over(bg, page)) >= 4.5, (theme, fg, bg, page)
    origin = dash_duo.server_url
    resources = dash_duo.driver.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name);")
    assert resources and all(r.startswith(origin) or r.startswith("data:") for r in resources), \
        [r for r in resources if not r.startswith(origin)]
    css = dash_duo.driver.execute_script(
        "return [...document.styleSheets].map(s => s.href).filter(Boolean);")
    assert all(h.startswith(origin) for h in css)
