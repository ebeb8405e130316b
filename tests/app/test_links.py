"""Links that reopen the view: the image (a sample by name, an upload by its content key), the
class, score, counterfactual, methods, every method option and the display, all in the URL; a
"Copy link" button; a link whose upload is gone says so and applies the rest."""
import time

import pytest
from selenium.webdriver.common.keys import Keys

from callbacks import urlstate
from explain import OPTIONS

KEY = "ab" * 32   # a well-formed content key no upload has


# -- the query string, without a browser ----------------------------------------------------------

def test_a_link_round_trips_image_class_score_options_and_display():
    values = {"model": "tiny-gap.keras", "layer": ["conv_a", "conv_b"], "methods": ["gradients", "gradcam"],
              "image": {"key": KEY, "name": "my photo.jpg", "width": 10, "height": 10}, "target": 2,
              "score": "probability", "cf": True, "contrast": 0, "cmap": "viridis", "opacity": 0.35,
              "options": {"smoothgrad_samples": 40, "ig_baseline": "blur", "ig_steps": 32, "occlusion_patch": None}}
    query = urlstate.build(values)
    assert "ig_steps" not in query and "occlusion_patch" not in query   # defaults and blanks stay out
    parsed = urlstate.parse(query)
    assert parsed == {"model": "tiny-gap.keras", "layer": "conv_a,conv_b", "methods": ["gradcam", "gradients"],
                      "image": KEY, "name": "my photo.jpg", "target": 2, "score": "probability", "cf": True,
                      "contrast": 0, "cmap": "viridis", "opacity": 0.35,
                      "options": {"smoothgrad_samples": 40, "ig_baseline": "blur"}}
    sample = urlstate.build({"image": {"key": KEY, "name": "cars-three.png", "sample": "cars-three.png"},
                             "target": 0})
    assert sample == "?sample=cars-three.png&target=0"
    assert urlstate.parse(sample) == {"sample": "cars-three.png", "target": 0}
    assert "target" not in urlstate.build({"model": "m", "target": 1})   # no image, no class


def test_option_values_are_checked_against_their_declarations():
    samples = OPTIONS["smoothgrad_samples"]
    parsed = urlstate.parse(f"?smoothgrad_samples=-5&ig_steps=1e9&fixations_sigma=0.25&scorecam_top_k=12.6"
                            f"&occlusion_fill=lava&lime_sign=both&eg_samples=nan&rise_masks=&activations_top_k=abc"
                            f"&seed=7&batch_size=2&lime_kernel_width=3")
    assert parsed["options"] == {"smoothgrad_samples": samples.lo, "ig_steps": OPTIONS["ig_steps"].page_max,
                                 "fixations_sigma": 0.25, "scorecam_top_k": 13, "lime_sign": "both"}
    # Options without a field on the page (seed, batch size, ...) never come from a link.
    assert not {"seed", "batch_size", "lime_kernel_width"} & set(urlstate.LINK_OPTIONS)


@pytest.mark.parametrize("query", [
    "?image=zz&target=-1&contrast=1e3&opacity=nan&cf=2&signed=maybe&score=softmax&view=3d",
    "?image=" + "AB" * 32 + "&target=99999999999&methods=,,,&cmap=",
    "?image=%00%ff&name=x&sample=&target=%20",
])
def test_malformed_values_are_ignored(query):
    assert urlstate.parse(query) == {}


def test_an_unknown_sample_is_reported_not_opened():
    assert urlstate.parse("?sample=../../etc/passwd") == {"unknown_sample": "../../etc/passwd"}


def test_the_stated_retention_is_what_the_store_does(tmp_path):
    """The words the page says about uploads, checked against the real disk cache: once full, it
    drops the ten least recently viewed uploads; one just viewed stays."""
    import numpy as np

    from callbacks.store import RedisCache, Store

    store = Store(tmp_path, uploads_mb=40)
    assert urlstate.retention(store) == ("uploads are kept until 40 MB of them fill the server, then the 10 "
                                         "least recently viewed make room")
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(12)]
    for key in keys[:11]:   # a 1024x768 photo takes 3.4 MB in the store: 11 fit in 40 MB
        store.put_image(key, rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8))
    assert all(store.image(k) is not None for k in keys[1:11])   # (viewing them all, oldest first)
    assert store.image(keys[0]) is not None                       # the first one, viewed last
    store.put_image(keys[11], rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8))
    assert [i for i, k in enumerate(keys) if store.image(k) is not None] == [0, 11]
    store.uploads = RedisCache(client=None, prefix="uploads", ttl=6 * 3600)
    assert urlstate.retention(store) == "uploads are kept for 6 hours"


# -- in a real browser ---------------------------------------------------------------------------

def state(page) -> dict:
    """What a visitor sees of the view: the preview, class, score, switches, options, figures."""
    driver = page.duo.driver
    return {
        "preview": driver.execute_script("const i = document.querySelector('#original img'); return i && i.src;"),
        "caption": page.duo.find_element("#original figcaption").text,
        "target": page.duo.find_element("#target").text.strip(),
        "contrast": page.duo.find_element("#contrast").text.strip(),
        "layers": page.duo.find_element("#layer").text.strip(),
        "score": driver.execute_script("return document.querySelector('#score input:checked').value;"),
        "counterfactual": driver.execute_script("return document.querySelector('#counterfactual').checked;"),
        "colormap": driver.execute_script("return document.querySelector('#colormap').value;"),
        "samples": driver.execute_script(
            """return document.querySelector(`input[id='{"name":"smoothgrad_samples","type":"option"}']`).value;"""),
        "baseline": driver.execute_script(
            """return document.querySelector(`select[id='{"name":"ig_baseline","type":"option"}']`).value;"""),
        "titles": page.titles(),
    }


def open_options(page):
    if not page.duo.driver.execute_script("return document.querySelector('#method-panel details').open;"):
        page.click("#method-panel summary")


def copy_link(page) -> str:
    """Press "Copy link"; the URL it copied (from the clipboard; the field holds the same)."""
    driver = page.duo.driver
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": page.duo.server_url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    page.click("#copy-link")
    page.duo.wait_for_text_to_equal("#copy-link-status", "Link copied", timeout=5)
    field = driver.execute_script("return document.querySelector('#copy-link-text').value;")
    copied = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done('unreadable: ' + e));")
    assert copied == field == driver.current_url, (copied, field, driver.current_url)
    return copied


def fresh(page, url: str):
    """Forget everything the browser keeps for the app, then open `url`."""
    driver = page.duo.driver
    driver.get("about:blank")
    driver.delete_all_cookies()
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": page.duo.server_url, "storageTypes": "all"})
    page.duo.wait_for_page(url, timeout=20)
    page.duo.wait_for_element("#upload input[type=file]", timeout=20)


def test_a_copied_link_reopens_the_same_view_in_a_fresh_browser(camlens, images, until):
    page = camlens.open("?model=tiny-gap.keras&layer=conv_a,conv_b&methods=gradcam,layercam,gradients")
    page.upload(images["small"])
    page.figures(3)
    top = page.duo.find_element("#target").text.strip()
    other, third = [c for c in ("0: car", "1: bus", "2: truck") if c != top]
    page.choose("#target", other)
    page.choose("#contrast", third)
    page.click("#score input[value=probability]")
    page.click("#counterfactual")
    page.duo.driver.execute_script("document.querySelector('#colormap').scrollIntoView({block: 'center'});")
    from selenium.webdriver.support.ui import Select
    Select(page.duo.find_element("#colormap")).select_by_value("viridis")
    open_options(page)
    field = page.duo.find_element("""input[id='{"name":"smoothgrad_samples","type":"option"}']""")
    field.clear()
    field.send_keys("7", Keys.ENTER)
    Select(page.duo.find_element("""select[id='{"name":"ig_baseline","type":"option"}']""")).select_by_value("blur")
    assert until(lambda: all(s in page.duo.driver.current_url for s in
                             ("smoothgrad_samples=7", "ig_baseline=blur", "cmap=viridis", "cf=1",
                              "score=probability", f"target={other[0]}", f"contrast={third[0]}",
                              "layer=conv_a,conv_b")), timeout=15), page.duo.driver.current_url
    wanted = f"{other.split(': ')[1]} rather than {third.split(': ')[1]}"
    assert until(lambda: len(page.titles()) == 3 and all(wanted in t for t in page.titles()), timeout=30), \
        page.titles()   # every figure redrawn for the final class (all three methods honour it)
    time.sleep(1)   # let the last redraw land
    before = state(page)
    assert before["target"] == other and before["contrast"] == third and before["samples"] == "7"
    assert before["baseline"] == "blur" and "conv_a" in before["layers"] and "conv_b" in before["layers"]
    assert [t.split(" · ")[0] for t in before["titles"]] == ["Grad-CAM", "Layer-CAM", "Vanilla gradients"]

    started = time.perf_counter()
    url = copy_link(page)
    copy_seconds = time.perf_counter() - started
    assert "image=" in url and "name=small.png" in url
    calls = page.stats()["explain_calls"]

    fresh(page, url)
    started = time.perf_counter()
    assert until(lambda: len(page.titles()) == 3 and page.duo.find_element("#target").text.strip() == other,
                 timeout=30)
    assert until(lambda: state(page)["titles"] == before["titles"], timeout=15), \
        (page.titles(), before["titles"])
    reopen_seconds = time.perf_counter() - started
    after = state(page)
    assert after == before
    # The maps came from the server's cache; at most one pass ran for the moment the class was
    # set and the "rather than" class not yet (it waits for the model's class list).
    assert page.stats()["explain_calls"] <= calls + 1
    assert page.duo.driver.current_url == url              # and the page writes the same link back
    assert page.duo.get_logs() == []                       # no CSP or callback errors
    print(f"copy {copy_seconds:.2f} s; reopened view complete in {reopen_seconds:.2f} s")


def test_a_sample_link_opens_the_sample_with_its_class(camlens, until):
    page = camlens.open("?model=tiny-gap.keras&sample=cars-three.png&target=2&methods=gradcam")
    page.duo.wait_for_contains_text("#original", "cars-three.png", timeout=20)
    assert until(lambda: page.duo.find_element("#target").text.strip() == "2: truck", timeout=20)
    assert page.figures(1)[0].startswith("Grad-CAM") and "truck" in page.titles()[0]
    assert until(lambda: "sample=cars-three.png" in page.duo.driver.current_url, timeout=10)
    assert "target=2" in page.duo.driver.current_url
    # Without a clipboard (plain http on another host): the link is shown, selected, in a field.
    driver = page.duo.driver
    driver.execute_script("Object.defineProperty(navigator, 'clipboard', {value: undefined});")
    page.click("#copy-link")
    assert until(lambda: page.duo.find_element("#copy-link-text").is_displayed(), timeout=5)
    assert until(lambda: page.duo.find_element("#copy-link-status").text in ("Link copied",
                                                                             "Press Ctrl+C to copy the link"))
    assert driver.execute_script("const f = document.querySelector('#copy-link-text');"
                                 "return f.value.slice(f.selectionStart, f.selectionEnd);") == driver.current_url
    assert page.duo.get_logs() == []


def test_an_expired_upload_says_so_and_the_rest_of_the_link_applies(camlens, images, until):
    page = camlens.open(f"?model=tiny-gap.keras&image={KEY}&name=gone.jpg&target=1&methods=gradcam,gradients"
                        "&cmap=viridis&smoothgrad_samples=9")
    assert until(lambda: page.alerts(), timeout=20)
    assert page.alerts() == ["The photo in this link is no longer on the server (uploads are kept until 256 MB "
                             "of them fill the server, then the 10 least recently viewed make room): upload it "
                             "again."]
    assert "Upload an image" in page.duo.find_element("#results-grid").text
    checked = page.duo.driver.execute_script(
        "return [...document.querySelectorAll('#methods input:checked')].map(e => e.value);")
    assert checked == ["gradcam", "gradients"]
    assert state_value(page, "#colormap") == "viridis"
    assert state_value(page, """input[id='{"name":"smoothgrad_samples","type":"option"}']""") == "9"
    page.upload(images["small"])              # upload it again: the view goes on
    assert [t.split(" · ")[0] for t in page.figures(2)] == ["Grad-CAM", "Vanilla gradients"]
    assert page.duo.get_logs() == []


def state_value(page, selector: str) -> str:
    return page.duo.driver.execute_script("return document.querySelector(arguments[0]).value;", selector)


def test_malformed_links_get_no_500_and_the_page_goes_on(camlens, images, until):
    junk = ("?model=%00&image=zz&sample=..%2F..%2Fapp.py&target=-1&contrast=abc&opacity=nan&ig_steps=1e309"
            "&smoothgrad_samples=-5&occlusion_fill=lava&methods=,,,&layer=%ff&cf=2&name=%3Cscript%3E"
            "&signed=maybe&score=1")
    page = camlens.open(junk)
    assert until(lambda: page.alerts(), timeout=20)
    assert page.alerts() == ["The sample '../../app.py' in this link is not in the gallery: pick an image."]
    assert state_value(page, """input[id='{"name":"smoothgrad_samples","type":"option"}']""") == "1"   # clamped
    assert state_value(page, """input[id='{"name":"ig_steps","type":"option"}']""") == "32"            # ignored
    assert state_value(page, """select[id='{"name":"occlusion_fill","type":"option"}']""") == "grey"
    page.choose("#model", "Tiny GAP")
    page.upload(images["small"])
    assert page.figures(1)[0].startswith("Grad-CAM")     # the default method: "methods=,,," was ignored
    assert page.duo.get_logs() == []
    # The same junk straight at the server: the page is a page, not an error.
    assert page.duo.driver.execute_script(
        "return fetch(arguments[0]).then(r => r.status);", page.duo.server_url + "/" + junk) == 200
