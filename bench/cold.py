"""Cold start: how long the first explanation takes in a fresh process (run by hand; not a test).

    .venv/bin/python bench/cold.py [--models efficientnet-lite0 resnet50v2] [--repeats 2]
                                   [--no-server] [--no-peer] [--before DIR]

Every measurement runs in a fresh Python process (subprocess), so nothing is traced, imported or
cached in memory beforehand; the medians of `--repeats` runs are printed (2 shared cores: runs
swing, compare rows of one run).

API path (`python bench/cold.py --child ...`), process start to:
  ours        Explainer(model) then explain(image, ["gradcam"]) - what a script pays;
  ours+warm   Explainer + warmup("gradcam", "gradients") then Grad-CAM - what the app's registry does;
  ours+kept   Explainer(kept_passes=DIR) then Grad-CAM, DIR filled by an earlier process (a first,
              unreported run of the same model): a restart or a second worker (explain.kept);
  tf-keras-vis  Gradcam(model, ReplaceToLinear, clone=True)(CategoricalScore, x) - the peer's first call
              (only when tf-keras-vis is installed: `pip install tf-keras-vis`, not a requirement).
  Columns: imports done, model built, first Grad-CAM, and the second (warm) one for reference.

Server path: serve.py on a free 127.0.0.1 port (fresh private cache folder), then a simulated
browser tab speaking the Dash callback protocol (bench/load.py's Page): load the page, choose the
model (ResNet50V2 is offered as a user file in CAMLENS_MODELS_DIR), upload a sample, until the
first callback answers with a figure. Columns: server start -> /healthz answers; a visitor who
comes at once: server start -> first figure, and /healthz -> first figure; a visitor who comes
`--visit-after` seconds after the
start: opening the page (then at once their upload, or the model choice then the upload) -> first
figure. Each server row runs with a fresh cache folder, again after a first start filled its
kept passes (a restart), and for the default model after `serve.py --keep-passes` filled them
(what the Docker build does). `--before DIR` runs the same
against another checkout (e.g. `git archive HEAD | tar -x -C DIR`) with the same venv.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "samples" / "bus-on-grass.png"
MODELS = ("efficientnet-lite0", "resnet50v2")
DEFAULT_MODEL = MODELS[0]   # the app's default (the first usable model)
RESNET_FILE = "resnet50v2.keras"


# ---- children (fresh processes) -------------------------------------------------------------------
def _build(name: str):
    """(model, preprocess, layer) of a benchmark model."""
    import keras

    if name == "resnet50v2":
        keras.utils.set_random_seed(0)
        model = keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3))
        return model, keras.applications.resnet_v2.preprocess_input, "post_relu"
    from models import efficientnet_lite

    spec = next(s for s in efficientnet_lite.LITE if s.name == name)
    model = efficientnet_lite.load(spec, efficientnet_lite.weights_path(spec))
    return model, efficientnet_lite.preprocess, efficientnet_lite.DEFAULT_LAYER


def child(kind: str, name: str, t0: float) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    marks = {}
    import numpy as np
    import tensorflow as tf  # noqa: F401
    from PIL import Image

    image = np.asarray(Image.open(SAMPLE).convert("RGB").resize((224, 224)))
    if kind == "peer":
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    else:
        from explain import Explainer
        from models.registry import WARM_METHODS
    marks["imports"] = time.time() - t0
    model, preprocess, layer = _build(name)
    marks["model"] = time.time() - t0
    if kind == "peer":
        x = preprocess(image[None].astype("float32"))
        gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)

        def once():
            return gradcam(CategoricalScore([779]), x, penultimate_layer=layer)
    else:
        kept = os.environ["CAMLENS_BENCH_KEPT"] if kind == "kept" else None
        explainer = Explainer(model, preprocess, input_size=(224, 224), default_layer=layer, kept_passes=kept)
        if kind == "app":
            explainer.warmup(methods=WARM_METHODS)
            marks["warm"] = time.time() - t0

        def once():
            return explainer.explain(image, ["gradcam"])
    once()
    marks["first"] = time.time() - t0
    start = time.time()
    once()
    marks["second"] = time.time() - start
    return marks


def run_child(kind: str, name: str, kept: Path | None = None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), CAMLENS_BENCH_KEPT=str(kept or ""))
    t0 = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--model", name, "--t0", repr(t0)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {name} failed:\n{done.stderr[-2000:]}")
    marks = json.loads(lines[-1])
    marks["exit"] = time.time() - t0
    return marks


# ---- server ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resnet_folder() -> Path:
    """A models folder holding ResNet50V2 with random weights (a user file, as the app offers it)."""
    folder = Path(tempfile.mkdtemp(prefix="camlens-cold-models-"))
    code = (f"import keras; keras.utils.set_random_seed(0); "
            f"keras.applications.ResNet50V2(weights=None, input_shape=(224, 224, 3)).save({str(folder / RESNET_FILE)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                   capture_output=True, timeout=600)
    (folder / (RESNET_FILE + ".json")).write_text(json.dumps({
        "display_name": "ResNet50V2 (random weights)", "preprocessing": "-1-1", "default_layer": "post_relu"}))
    return folder


def serve_once(checkout: Path, model: str, models_dir: Path | None, visit_after: float | None,
               warm_start: bool, cache: Path | None = None) -> dict:
    """Start serve.py from `checkout`; one visitor at /healthz time (visit_after None) or later.
    `cache`: the cache folder to use and keep (a restart); None: a fresh one, removed after."""
    sys.path.insert(0, str(ROOT / "bench"))
    from load import Page, data_url

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keep_cache = cache is not None
    cache = cache or Path(tempfile.mkdtemp(prefix="camlens-cold-cache-"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CAMLENS_HOST="127.0.0.1", CAMLENS_PORT=str(port),
               CAMLENS_CACHE_DIR=str(cache), CAMLENS_WARM_START="1" if warm_start else "0",
               CAMLENS_LOG_LEVEL="INFO", PYTHONPATH=str(checkout))
    if models_dir:
        env["CAMLENS_MODELS_DIR"] = str(models_dir)
    else:
        env.pop("CAMLENS_MODELS_DIR", None)
    t0 = time.time()
    server = subprocess.Popen([sys.executable, str(checkout / "serve.py")], cwd=checkout, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(iter(server.stderr.readline, "")), daemon=True).start()
    out = {}
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError("server exited:\n" + "".join(log[-30:]))
            try:
                urllib.request.urlopen(url + "/healthz", timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        out["healthz"] = time.time() - t0
        if visit_after is not None:
            time.sleep(max(0.0, t0 + visit_after - time.time()))
        visit = time.time()   # the visitor opens the page, and at once uploads (or picks the model first)
        deps = json.loads(urllib.request.urlopen(url + "/_dash-dependencies", timeout=600).read())
        deps = [d for d in deps if not d.get("clientside_function")]   # those run in the browser
        page = Page(url, deps, timeout=600)
        first = {}
        run = page.run

        def timed_run(dep, changed):
            answer = run(dep, changed)
            if "figure" not in first and any(c.startswith("results-grid.") for c in answer) and \
                    '"figure"' in json.dumps(page.get("results-grid", "children")):
                first["figure"] = time.time()
            return answer

        page.run = timed_run
        page.start()
        value = RESNET_FILE if model == "resnet50v2" else model
        if page.get("model", "value") != value:
            page.set("model", "value", value)
        page._set("upload", "filename", SAMPLE.name)
        page.set("upload", "contents", data_url(SAMPLE))
        if "figure" not in first:
            raise RuntimeError("no figure came back:\n" + "".join(log[-30:]))
        out["first_figure"] = first["figure"] - t0
        out["healthz_to_figure"] = out["first_figure"] - out["healthz"]
        out["visit_to_figure"] = first["figure"] - visit
    except Exception as error:
        raise RuntimeError(f"{error}\nserver log:\n" + "".join(log[-40:])) from None
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        if not keep_cache:
            shutil.rmtree(cache, ignore_errors=True)
    return out


def keep_passes(checkout: Path, cache: Path) -> None:
    """`serve.py --keep-passes` into `cache`, before any server runs there."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CAMLENS_CACHE_DIR=str(cache), PYTHONPATH=str(checkout))
    env.pop("CAMLENS_MODELS_DIR", None)
    subprocess.run([sys.executable, str(checkout / "serve.py"), "--keep-passes"], cwd=checkout, env=env,
                   check=True, stdout=subprocess.DEVNULL)


# ---- main -----------------------------------------------------------------------------------------
def med(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    return f"{statistics.median(values):.2f}" if values else "-"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--visit-after", type=float, default=25.0,
                        help="seconds after the server's start the second visitor comes")
    parser.add_argument("--before", type=Path, help="another checkout to run the server rows against")
    parser.add_argument("--child", choices=("api", "app", "kept", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model, args.t0)), flush=True)
        return

    try:
        import tf_keras_vis  # noqa: F401
        peer = not args.no_peer
    except ImportError:
        peer = False
    if not args.no_api:
        kinds = [("api", "ours"), ("app", "ours+warm"), ("kept", "ours+kept")] + \
            ([("peer", "tf-keras-vis")] if peer else [])
        print("API path, fresh process -> first Grad-CAM (s; medians of", args.repeats, "runs)")
        print(f"{'model':<20} {'path':<13} {'imports':>8} {'model':>7} {'warm-up':>8} {'1st CAM':>8} "
              f"{'after model':>11} {'2nd CAM':>8}")
        for name in args.models:
            kept = Path(tempfile.mkdtemp(prefix="camlens-cold-kept-"))
            run_child("kept", name, kept)   # the earlier process that keeps the passes
            for kind, label in kinds:
                runs = []
                for _ in range(args.repeats):
                    r = run_child(kind, name, kept)
                    r["after"] = r["first"] - r["model"]
                    runs.append(r)
                print(f"{name:<20} {label:<13} {med(runs, 'imports'):>8} {med(runs, 'model'):>7} "
                      f"{med(runs, 'warm'):>8} {med(runs, 'first'):>8} {med(runs, 'after'):>11} "
                      f"{med(runs, 'second'):>8}", flush=True)
            shutil.rmtree(kept, ignore_errors=True)
    if args.no_server:
        return
    folder = resnet_folder() if "resnet50v2" in args.models else None
    checkouts = [("this checkout", ROOT, True)]
    if args.before:
        checkouts.append((f"{args.before.name} (before)", args.before.resolve(), True))
    print(f"\nServer path: serve.py start -> first figure over HTTP (s; medians of {args.repeats} runs)")
    print(f"{'model':<20} {'server':<34} {'/healthz':>8} {'visitor at once: figure':>24} "
          f"{'/healthz->figure':>17} {f'visitor at {args.visit_after:.0f}s: page->figure':>32}")
    for name in args.models:
        models_dir = folder if name == "resnet50v2" else None
        for label, checkout, warm in checkouts:
            modes = ["fresh cache", "restart (kept passes)"]
            if name == DEFAULT_MODEL and checkout == ROOT:   # --keep-passes keeps the default model's
                modes.append("after --keep-passes")
            for mode in modes:
                now, later = [], []
                for _ in range(args.repeats):
                    cache = None if mode == "fresh cache" else Path(tempfile.mkdtemp(prefix="camlens-cold-cache-"))
                    if mode == "restart (kept passes)":   # a first start keeps the passes; the restart is measured
                        serve_once(checkout, name, models_dir, None, warm, cache)
                    elif mode == "after --keep-passes":    # what the Docker build does
                        keep_passes(checkout, cache)
                    now.append(serve_once(checkout, name, models_dir, None, warm, cache))
                    later.append(serve_once(checkout, name, models_dir, args.visit_after, warm, cache))
                    if cache:
                        shutil.rmtree(cache, ignore_errors=True)
                row = f"{label}, {mode}"
                print(f"{name:<20} {row:<34} {med(now, 'healthz'):>8} {med(now, 'first_figure'):>24} "
                      f"{med(now, 'healthz_to_figure'):>17} {med(later, 'visit_to_figure'):>32}", flush=True)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
