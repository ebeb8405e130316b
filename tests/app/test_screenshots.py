"""The main view with results at desktop (1280x800) and phone (390x844) size: it fits, nothing
spills sideways, and the pictures are saved (CAMLENS_SCREENSHOTS=1 writes assets/screenshot*.png)."""
import os
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
METHODS = "gradcam,gradcam++,layercam,gradients,hirescam,eigencam"


def model_query() -> str:
    """The bundled vehicle model when it has been trained, else the tiny test model."""
    return "vehicles" if (REPO / "models" / "vehicles.keras").is_file() else "tiny-gap.keras"


def sample(images) -> Path:
    """A gallery scene with several vehicles when the gallery exists, else a generated scene."""
    path = REPO / "assets" / "samples" / "cars-three.png"
    return path if path.is_file() else images["scene"]


@pytest.mark.parametrize("name, width, height, mobile", [
    ("screenshot.png", 1280, 800, False),
    ("screenshot-phone.png", 390, 844, True),
    ("screenshot-800.png", 800, 900, False),   # a small laptop window: checked, not published
])
def test_main_view_fits_and_is_captured(camlens, images, tmp_path, name, width, height, mobile):
    camlens.duo.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    page = camlens.open(f"?model={model_query()}&methods={METHODS}")
    page.upload(sample(images))
    page.figures(6)
    time.sleep(1.0)  # let Plotly finish its responsive resize
    overflow = page.duo.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
    assert overflow <= 0, f"the page is {overflow}px wider than the {width}px screen"
    if mobile:  # on phones the results follow the image controls, before the long method list
        page.duo.driver.execute_script(
            "document.querySelector('#input-card').scrollIntoView({block: 'start'});")
        order = page.duo.driver.execute_script(
            "return ['#control-panel', '#results', '#method-panel'].map("
            "s => document.querySelector(s).getBoundingClientRect().top);")
        assert order == sorted(order)
    time.sleep(0.3)
    out = tmp_path / name
    page.duo.driver.save_screenshot(str(out))
    assert out.stat().st_size > 20_000
    if os.environ.get("CAMLENS_SCREENSHOTS") == "1" and not name.endswith("-800.png"):
        shutil.copy(out, REPO / "assets" / name)
    shutil.copy(out, Path("/tmp") / name) if os.environ.get("CAMLENS_SCREENSHOTS_TMP") else None
