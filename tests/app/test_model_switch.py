"""Choosing a model that is not loaded says so at once (in the browser), then shows its card line."""


def test_the_page_says_a_model_is_loading_until_it_is_ready(camlens, until):
    page = camlens.open("?model=tiny-gap.keras")
    duo = page.duo
    duo.wait_for_contains_text("#model-info", "input 64×64", timeout=60)
    duo.driver.execute_script("""
        window.__modelInfo = [];
        new MutationObserver(() => window.__modelInfo.push(document.querySelector('#model-info').textContent))
            .observe(document.querySelector('#model-info'), {childList: true, subtree: true, characterData: true});
    """)
    page.choose("#model", "Tiny Flatten")
    duo.wait_for_contains_text("#model-info", "input 48×48", timeout=60)
    seen = duo.driver.execute_script("return window.__modelInfo;")
    assert any(text.startswith("Loading Tiny Flatten") for text in seen), seen
    assert seen[-1].startswith("user") or "input 48×48" in seen[-1], seen
    # Let its background warm-up end before the server stops (a thread stopped mid-trace aborts).
    assert until(lambda: page.dash.camlens.registry.warmed("tiny-flat.keras", timeout=0), timeout=60)
