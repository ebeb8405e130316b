"""The explain page in headless Chromium: upload, predictions, methods, display, bad inputs, jobs."""
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys


def test_upload_shows_the_image_and_its_prediction_chart(camlens, images):
    page = camlens.open("?model=tiny-gap.keras")
    page.upload(images["scene"])
    page.duo.wait_for_contains_text("#original", "scene.jpg", timeout=20)
    assert "1024×768" in page.duo.find_element("#original").text
    page.duo.wait_for_contains_text("#predictions", "Top-5 predictions", timeout=20)
    bars = page.duo.find_elements("#predictions .bars .point")
    assert len(bars) == 3  # the tiny model has three classes, all shown
    labels = page.duo.find_element("#predictions").text
    assert {"car", "bus", "truck"} <= set(labels.split())
    assert page.figures(1)[0].startswith("Grad-CAM")  # the default method, drawn at once
    assert page.duo.get_logs() == []


def test_three_methods_give_three_figures_and_opacity_redraws_without_a_model_run(camlens, images):
    page = camlens.open("?model=tiny-gap.keras")
    page.upload(images["small"])
    page.figures(1)
    page.click("#method-gradients")
    page.figures(2)
    page.click("#method-layercam")
    titles = page.figures(3)
    assert [t.split(" · ")[0] for t in titles] == ["Grad-CAM", "Layer-CAM", "Vanilla gradients"]
    assert "methods=gradcam,layercam,gradients" in page.duo.driver.current_url

    before_stats, before_images = page.stats(), page.image_sources()
    assert before_stats["explain_calls"] >= 1
    handle = page.duo.find_element("#opacity [role=slider]")
    handle.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    # Drawn in the browser (assets/display.js): each figure's map layer takes the new opacity.
    def layers():
        return page.duo.driver.execute_script(
            "return [...document.querySelectorAll('#results-grid .result-graph .layer-above .imagelayer image')]"
            ".map(e => e.getAttribute('opacity'));")
    deadline = time.time() + 15
    while time.time() < deadline and layers() != ["0.7"] * 3:
        time.sleep(0.2)
    assert layers() == ["0.7"] * 3
    assert len(page.image_sources()) == 6 and page.image_sources() == before_images   # same pictures
    assert "opacity=0.7" in page.duo.driver.current_url
    after_stats = page.stats()
    assert after_stats["explain_calls"] == before_stats["explain_calls"]  # drawn from the cache
    assert after_stats["predict_calls"] == before_stats["predict_calls"]

    # The report button hands out the same view as one self-contained HTML file.
    import re
    import urllib.request

    report = page.duo.find_element("#download-report")
    assert "d-none" not in report.get_attribute("class")
    href = report.get_attribute("href")
    assert re.search(r"/report/[0-9a-f]+\.html\?cmap=jet&opacity=0.7&view=overlay", href), href   # what is shown
    with urllib.request.urlopen(href, timeout=30) as answer:
        html = answer.read().decode("utf-8")
    links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
    assert links and all(link.startswith("data:") for link in links)
    assert html.count("<figure class='panel'>") == 3


def test_switching_model_changes_the_layer_list(camlens, images):
    page = camlens.open("?model=tiny-gap.keras")
    page.duo.wait_for_contains_text("#layer", "conv_b", timeout=20)
    page.choose("#model", "Tiny Flatten")
    page.duo.wait_for_contains_text("#layer", "second", timeout=20)
    page.duo.find_element("#layer").click()
    options = [e.text for e in page.duo.find_elements(".dash-dropdown-option")]
    assert any(o.startswith("second") for o in options) and any(o.startswith("first") for o in options)
    assert not any("conv_b" in o for o in options)
    assert "model=tiny-flat.keras" in page.duo.driver.current_url


def test_bad_uploads_each_get_a_message_and_the_page_goes_on(camlens, images):
    page = camlens.open("?model=tiny-gap.keras")
    for name in ("text", "empty", "truncated"):
        count = len(page.alerts())
        page.upload(images[name])
        deadline = time.time() + 15
        while time.time() < deadline and len(page.alerts()) == count:
            time.sleep(0.2)
    messages = page.alerts()
    assert len(messages) == 3, messages
    joined = "\n".join(messages)
    assert "notes.txt: This file is not an image" in joined
    assert "empty.png: The file is empty." in joined
    assert "cut.jpg: The image is truncated or corrupt" in joined
    # Dismiss one, then a good upload still works.
    page.duo.find_element("#alerts .alert .btn-close").click()
    page.duo.wait_for_no_elements("#alerts .alert:nth-child(3)", timeout=5)
    page.upload(images["small"])
    page.figures(1)
    assert page.duo.find_element("#original").text.startswith("small.png")


def test_cam_on_a_model_without_gap_gets_a_message_in_the_grid(camlens, images):
    page = camlens.open("?model=tiny-flat.keras&methods=cam,gradcam")
    page.upload(images["small"])
    page.figures(1)
    page.duo.wait_for_contains_text("#results-grid", "CAM needs", timeout=10)


def set_option(page, name: str, value: str):
    if not page.duo.driver.execute_script("return document.querySelector('#method-panel details').open;"):
        page.click("#method-panel summary")
    field = page.duo.find_element(f"""input[id='{{"name":"{name}","type":"option"}}']""")
    field.clear()
    field.send_keys(value, Keys.ENTER)


def test_a_slow_method_runs_in_the_background_with_progress(camlens, images):
    # Occlusion with a fine stride: slow enough to watch, after the server has already run TF
    # (a forked DiskcacheManager job would hang here; ours run on the server's threads).
    # RISE with 20,000 masks after it keeps the job going for seconds on any machine.
    page = camlens.open("?model=tiny-gap.keras&methods=gradcam,occlusion,rise")
    set_option(page, "occlusion_patch", "6")
    set_option(page, "occlusion_stride", "1")
    set_option(page, "rise_masks", "20000")
    page.upload(images["small"])
    page.figures(1)  # Grad-CAM at once; occlusion and RISE wait for the button
    page.duo.wait_for_contains_text("#slow-estimate", "23482 model passes", timeout=15)
    assert "Occlusion" in page.duo.find_element("#results-grid").text

    page.click("#run-slow")
    seen = []
    deadline = time.time() + 90
    while time.time() < deadline and len(page.titles()) < 3:
        shown, value = page.progress()
        if shown:
            seen.append(value)
        time.sleep(0.1)
    titles = page.figures(3, timeout=60)
    assert titles[1].startswith("Occlusion") and titles[2].startswith("RISE")
    assert any(0 < p < 100 for p in seen), seen  # the bar moved while the job ran
    assert page.progress()[0] is False
    assert page.duo.get_logs() == []


def test_cancel_stops_the_background_job(camlens, images, until):
    page = camlens.open("?model=tiny-gap.keras&methods=rise")
    set_option(page, "rise_masks", "20000")   # seconds of work on any machine: time to cancel
    page.upload(images["small"])
    page.duo.wait_for_contains_text("#slow-estimate", "20001 model passes", timeout=15)
    page.click("#run-slow")
    assert until(lambda: page.progress()[1] > 0, 30), "the job never reported progress"
    page.click("#cancel")
    assert until(lambda: not page.progress()[0], 10), "the progress bar stayed after cancel"
    handle = page.dash.camlens.manager.handle
    running = lambda: [k for k in handle.iterkeys() if k.startswith('["job"')  # noqa: E731
                       and handle.get(k)["state"] == "running"]
    assert until(lambda: not running(), 10), "the job thread did not stop"
    assert page.duo.find_element("#run-slow").is_enabled()
    assert page.titles() == []  # no RISE figure: its card still asks to run it
    assert "RISE" in page.duo.find_element("#results-grid").text


def test_a_gallery_sample_with_the_bundled_model(camlens):
    from callbacks import samples

    if not any(s["name"] == "bus-on-snow.png" for s in samples()):
        pytest.skip("assets/samples has no bus-on-snow.png (python -m models.gallery writes it)")
    page = camlens.open("?model=vehicles&methods=gradcam,activations")
    page.click("#samples button[title^='A bus on snow']")
    page.duo.wait_for_contains_text("#original", "bus-on-snow.png", timeout=20)
    page.duo.wait_for_contains_text("#predictions", "bus", timeout=20)
    top = page.duo.driver.execute_script(
        "const g = document.querySelector('#predictions .js-plotly-plot');"
        "const d = g.data[0]; const i = d.x.indexOf(Math.max(...d.x)); return [d.y[i], d.x[i]];")
    assert top[0] == "bus" and top[1] > 0.5
    titles = page.figures(2)
    assert titles[0].startswith("Grad-CAM") and titles[0].endswith("bus")
    assert titles[1].startswith("Activations") and "16 strongest channels" in titles[1]
    assert not visible(page, "#domain-alert")   # a scene for a scene model: no warning
    # The model card is a click away, and the unavailable zoo models are listed, greyed, with why.
    page.click("#model-card-open")
    page.duo.wait_for_contains_text("#model-card-modal", "Vehicles", timeout=10)
    page.duo.find_element("#model-card-modal .btn-close").click()
    page.duo.wait_for_no_elements("#model-card-modal.show", timeout=5)
    page.click("#model")
    disabled = page.duo.driver.execute_script(
        "return [...document.querySelectorAll('.dash-dropdown-option')].filter(o => o.querySelector('input:disabled'))"
        ".map(o => [o.innerText.trim(), (o.querySelector('[title]') || o).getAttribute('title')]);")
    unavailable = [m.name for m in page.dash.camlens.registry.list() if not m.available]
    assert len(disabled) == len(unavailable)
    reasons = {m.display_name: m.reason for m in page.dash.camlens.registry.list() if not m.available}
    for label, title in disabled:   # each greyed entry says why on hover
        assert label.endswith("(unavailable)") and title == reasons[label.removesuffix(" (unavailable)")]


def test_the_url_sets_the_view_and_bad_values_are_reported(camlens, images):
    page = camlens.open("?model=tiny-flat.keras&layer=nope&methods=gradients,eigencam&cmap=viridis"
                        "&opacity=0.3&view=heatmap&scale=shared")
    page.duo.wait_for_contains_text("#alerts", "Layer 'nope' is not a spatial layer", timeout=20)
    assert page.duo.find_element("#colormap").get_attribute("value") == "viridis"
    assert page.duo.find_element("#method-eigencam").is_selected()
    assert not page.duo.find_element("#method-gradcam").is_selected()
    page.upload(images["small"])
    titles = page.figures(2)
    assert [t.split(" · ")[0] for t in titles] == ["Eigen-CAM", "Vanilla gradients"]
    url = page.duo.driver.current_url
    assert "layer=second" in url and "cmap=viridis" in url and "view=heatmap" in url and "scale=shared" in url


def test_an_unavailable_model_says_why(camlens):
    unavailable = [m for m in camlens.dash.camlens.registry.list() if not m.available]
    if not unavailable:
        pytest.skip("every model is available here")
    page = camlens.open(f"?model={unavailable[0].name}")
    page.duo.wait_for_contains_text("#alerts", unavailable[0].reason.split(".")[0], timeout=20)
    assert page.duo.find_element("#layer").text.strip() in ("", "Layer (spatial output)")


REAL = Path(__file__).resolve().parents[3] / "shared" / "samples" / "real"


def visible(page, selector: str) -> bool:
    return page.duo.driver.execute_script(
        "const e = document.querySelector(arguments[0]); return !!(e && e.offsetParent);", selector)


def test_a_real_photo_gets_the_photo_model_and_a_scene_model_warns(camlens, until):
    """A fresh page explains photos with the photo model: the yellow Ferrari is a sports car. A model
    that only knows drawn scenes says so beside its predictions, with a one-click way back."""
    ferrari = REAL / "car_front_01.jpg"
    if not ferrari.is_file():
        pytest.skip("needs ../shared/samples/real (test data beside the repo)")
    page = camlens.open()
    page.duo.wait_for_contains_text("#model", "EfficientNet-Lite0", timeout=20)
    page.upload(ferrari)
    page.duo.wait_for_contains_text("#predictions", "sports car", timeout=60)
    top = page.duo.driver.execute_script(
        "const g = document.querySelector('#predictions .js-plotly-plot');"
        "const d = g.data[0]; const i = d.x.indexOf(Math.max(...d.x)); return [d.y[i], d.x[i]];")
    assert top[0] == "sports car" and top[1] > 0.5
    assert not visible(page, "#domain-alert")
    page.choose("#model", "Vehicles (bundled, synthetic scenes)")
    page.duo.wait_for_contains_text("#domain-alert", "never photos", timeout=30)
    page.click("#domain-switch")
    page.duo.wait_for_contains_text("#model", "EfficientNet-Lite0", timeout=20)
    assert until(lambda: not visible(page, "#domain-alert"), timeout=20)


def test_picking_a_second_layer_fuses_the_cams(camlens, images):
    page = camlens.open("?model=tiny-gap.keras")
    page.upload(images["small"])
    assert "conv_a" not in page.figures(1)[0]
    page.choose("#layer", "conv_a")
    deadline, titles = time.time() + 30, []
    while time.time() < deadline and not any("conv_a + conv_b" in t for t in titles):
        titles = page.titles()
        time.sleep(0.2)
    assert len(titles) == 1 and titles[0].startswith("Grad-CAM") and "conv_a + conv_b" in titles[0], titles
    assert "layer=conv_b,conv_a" in page.duo.driver.current_url
    assert page.duo.get_logs() == []


def test_a_rather_than_class_from_the_list_or_a_bar_and_the_signed_display(camlens, images):
    """Picking a "rather than" class redraws the map for "A rather than B" (its subtitle names both
    and the URL keeps it); the signed display says what red and blue mean; a bar click can set the
    contrast; the explained class itself is refused with a message."""
    from selenium.webdriver.common.action_chains import ActionChains

    classes = ["car", "bus", "truck"]
    page = camlens.open("?model=tiny-gap.keras")
    page.upload(images["small"])
    target = page.figures(1)[0].rsplit(" for ", 1)[-1]   # "... raised the model's score for bus"
    assert target in classes
    others = [c for c in classes if c != target]
    page.choose("#contrast", f"{classes.index(others[0])}: {others[0]}")
    deadline = time.time() + 20
    while time.time() < deadline and not page.titles()[0].endswith(f"{target} rather than {others[0]}"):
        time.sleep(0.2)
    assert page.titles()[0].endswith(f"{target} rather than {others[0]}"), page.titles()
    assert f"contrast={classes.index(others[0])}" in page.duo.driver.current_url

    page.click("#signed")
    deadline = time.time() + 15
    said = f"red: the parts of the photo that favour {target} rather than {others[0]}; blue: the parts that favour {others[0]}"
    while time.time() < deadline and not page.titles()[0].endswith(said):
        time.sleep(0.2)
    assert page.titles()[0].endswith(said), page.titles()
    assert "signed=1" in page.duo.driver.current_url

    # A bar click with "Clicking a bar sets: rather than" fills the contrast, not the class.
    page.click("#bar-sets input[value=contrast]")
    labels = [t.text for t in page.duo.find_elements("#predictions .ytick text")]
    bars = page.duo.find_elements("#predictions .bars .point")
    bar = bars[labels.index(others[1])]
    ActionChains(page.duo.driver).move_to_element(bar).click().perform()
    deadline = time.time() + 20
    said = f"favour {target} rather than {others[1]}; blue: the parts that favour {others[1]}"
    while time.time() < deadline and not page.titles()[0].endswith(said):
        time.sleep(0.2)
    assert page.titles()[0].endswith(said), page.titles()

    # The explained class itself as "rather than": refused, with a message.
    page.choose("#contrast", f"{classes.index(target)}: {target}")
    page.duo.wait_for_contains_text("#alerts", "must be another class", timeout=20)
    assert page.duo.get_logs() == []
