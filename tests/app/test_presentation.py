"""Presentation mode of the explorer (assets/presentation.js) in headless Chromium: the Present
button hides the controls and shows one figure large; keys and on-screen arrows step through the
figures and the gallery's photos; Esc leaves."""
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from callbacks import samples


def shown(page) -> list[str]:
    """The results grid's columns that are displayed, by method (their ids are pattern ids)."""
    return page.duo.driver.execute_script(
        "return [...document.querySelectorAll('#results-grid .result-col')]"
        ".filter(c => getComputedStyle(c).display !== 'none').map(c => JSON.parse(c.id).method);")


def visible(page, selector: str) -> bool:
    return page.duo.driver.execute_script(
        "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;", selector)


def press(page, key):
    ActionChains(page.duo.driver).send_keys(key).perform()


def test_present_hides_the_controls_steps_with_keys_and_clicks_and_esc_leaves(camlens, until):
    page = camlens.open("?model=vehicles&methods=gradcam,gradients,layercam")
    page.click("#samples button[title^='A bus on snow']")
    page.figures(3)
    methods = shown(page)
    assert len(methods) == 3 and visible(page, "#control-panel") and not visible(page, "#present-caption")

    page.click("#present-open")
    assert until(lambda: shown(page) == methods[:1], 5), shown(page)
    for hidden in ("#control-panel", "#method-panel", "#input-card", ".navbar", "#present-open"):
        assert not visible(page, hidden), hidden
    assert visible(page, "#present-caption") and visible(page, "#present-next")
    assert "(1 of 3)" in page.duo.find_element("#present-caption").text
    # the figure fills most of the window's height (above the bar of arrows)
    height, window = page.duo.driver.execute_script(
        "return [document.querySelector('#results-grid .present-current .result-graph')"
        ".getBoundingClientRect().height, window.innerHeight];")
    assert height > 0.75 * window, (height, window)

    press(page, Keys.ARROW_RIGHT)
    assert until(lambda: shown(page) == methods[1:2], 5), shown(page)
    assert "(2 of 3)" in page.duo.find_element("#present-caption").text
    press(page, Keys.ARROW_LEFT)
    press(page, Keys.ARROW_LEFT)   # wraps round to the last figure
    assert until(lambda: shown(page) == methods[2:], 5), shown(page)
    page.duo.find_element("#present-next").click()   # the on-screen arrow
    assert until(lambda: shown(page) == methods[:1], 5), shown(page)

    # Down: the gallery's next photo, its figures, still one at a time.
    def photo():   # the input card is hidden meanwhile: its text, not what is shown
        return page.duo.driver.execute_script("return document.querySelector('#original figcaption')"
                                              ".textContent.split(' · ')[0];")

    assert photo() == "bus-on-snow.png"
    press(page, Keys.ARROW_DOWN)
    assert until(lambda: photo() != "bus-on-snow.png", 15), photo()
    order = [s["name"] for s in samples()]
    assert photo() == order[(order.index("bus-on-snow.png") + 1) % len(order)]
    page.duo.wait_for_contains_text("#present-caption", "(1 of 3)", timeout=15)
    assert until(lambda: len(shown(page)) == 1, 10), shown(page)
    press(page, Keys.PAGE_UP)   # and back
    assert until(lambda: photo() == "bus-on-snow.png", 15), photo()

    press(page, Keys.ESCAPE)
    assert until(lambda: len(shown(page)) == 3, 5), shown(page)
    assert visible(page, "#control-panel") and not visible(page, "#present-caption")
    assert page.duo.get_logs() == []
