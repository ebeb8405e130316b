"""Beat the AI (path /challenge): a visitor and the model each name what a few photos show; after
each answer the model's answer, its top-5 and its gradient CAM are revealed, and at the end where
each of them went wrong.

The photos: the gallery (assets/samples/index.json's classes) plus an optional folder of labelled
photos (`Config.challenge_dir`); a game with a model uses the photos whose class is one of that
model's classes. A game's truth (its photos, right answers, choices and answers so far) lives on
the server in the store's meta cache under a random token; the browser holds only that token,
the photo and the choices' texts, so the answer is not in the page before the reveal, and two
visitors (or two tabs) never share a game. The model's work goes through `work` (cached), like
the explorer's.
"""
from __future__ import annotations

import json
import logging
import random
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from callbacks import _IMAGE_SUFFIXES, SAMPLES_DIR, samples, work
from callbacks import render as draw
from callbacks.store import fit, meta_key
from explain import METHODS
from explain.errors import ExplainError
from explain.methods import DEFAULT_METHODS
from layouts import challenge as view
from layouts.page import DEFAULTS

log = logging.getLogger("camlens.challenge")

LABELS_FILE = "labels.json"
MAX_FOLDER_PHOTOS = 5000       # more are ignored (a game needs ten)
GAME_SECONDS = 6 * 3600        # an unfinished game is forgotten after this
CHOICES = 4                    # the right class and three others
THUMB_SIDE = 240               # px, the end summary's maps
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


class FolderProblem(ValueError):
    """Why a folder of labelled photos cannot be used, in one line."""


class GameOver(ExplainError):
    """No game under this token (never started, finished long ago, or the cache was emptied)."""


@dataclass(frozen=True)
class Photo:
    name: str     # shown only after the reveal
    label: str    # its class, as the folder or the gallery writes it
    path: Path


# ---- the photos ----------------------------------------------------------------------------

def read_folder(folder: Path) -> list[Photo]:
    """The labelled photos of `folder`: `labels.json` mapping file names (in the folder) to class
    names, or else one subfolder per class holding its photos. FolderProblem when malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderProblem(f"{folder} is not a folder")
    labels_file = folder / LABELS_FILE
    photos = _from_labels(folder, labels_file) if labels_file.exists() else _from_subfolders(folder)
    if not photos:
        raise FolderProblem(f"{folder} holds neither {LABELS_FILE} nor subfolders of photos named by their class")
    if len(photos) > MAX_FOLDER_PHOTOS:
        log.warning("challenge folder %s: using the first %d of %d photos", folder, MAX_FOLDER_PHOTOS, len(photos))
    return photos[:MAX_FOLDER_PHOTOS]


def _from_labels(folder: Path, path: Path) -> list[Photo]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FolderProblem(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise FolderProblem(f"{path} is not valid JSON (line {error.lineno}: {error.msg})") from None
    except OSError as error:
        raise FolderProblem(f"{path} cannot be read ({error.strerror or error})") from None
    if not isinstance(data, dict) or not data:
        raise FolderProblem(f'{path} must map file names to class names, e.g. {{"bus.jpg": "school bus"}}')
    photos = []
    for name, label in data.items():
        if not isinstance(label, str) or not label.strip():
            raise FolderProblem(f"{path}: the class of {name!r} must be a class name, not {label!r}")
        if Path(name).name != name or name.startswith("."):
            raise FolderProblem(f"{path}: {name!r} must be the name of a file in the folder, without a path")
        if Path(name).suffix.lower() not in _IMAGE_SUFFIXES:
            raise FolderProblem(f"{path}: {name!r} is not an image file ({', '.join(_IMAGE_SUFFIXES)})")
        if not (folder / name).is_file():
            raise FolderProblem(f"{path} names {name!r}, which is not in {folder}")
        photos.append(Photo(name, label.strip(), folder / name))
    return photos


def _from_subfolders(folder: Path) -> list[Photo]:
    photos = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos += [Photo(f"{sub.name}/{f.name}", sub.name, f) for f in sorted(sub.iterdir())
                   if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith(".")]
    return photos


def gallery_photos() -> list[Photo]:
    """The gallery's scenes with the class assets/samples/index.json gives each."""
    listed = {s["name"] for s in samples()}
    try:
        items = json.loads((SAMPLES_DIR / "index.json").read_text()).get("samples", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [Photo(i["file"], i["class"], SAMPLES_DIR / i["file"]) for i in items
            if isinstance(i, dict) and i.get("file") in listed and isinstance(i.get("class"), str)]


def photo_set(config) -> tuple[list[Photo], str | None]:
    """The gallery plus the configured folder, and why the folder is left out (or None)."""
    photos = gallery_photos()
    if getattr(config, "challenge_dir", None) is None:
        return photos, None
    try:
        return photos + read_folder(config.challenge_dir), None
    except FolderProblem as error:
        return photos, f"The folder of labelled photos is not used: {error}."


def _plain(text: str) -> str:
    """A class name compared loosely: case, underscores and runs of spaces do not matter."""
    return " ".join(str(text).replace("_", " ").split()).casefold()


def _class_index(labels: list[str]) -> dict[str, int]:
    """A model's classes by their plain name (the first of equal names)."""
    index: dict[str, int] = {}
    for i, label in enumerate(labels):
        index.setdefault(_plain(label), i)
    return index


def playable_model(registry, photos: list[Photo], model: str | None) -> str | None:
    """`model` if the photos give it a game of the smallest size, else the available model they
    give the most rounds. Out of the box the photo model (the app's default) knows only the
    gallery's two drawn pickups, and a demo should not open on a two-photo game; with a folder of
    photos of its classes it stays."""
    def rounds(name):
        try:
            index = _class_index(registry.labels(name))
        except (ExplainError, KeyError):   # unavailable or unknown (a forged value)
            return 0
        return sum(_plain(p.label) in index for p in photos)

    if isinstance(model, str) and rounds(model) >= min(view.ROUND_CHOICES):
        return model
    counts = {info.name: rounds(info.name) for info in registry.list() if info.available}
    best = max(counts, key=counts.get, default=None)   # the first of equals: the listing's order
    return best if best is not None and counts[best] > 0 else model


def class_groups(registry, model: str) -> list[tuple[str, ...]]:
    """Groups of look-alike classes that wrong choices are drawn from first: for the photo
    models, ImageNet's vehicle classes (models.imagenet)."""
    from models.registry import PHOTOS

    if registry.info(model).domain == PHOTOS:
        from models.imagenet import VEHICLE_NAMES

        return [VEHICLE_NAMES]
    return []


def pick_choices(truth: int, count: int, nearby: list[int], rng: random.Random, count_of: int = CHOICES) -> list[int]:
    """The right class and up to `count_of - 1` others (first from `nearby`, then any of the
    model's `count` classes), shuffled."""
    out = [truth]
    for pool in (nearby, range(count)):
        candidates = [i for i in dict.fromkeys(pool) if i not in out and 0 <= i < count]
        rng.shuffle(candidates)
        out += candidates[: count_of - len(out)]
    rng.shuffle(out)
    return out


# ---- a game ------------------------------------------------------------------------------

def cam_method() -> str:
    """The map the game reveals: the first default method (explain.methods) that maps a class at
    a layer and is fast, i.e. the default gradient CAM; else the first such method declared."""
    def fits(m):
        info = METHODS[m]
        return info.needs_layer and info.needs_target and not info.slow

    return next(m for m in (*DEFAULT_METHODS, *METHODS) if fits(m))


def _key(token: str) -> str:
    return meta_key("challenge", token)


def save(store, token: str, state: dict) -> None:
    store.meta.set(_key(token), state, expire=GAME_SECONDS)


def load(store, token) -> dict:
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise GameOver("Press “Start a new game” to play.")
    state = store.meta.get(_key(token))
    if state is None:
        raise GameOver("This game has ended or was forgotten: press “Start a new game”.")
    return state


def new_game(store, registry, limits, photos: list[Photo], model: str, rounds: int,
             rng: random.Random | None = None) -> tuple[str, dict]:
    """Draw `rounds` photos whose class `model` knows, keep the game under a new random token."""
    rng = rng or random.Random(secrets.randbits(64))
    if rounds not in view.ROUND_CHOICES:
        raise ExplainError(f"A game has {', '.join(map(str, view.ROUND_CHOICES))} photos, not {rounds!r}.")
    info = registry.info(model)
    if not info.available:
        raise ExplainError(info.reason or f"{info.display_name} cannot be used now.")
    labels = registry.labels(model)
    index = _class_index(labels)
    eligible = [(p, index[_plain(p.label)]) for p in photos if _plain(p.label) in index]
    if not eligible:
        known = ", ".join(labels[:6]) + (", …" if len(labels) > 6 else "")
        raise ExplainError(f"None of the labelled photos shows a class {info.display_name} knows ({known}): "
                           "pick another model, or add photos of its classes (CAMLENS_CHALLENGE_DIR).")
    rng.shuffle(eligible)
    in_set = sorted({i for _, i in eligible})
    groups = [[index[_plain(n)] for n in g if _plain(n) in index] for g in class_groups(registry, model)]
    chosen, unread = [], []
    for photo, truth in eligible:
        if len(chosen) == rounds:
            break
        try:
            stored = work.upload(store, photo.path.read_bytes(), limits)
        except (OSError, ExplainError) as error:
            log.warning("challenge photo %s skipped: %s", photo.path, error)
            unread.append(f"{photo.name}: {error}")
            continue
        nearby = [i for g in groups if truth in g for i in g] + in_set
        chosen.append({"name": photo.name, "image": stored.key, "truth": truth, "guess": None, "ai": None,
                       "choices": pick_choices(truth, len(labels), nearby, rng)})
    if not chosen:
        raise ExplainError(f"No photo for {info.display_name} could be read ({unread[0]}).")
    notes = [f"{len(unread)} photo(s) could not be read and were skipped ({unread[0]})."] if unread else []
    if len(chosen) < rounds:
        notes.append(f"Only {len(chosen)} labelled photo(s) show a class {info.display_name} knows, so this "
                     f"game has {len(chosen)} round(s). More photos: a folder of labelled photos "
                     "(CAMLENS_CHALLENGE_DIR, see the README).")
    state = {"model": model, "rounds": chosen, "at": 0, "phase": "ask", "notes": notes}
    token = secrets.token_urlsafe(24)
    save(store, token, state)
    if not registry.warmed(model, timeout=0):
        registry.warm(model)   # it loads while the visitor looks at the first photo
    return token, state


def answer(store, registry, token: str, round_index, position) -> dict:
    """The visitor picked choice `position` in round `round_index`: record it and the model's
    answer (once: a second or late click changes nothing)."""
    state = load(store, token)
    if state["phase"] != "ask" or round_index != state["at"]:
        return state
    r = state["rounds"][state["at"]]
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(r["choices"]):
        raise ExplainError("That is not one of the choices.")
    rows = work.predictions(store, registry, r["image"], state["model"])
    if store.meta.incr(meta_key("challenge-answered", token, state["at"])) != 1:
        return load(store, token)   # another request of this game answered this round first
    r.update(guess=r["choices"][position], ai=rows[0]["index"], ai_probability=rows[0]["probability"])
    state["phase"] = "reveal"
    save(store, token, state)
    return state


def advance(store, token: str) -> dict:
    """From a reveal to the next photo, or to the end of the game."""
    state = load(store, token)
    if state["phase"] == "reveal":
        state["at"] += 1
        state["phase"] = "ask" if state["at"] < len(state["rounds"]) else "done"
        save(store, token, state)
    return state


def score(state: dict) -> tuple[int, int, int]:
    """(visitor right, model right, rounds answered)."""
    answered = [r for r in state["rounds"] if r["guess"] is not None]
    return (sum(r["guess"] == r["truth"] for r in answered), sum(r["ai"] == r["truth"] for r in answered),
            len(answered))


def where_it_looked(store, registry, model: str, image_key: str, target: int,
                    side: int | None = None) -> tuple[str | None, str | None]:
    """(data URI of the CAM overlay for `target`, None) or (None, why there is none)."""
    method = cam_method()
    try:
        context = work.Context(image=image_key, model=model, layer=work.layers_for(registry, model, None),
                               target=int(target))
        entry = work.compute(store, registry, context, [method])[method]
        if "error" in entry:
            return None, entry["error"]
        stored = store.image(image_key)
        if stored is None:
            raise ExplainError("The photo is no longer on the server.")
    except ExplainError as error:
        return None, str(error)
    display = draw.clean_display(DEFAULTS["cmap"], DEFAULTS["opacity"], "overlay", "map")
    picture = draw.shown(stored.display, entry, display, 1.0)[0]
    if side:
        return draw.jpeg_uri(fit(picture, side), 25_000), None
    return draw.jpeg_uri(picture), None


def screen(store, registry, state: dict):
    """The page for the game's state: a question, a reveal or the end summary."""
    labels = registry.labels(state["model"])
    total, at = len(state["rounds"]), state["at"]
    if state["phase"] == "ask":
        r = state["rounds"][at]
        stored = store.image(r["image"])
        if stored is None:
            raise GameOver("This game's photos were dropped from the server's cache: press “Start a new game”.")
        return view.round_view(at + 1, total, draw.jpeg_uri(stored.display, 80_000),
                               [labels[c] for c in r["choices"]], at)
    if state["phase"] == "reveal":
        r = state["rounds"][at]
        rows = work.predictions(store, registry, r["image"], state["model"])
        uri, error = where_it_looked(store, registry, state["model"], r["image"], r["ai"])
        return view.reveal_view({
            "number": at + 1, "total": total, "truth": labels[r["truth"]], "guess": labels[r["guess"]],
            "ai": labels[r["ai"]], "ai_probability": r["ai_probability"], "rows": rows, "ai_index": r["ai"],
            "truth_index": r["truth"], "map_uri": uri, "map_error": error,
            "method_name": METHODS[cam_method()].name, "last": at + 1 == total})
    you, ai, _ = score(state)
    mistakes = {"ai": [], "you": []}
    for r in state["rounds"]:
        for who in ("ai", "you"):
            said = r["ai"] if who == "ai" else r["guess"]
            if said != r["truth"]:
                thumb, _ = where_it_looked(store, registry, state["model"], r["image"], r["ai"], THUMB_SIDE)
                mistakes[who].append({"name": r["name"], "truth": labels[r["truth"]], "said": labels[said],
                                      "thumb_uri": thumb})
    return view.summary_view({"you": you, "ai": ai, "total": total, "ai_wrong": mistakes["ai"],
                              "you_wrong": mistakes["you"], "method_name": METHODS[cam_method()].name})


def register(deps) -> None:
    app, store, registry, config = deps.app, deps.store, deps.registry, deps.config
    if getattr(config, "challenge_dir", None) is not None:
        try:
            log.info("Beat the AI: %d labelled photos in %s", len(read_folder(config.challenge_dir)),
                     config.challenge_dir)
        except FolderProblem as error:
            log.warning("Beat the AI: the folder of labelled photos is not used: %s", error)

    app.clientside_callback(
        ClientsideFunction("challenge", "showPage"),
        Output("explorer-page", "className"),
        Output("challenge-page", "className"),
        Input("url", "pathname"),
        State("explorer-page", "className"),
        State("challenge-page", "className"),
    )

    @app.callback(
        Output("challenge-model", "value"),
        Input("url", "pathname"),
        State("challenge-model", "value"),
    )
    def opponent(path, model):
        """On opening the challenge: a model the photos give a real game (playable_model)."""
        if path != view.PATH:
            raise PreventUpdate
        best = playable_model(registry, photo_set(config)[0], model)
        if best == model:
            raise PreventUpdate
        return best

    @app.callback(
        Output("challenge-body", "children"),
        Output("challenge-score", "children"),
        Output("challenge-game", "data"),
        Output("challenge-alert", "children"),
        Input("challenge-start", "n_clicks"),
        Input({"type": "challenge-choice", "round": ALL, "index": ALL}, "n_clicks"),
        Input({"type": "challenge-next", "name": ALL}, "n_clicks"),
        State("challenge-model", "value"),
        State("challenge-rounds", "value"),
        State("challenge-game", "data"),
        prevent_initial_call=True,
    )
    def play(_start, _choices, _nexts, model, rounds, game):
        trigger = ctx.triggered_id
        if trigger is None or not any(t["value"] for t in ctx.triggered):
            raise PreventUpdate   # buttons (re)drawn, nothing clicked
        try:
            if trigger == "challenge-start" or trigger.get("name") == "again":
                photos, problem = photo_set(config)
                token, state = new_game(store, registry, deps.limits, photos, model, _int(rounds))
                notes = ([problem] if problem else []) + state["notes"]
                return (screen(store, registry, state), _score(state), {"token": token},
                        [view.notice(n) for n in notes])
            token = (game or {}).get("token") if isinstance(game, dict) else None
            if trigger.get("type") == "challenge-choice":
                state = answer(store, registry, token, trigger.get("round"), trigger.get("index"))
            else:
                state = advance(store, token)
            return screen(store, registry, state), _score(state), no_update, []
        except GameOver as error:
            return view.intro(), "", None, [view.notice(str(error), "info")]
        except (ExplainError, KeyError) as error:   # KeyError: models.UnknownModel, a plain message
            return no_update, no_update, no_update, [view.notice(str(error))]
        except Exception as error:  # noqa: BLE001 - the game goes on; the log has the details
            log.exception("Beat the AI failed", exc_info=error)
            return no_update, no_update, no_update, [view.notice(
                f"Something went wrong on the server ({type(error).__name__}); the details are in its log.",
                "danger")]


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _score(state: dict):
    you, ai, played = score(state)
    return view.score_line(you, ai, played)
