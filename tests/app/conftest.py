import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from app import Config, create_app

REPO = Path(__file__).resolve().parents[2]

# Two tiny models, saved as a user's models folder: one with a GAP + Dense head (CAM applies),
# one with Flatten + Dense and other layer names (CAM does not; the layer list differs).
_MAKE_MODELS = r"""
import json, sys
from pathlib import Path
import keras
out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
inp = keras.Input((64, 64, 3))
x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inp)
x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b")(x)
x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
y = keras.layers.Dense(3, activation="softmax", name="head")(x)
keras.Model(inp, y, name="tiny_gap").save(out / "tiny-gap.keras")
(out / "tiny-gap.keras.json").write_text(json.dumps(
    {"display_name": "Tiny GAP", "labels": ["car", "bus", "truck"], "description": "A **tiny** test model."}))
inp = keras.Input((48, 48, 3))
x = keras.layers.Conv2D(4, 3, activation="relu", name="first")(inp)
x = keras.layers.MaxPooling2D(name="pool")(x)
x = keras.layers.Conv2D(6, 3, activation="relu", name="second")(x)
x = keras.layers.Flatten(name="flat")(x)
y = keras.layers.Dense(2, activation="softmax", name="dense")(x)
keras.Model(inp, y, name="tiny_flat").save(out / "tiny-flat.keras")
(out / "tiny-flat.keras.json").write_text(json.dumps({"display_name": "Tiny Flatten"}))
"""


@pytest.fixture(scope="session")
def user_models(tmp_path_factory) -> Path:
    """A models folder with two tiny real Keras models (made in a subprocess: seconds, not minutes)."""
    folder = tmp_path_factory.mktemp("models")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _MAKE_MODELS, str(folder)], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return folder


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, Path]:
    """Upload files: a 1024x768 street scene (JPEG), and three bad files."""
    from models.scenes import make_scene

    folder = tmp_path_factory.mktemp("images")
    scene = make_scene(3, (768, 1024)).image
    paths = {"scene": folder / "scene.jpg", "text": folder / "notes.txt", "empty": folder / "empty.png",
             "truncated": folder / "cut.jpg", "small": folder / "small.png"}
    Image.fromarray(scene).save(paths["scene"], quality=90)
    Image.fromarray(make_scene(5, 160).image).save(paths["small"])
    paths["text"].write_text("these are notes, not pixels\n")
    paths["empty"].write_bytes(b"")
    data = paths["scene"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 3])
    return paths


@pytest.fixture
def config(tmp_path):
    return Config(cache_dir=tmp_path / "cache")


@pytest.fixture
def dash_app(config):
    return create_app(config)


@pytest.fixture
def client(dash_app):
    return dash_app.server.test_client()


@pytest.fixture
def camlens(dash_duo, tmp_path, user_models):
    """Start the real app on the tiny models; `camlens.open(query)` loads the page with a URL query."""
    app = create_app(Config(cache_dir=tmp_path / "cache", models_dir=user_models))
    dash_duo.start_server(app)

    class Page:
        duo = dash_duo
        dash = app

        def open(self, query: str = ""):
            dash_duo.wait_for_page(dash_duo.server_url + "/" + query, timeout=20)
            dash_duo.wait_for_element("#upload input[type=file]", timeout=20)
            return self

        def upload(self, path: Path):
            dash_duo.find_element("#upload input[type=file]").send_keys(str(path))

        def click(self, selector: str, timeout: float = 5):
            """A real click, after scrolling the element to the middle; retried while the page
            is still moving under it (figures arriving shift the layout)."""
            from selenium.common.exceptions import ElementClickInterceptedException

            deadline = time.time() + timeout
            while True:
                element = dash_duo.find_element(selector)
                dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
                try:
                    return element.click()
                except ElementClickInterceptedException:
                    if time.time() > deadline:
                        cover = dash_duo.driver.execute_script(
                            "const r = arguments[0].getBoundingClientRect();"
                            "const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
                            "return [r.x, r.y, window.innerHeight, window.scrollY, getComputedStyle(document.body).overflow, document.documentElement.scrollHeight, !!document.querySelector('.modal.show'), document.activeElement && document.activeElement.outerHTML.slice(0,200)];", element)
                        raise AssertionError(f"{selector} is covered: {cover}") from None
                    time.sleep(0.25)

        def choose(self, dropdown: str, text: str):
            """Pick the option reading `text` in a Dash dropdown."""
            self.click(dropdown)
            dash_duo.wait_for_element(".dash-dropdown-option", timeout=5)
            for option in dash_duo.find_elements(".dash-dropdown-option"):
                if option.text.strip() == text:
                    return option.click()
            raise AssertionError(f"no option {text!r} in {dropdown}")

        def figures(self, count: int, timeout: float = 30):
            """Wait until `count` result figures are drawn; return their titles."""
            deadline = time.time() + timeout
            while time.time() < deadline:
                titles = self.titles()
                if len(titles) == count:
                    return titles
                time.sleep(0.2)
            raise AssertionError(f"expected {count} figures, saw {len(titles)}: {titles}")

        def titles(self) -> list[str]:
            return dash_duo.driver.execute_script(
                "return [...document.querySelectorAll('#results-grid .result-graph .gtitle')].map(e => {"
                " const sub = e.parentNode.querySelector('.gtitle-subtitle');"
                " const lines = sub ? [...sub.querySelectorAll('tspan.line')].map(t => t.textContent) : [];"
                " return e.textContent + (sub ? ' · ' + (lines.length ? lines.join(' ') : sub.textContent) : ''); });")

        def progress(self) -> tuple[bool, float]:
            """(is the progress bar shown, its value)."""
            return tuple(dash_duo.driver.execute_script(
                "const p = document.querySelector('#progress'); const b = p && p.querySelector('.progress-bar');"
                "return [!!p && p.offsetParent !== null, b ? parseFloat(b.getAttribute('aria-valuenow') || 0) : 0];"))

        def stats(self) -> dict:
            return app.server.test_client().get("/debug/stats").get_json()

        def image_sources(self) -> list[str]:
            return dash_duo.driver.execute_script(
                "return [...document.querySelectorAll('#results-grid .result-graph .imagelayer image')]"
                ".map(e => e.getAttribute('href') || e.getAttribute('xlink:href'));")

        def alerts(self) -> list[str]:
            return dash_duo.driver.execute_script(
                "return [...document.querySelectorAll('#alerts .alert')].map(e => e.innerText.trim());")

    return Page()


def until(predicate, timeout: float = 10, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.fixture(name="until")
def until_fixture():
    return until
