"""Beat the AI (/challenge): the photo set and its folder, games kept apart on the server, and the
game played in headless Chromium against the real bundled scene model and the real photo model."""
import json
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import Config, create_app
from callbacks import challenge as ch
from explain import METHODS
from explain.methods import DEFAULT_METHODS

SCENE_MODEL = "vehicles"
SCENE_MODEL_LABEL = "Vehicles (bundled, synthetic scenes)"


def scene(path: Path, seed: int, label: str | None = None, size: int = 160) -> Path:
    from models.scenes import make_scene

    Image.fromarray(make_scene(seed, size, label=label).image).save(path)
    return path


# ---- the folder of labelled photos ----------------------------------------------------------

def test_a_folder_with_labels_json_and_one_with_class_subfolders(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    scene(flat / "a.png", 1, "bus")
    scene(flat / "b.jpg", 2, "car")
    (flat / "labels.json").write_text(json.dumps({"a.png": "school bus", "b.jpg": " sports car "}))
    photos = ch.read_folder(flat)
    assert [(p.name, p.label) for p in photos] == [("a.png", "school bus"), ("b.jpg", "sports car")]

    nested = tmp_path / "nested"
    for cls, seed in (("bus", 3), ("bus", 4), ("truck", 5)):
        (nested / cls).mkdir(parents=True, exist_ok=True)
        scene(nested / cls / f"{seed}.png", seed, cls)
    (nested / "bus" / "notes.txt").write_text("not a photo")
    (nested / ".hidden").mkdir()
    scene(nested / ".hidden" / "x.png", 6)
    photos = ch.read_folder(nested)
    assert [(p.name, p.label) for p in photos] == [("bus/3.png", "bus"), ("bus/4.png", "bus"), ("truck/5.png", "truck")]


@pytest.mark.parametrize("labels, message", [
    ('{"a.png": "bus",', "is not valid JSON (line 1"),
    ('["a.png"]', "must map file names to class names"),
    ('{}', "must map file names to class names"),
    ('{"a.png": 3}', "the class of 'a.png' must be a class name"),
    ('{"a.png": "  "}', "the class of 'a.png' must be a class name"),
    ('{"../a.png": "bus"}', "must be the name of a file in the folder, without a path"),
    ('{"notes.txt": "bus"}', "'notes.txt' is not an image file"),
    ('{"gone.png": "bus"}', "names 'gone.png', which is not in"),
])
def test_a_malformed_folder_gets_a_one_line_reason(tmp_path, labels, message):
    scene(tmp_path / "a.png", 1)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "labels.json").write_text(labels)
    with pytest.raises(ch.FolderProblem, match=re.escape(message)) as caught:
        ch.read_folder(tmp_path)
    assert "\n" not in str(caught.value)
    photos, problem = ch.photo_set(Config(cache_dir=tmp_path / "cache", challenge_dir=tmp_path))
    assert problem.startswith("The folder of labelled photos is not used: ") and message in problem
    assert "\n" not in problem and photos == ch.gallery_photos()   # the gallery still plays


def test_an_empty_folder_and_a_file_are_refused(tmp_path):
    with pytest.raises(ch.FolderProblem, match="holds neither labels.json nor subfolders"):
        ch.read_folder(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="challenge dir .* is not a folder"):
        Config.from_env(env={"CAMLENS_CHALLENGE_DIR": str(tmp_path / "file")})
    assert Config.from_env(env={"CAMLENS_CHALLENGE_DIR": str(tmp_path)}).challenge_dir == tmp_path


def test_the_gallery_gives_each_scene_its_class():
    photos = ch.gallery_photos()
    index = json.loads((ch.SAMPLES_DIR / "index.json").read_text())["samples"]
    assert len(photos) == len(index) >= 10
    assert {p.label for p in photos} == {"car", "pickup", "bus", "truck", "motorcycle"}
    assert all(p.path.is_file() for p in photos)


# ---- choices and the map ------------------------------------------------------------------

def test_choices_are_the_truth_and_three_look_alikes():
    rng = random.Random(0)
    for truth in range(5):
        picks = ch.pick_choices(truth, 5, [0, 1, 2, 3, 4], rng)
        assert len(picks) == 4 == len(set(picks)) and truth in picks
    positions = {ch.pick_choices(2, 5, [], random.Random(seed)).index(2) for seed in range(40)}
    assert positions == {0, 1, 2, 3}   # the right answer is not always in the same place
    # look-alikes first: with more than three of them, no other class is offered
    for seed in range(20):
        assert set(ch.pick_choices(500, 1000, [10, 11, 12, 13, 14], random.Random(seed))) <= {500, 10, 11, 12, 13, 14}
    # a model with three classes: the truth and the two others
    assert sorted(ch.pick_choices(1, 3, [], rng)) == [0, 1, 2]


def test_the_map_is_the_default_gradient_cam_of_the_declarations():
    method = ch.cam_method()
    assert method in DEFAULT_METHODS
    info = METHODS[method]
    assert info.family == "cam" and "cam" in info.passes and not info.slow and info.needs_target


# ---- games on the server ------------------------------------------------------------------

@pytest.fixture
def deps(tmp_path):
    return create_app(Config(cache_dir=tmp_path / "cache")).camlens


def test_a_game_on_the_server_and_two_games_never_share_state(deps):
    photos = ch.gallery_photos()
    one, state = ch.new_game(deps.store, deps.registry, deps.limits, photos, SCENE_MODEL, 3, random.Random(1))
    two, _ = ch.new_game(deps.store, deps.registry, deps.limits, photos, SCENE_MODEL, 3, random.Random(1))
    assert one != two and len(one) >= 32
    assert [r["guess"] for r in state["rounds"]] == [None] * 3 and state["phase"] == "ask"
    labels = deps.registry.labels(SCENE_MODEL)
    for r in state["rounds"]:   # each photo's class is the gallery's
        assert labels[r["truth"]] == next(p.label for p in photos if p.name == r["name"])

    # Game one: the right answer in round 0, a wrong one in round 1.
    r0 = state["rounds"][0]
    after = ch.answer(deps.store, deps.registry, one, 0, r0["choices"].index(r0["truth"]))
    assert after["phase"] == "reveal" and ch.score(after)[0] == 1
    assert ch.score(ch.load(deps.store, two)) == (0, 0, 0)          # game two is untouched
    again = ch.answer(deps.store, deps.registry, one, 0, (r0["choices"].index(r0["truth"]) + 1) % 4)
    assert again["rounds"][0]["guess"] == r0["truth"]                # a second click changes nothing
    ch.advance(deps.store, one)
    r1 = ch.load(deps.store, one)["rounds"][1]
    assert ch.answer(deps.store, deps.registry, one, 0, 0)["phase"] == "ask"   # a stale round: ignored
    wrong = next(i for i, c in enumerate(r1["choices"]) if c != r1["truth"])
    after = ch.answer(deps.store, deps.registry, one, 1, wrong)
    assert ch.score(after)[0] == 1 and ch.score(after)[2] == 2
    # The model's answer is its top-1 on the photo.
    from callbacks import work

    top = work.predictions(deps.store, deps.registry, r1["image"], SCENE_MODEL)[0]["index"]
    assert after["rounds"][1]["ai"] == top
    assert ch.score(ch.load(deps.store, two)) == (0, 0, 0)
    with pytest.raises(ch.ExplainError, match="not one of the choices"):
        ch.answer(deps.store, deps.registry, two, 0, 7)
    for bad in (None, "x", "a" * 40, {"token": 1}):
        with pytest.raises(ch.GameOver):
            ch.load(deps.store, bad)


def test_a_model_without_photos_of_its_classes_says_so(deps, tmp_path):
    photos = [ch.Photo("x.png", "tabby", scene(tmp_path / "x.png", 1))]
    with pytest.raises(ch.ExplainError, match="None of the labelled photos shows a class Vehicles"):
        ch.new_game(deps.store, deps.registry, deps.limits, photos, SCENE_MODEL, 3)
    with pytest.raises(ch.ExplainError, match="not 4"):
        ch.new_game(deps.store, deps.registry, deps.limits, ch.gallery_photos(), SCENE_MODEL, 4)
    with pytest.raises(KeyError, match="No model named"):
        ch.new_game(deps.store, deps.registry, deps.limits, ch.gallery_photos(), "no-such-model", 3)


def test_the_photo_model_draws_its_wrong_choices_from_the_vehicle_classes(deps, tmp_path):
    from models.imagenet import VEHICLE_NAMES

    if not deps.registry.info("efficientnet-lite0").available:
        pytest.skip("efficientnet-lite0 is not installed")
    folder = tmp_path / "photos"
    folder.mkdir()
    names = {"a.png": "sports_car", "b.png": "School Bus", "c.png": "pickup", "d.png": "tabby"}
    for seed, name in enumerate(names):
        scene(folder / name, seed)
    (folder / "labels.json").write_text(json.dumps(names))
    photos = ch.read_folder(folder)
    token, state = ch.new_game(deps.store, deps.registry, deps.limits, photos, "efficientnet-lite0", 5,
                               random.Random(3))
    labels = deps.registry.labels("efficientnet-lite0")
    assert sorted(labels[r["truth"]] for r in state["rounds"]) == ["pickup", "school bus", "sports car", "tabby"]
    assert "Only 4 labelled photo(s)" in state["notes"][0]
    for r in state["rounds"]:
        offered = [labels[c] for c in r["choices"]]
        assert len(set(offered)) == 4 and labels[r["truth"]] in offered
        if labels[r["truth"]] in VEHICLE_NAMES:
            assert set(offered) <= set(VEHICLE_NAMES), offered


def test_the_opponent_is_a_model_the_photos_give_a_real_game(deps, tmp_path):
    """Out of the box the photo model knows two gallery scenes (the pickups): the challenge opens
    against a scene model instead; a folder of photos of its classes keeps the photo model."""
    if not deps.registry.info("efficientnet-lite0").available:
        pytest.skip("efficientnet-lite0 is not installed")
    gallery = ch.gallery_photos()
    assert sum(p.label == "pickup" for p in gallery) < 3 < len(gallery)
    assert ch.playable_model(deps.registry, gallery, "efficientnet-lite0") == SCENE_MODEL
    assert ch.playable_model(deps.registry, gallery, "vehicles-shortcut") == "vehicles-shortcut"
    photos = gallery + [ch.Photo(f"{i}.png", "sports car", scene(tmp_path / f"{i}.png", i)) for i in range(2)]
    assert ch.playable_model(deps.registry, photos, "efficientnet-lite0") == "efficientnet-lite0"
    for forged in ("no-such-model", None, 7):
        assert ch.playable_model(deps.registry, gallery, forged) == SCENE_MODEL
    assert ch.playable_model(deps.registry, [], "efficientnet-lite0") == "efficientnet-lite0"


# ---- in the browser ------------------------------------------------------------------------

class Game:
    """The challenge page in dash_duo's Chromium."""

    def __init__(self, duo, app):
        self.duo, self.app = duo, app

    def open(self):
        self.duo.wait_for_page(self.duo.server_url + "/challenge", timeout=20)
        self.duo.wait_for_element("#challenge-start", timeout=20)
        self.duo.wait_for_element("#challenge-model", timeout=20)   # an async component: later
        return self

    def js(self, script, *args):
        return self.duo.driver.execute_script(script, *args)

    def click(self, selector):
        self.click_element(self.duo.find_element(selector))

    def click_element(self, element, timeout: float = 10):
        """A real click after scrolling the element to the middle, retried while something moving
        in (the alert of a short game, the photo loading) still covers it."""
        from selenium.common.exceptions import ElementClickInterceptedException

        deadline = time.time() + timeout
        while True:
            self.js("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
            try:
                return element.click()
            except ElementClickInterceptedException:
                if time.time() > deadline:
                    raise
                time.sleep(0.25)

    def start(self, rounds: int = 3, model_label: str | None = SCENE_MODEL_LABEL):
        if model_label:
            self.click("#challenge-model")
            self.duo.wait_for_element(".dash-dropdown-option", timeout=5)
            next(o for o in self.duo.find_elements(".dash-dropdown-option") if o.text.strip() == model_label).click()
        self.click_element(next(l for l in self.duo.find_elements("#challenge-rounds label") if l.text.strip() == str(rounds)))
        self.click("#challenge-start")
        self.duo.wait_for_element("#challenge-round .challenge-choice", timeout=30)

    def state_token(self) -> str:
        """The one thing the page holds about its game: the token in #challenge-game's data."""
        for _ in range(50):
            data = self.js(
                "const s = window.store.getState(); const path = s.paths.strs['challenge-game'];"
                "let node = s.layout; for (const k of path) node = node[k]; return node.props.data;")
            if data:
                assert set(data) == {"token"}
                return data["token"]
            time.sleep(0.1)
        raise AssertionError("no game token in the page")

    def server_state(self) -> dict:
        return ch.load(self.app.camlens.store, self.state_token())

    def choices(self) -> list[str]:
        return [b.text.strip() for b in self.duo.find_elements("#challenge-round .challenge-choice")]

    def pick(self, position: int):
        self.click_element(self.duo.find_elements("#challenge-round .challenge-choice")[position])
        self.duo.wait_for_element("#challenge-reveal img.challenge-map", timeout=30)

    def score(self) -> str:
        return self.duo.find_element("#challenge-score-line").text

    def next(self):
        self.click("#challenge-reveal button[id*='challenge-next']")


def reveal_is_complete(game: Game, classes: int):
    src = game.duo.find_element("#challenge-reveal img.challenge-map").get_attribute("src")
    assert src.startswith("data:image/jpeg;base64,") and len(src) > 2000
    game.duo.wait_for_contains_text("#challenge-top5", "Top-5 predictions", timeout=10)
    assert len(game.duo.find_elements("#challenge-top5 .bars .point")) == min(5, classes)
    assert "Where the AI looked" in game.duo.find_element("#challenge-reveal").text


@pytest.fixture
def play(dash_duo, tmp_path):
    """Start the app (optionally with a folder of labelled photos) and open the challenge."""
    def start(challenge_dir=None):
        app = create_app(Config(cache_dir=tmp_path / "cache", challenge_dir=challenge_dir))
        dash_duo.start_server(app)
        return Game(dash_duo, app).open()
    return start


def test_three_rounds_against_the_scene_model_a_score_and_the_summary(play):
    game = play()
    if game.app.camlens.registry.info("efficientnet-lite0").available:   # the app's default model
        game.duo.wait_for_text_to_equal("#challenge-model .dash-dropdown-value", SCENE_MODEL_LABEL, timeout=10)
    assert "d-none" in game.duo.find_element("#explorer-page").get_attribute("class")
    game.start(3)
    state = game.server_state()
    labels = game.app.camlens.registry.labels(SCENE_MODEL)
    for i in range(3):
        game.duo.wait_for_contains_text("#challenge-round", f"Photo {i + 1} of 3", timeout=15)
        r = state["rounds"][i]
        assert game.choices() == [labels[c] for c in r["choices"]]
        # before the reveal the challenge holds neither the photo's name nor which choice is right
        source = game.js("return document.getElementById('challenge-page').outerHTML;")
        assert r["name"] not in source and "The answer" not in source and "challenge-reveal" not in source
        # round 0 right, then wrong ones
        position = r["choices"].index(r["truth"]) if i == 0 else \
            next(k for k, c in enumerate(r["choices"]) if c != r["truth"])
        game.pick(position)
        reveal_is_complete(game, len(labels))
        assert game.js("return document.documentElement.scrollWidth <= window.innerWidth;"), game.js(
            "return [document.documentElement.scrollWidth, window.innerWidth];")
        state = game.server_state()
        r = state["rounds"][i]
        text = game.duo.find_element("#challenge-reveal").text
        assert f"The answer: {labels[r['truth']]}" in text and f"The AI said “{labels[r['ai']]}”" in text
        you, ai, played = ch.score(state)
        assert played == i + 1 and you == 1
        assert game.score().startswith(f"You {you} · AI {ai}")
        game.next()
    game.duo.wait_for_element("#challenge-summary", timeout=20)
    assert game.js("return document.documentElement.scrollWidth <= window.innerWidth;")   # no sideways scroll
    you, ai, _ = ch.score(state)
    summary = game.duo.find_element("#challenge-summary").text
    assert f"you got {you} right, the AI got {ai} right" in summary
    ai_wrong = sum(r["ai"] != r["truth"] for r in state["rounds"])
    assert len(game.duo.find_elements("#challenge-ai-wrong img.challenge-thumb")) == ai_wrong
    you_wrong = game.duo.find_elements("#challenge-you-wrong figure")
    assert len(you_wrong) == 2
    assert all(i.get_attribute("src").startswith("data:image/jpeg")
               for i in game.duo.find_elements("#challenge-you-wrong img"))
    # Play again: a new game, a new token
    old = game.state_token()
    game.click("#challenge-summary button[id*='again']")
    game.duo.wait_for_contains_text("#challenge-round", "Photo 1 of 3", timeout=15)
    assert game.state_token() != old and game.score().startswith("You 0 · AI 0")
    # The navbar goes back to the explorer, and the explorer is what "/" shows.
    game.click("#nav-explore")
    game.duo.wait_for_element("#upload", timeout=10)
    assert "d-none" in game.duo.find_element("#challenge-page").get_attribute("class")
    assert game.duo.get_logs() == []


def test_two_browser_windows_play_two_games_that_never_mix(play):
    game = play()
    driver = game.duo.driver
    first = driver.current_window_handle
    game.start(3)
    token_a = game.state_token()
    driver.switch_to.new_window("window")
    game.open()
    game.start(3)
    token_b = game.state_token()
    assert token_a != token_b
    # B answers twice: A's game on the server, and A's page, still say nothing was played
    for _ in range(2):
        game.pick(0)
        game.next()
        game.duo.wait_for_element("#challenge-round .challenge-choice", timeout=15)
    assert ch.score(ch.load(game.app.camlens.store, token_b))[2] == 2
    assert ch.score(ch.load(game.app.camlens.store, token_a)) == (0, 0, 0)
    driver.switch_to.window(first)
    assert game.state_token() == token_a and game.score().startswith("You 0 · AI 0")
    game.pick(0)
    assert ch.score(ch.load(game.app.camlens.store, token_a))[2] == 1
    assert ch.score(ch.load(game.app.camlens.store, token_b))[2] == 2
    assert "after 1 photo" in game.score()


def test_a_labelled_folder_plays_against_the_photo_model(play, tmp_path, shared_dir):
    """Generated images labelled with ImageNet classes, plus the shared real photos whose
    SOURCES.md description names exactly one ImageNet vehicle class (no other labels are stated)."""
    from models.imagenet import VEHICLE_NAMES

    folder = tmp_path / "labelled"
    folder.mkdir()
    labels = {"gen-bus.png": "school bus", "gen-car.png": "sports car"}
    scene(folder / "gen-bus.png", 11, "bus", 224)
    scene(folder / "gen-car.png", 12, "car", 224)
    real = shared_dir / "samples" / "real"
    sources = real / "SOURCES.md"
    if sources.is_file():
        for line in sources.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) < 2 or not (real / cells[0]).is_file():
                continue
            named = [n for n in VEHICLE_NAMES if re.search(rf"\b{re.escape(n)}\b", cells[1])]
            if len(named) == 1 and len(labels) < 6:
                (folder / cells[0]).write_bytes((real / cells[0]).read_bytes())
                labels[cells[0]] = named[0]
    (folder / "labels.json").write_text(json.dumps(labels))
    game = play(folder)
    if not game.app.camlens.registry.info("efficientnet-lite0").available:
        pytest.skip("efficientnet-lite0 is not installed")
    game.start(10, model_label=None)   # the default model: the photo model
    state = game.server_state()
    assert state["model"] == "efficientnet-lite0"
    gallery = [p for p in ch.gallery_photos() if p.label == "pickup"]
    assert sorted(r["name"] for r in state["rounds"]) == sorted([*labels, *(p.name for p in gallery)])
    game.duo.wait_for_contains_text("#challenge-alert", f"Only {len(labels) + len(gallery)} labelled photo(s)")
    r = state["rounds"][0]
    game.pick(r["choices"].index(r["truth"]))
    reveal_is_complete(game, 1000)
    assert game.score().startswith("You 1 · AI ")
    assert game.duo.get_logs() == []


def test_a_malformed_folder_is_named_in_one_line_and_the_gallery_still_plays(play, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "labels.json").write_text('{"a.png": "bus"')
    game = play(tmp_path / "bad")
    game.start(3)
    game.duo.wait_for_contains_text("#challenge-alert", "The folder of labelled photos is not used", timeout=10)
    message = game.duo.find_element("#challenge-alert .alert").text.strip()
    assert "\n" not in message and "labels.json is not valid JSON (line 1" in message
    game.pick(0)
    reveal_is_complete(game, 5)
