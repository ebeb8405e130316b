"""Benchmark the running web app the way a browser uses it: POST /_dash-update-component.

    .venv/bin/python bench/app.py                      # starts app.py on a free port, then measures
    .venv/bin/python bench/app.py --url http://host:8050   # measures a server you started

For three gradient methods on a bundled model it prints the warm time from request to response of
  compute  the callback that runs the method (model loaded and traced, result not cached yet: every
           repetition uploads a slightly different image, so nothing is served from the cache),
  render   the callback that draws the figure from the cached heatmap,
  redraw   the same after an opacity change (display only: no model run),
and the payload sizes: the response of `render` and each figure's JSON. Medians over --repeat runs
after one warm-up. Images are 1024x768 scenes from models.scenes, sent as JPEG like a phone photo.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("gradcam", "gradcam++", "gradients")


class Client:
    """Calls Dash callbacks by their outputs, as the renderer does."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.deps = json.loads(self.get("/_dash-dependencies"))

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=300) as response:
            return response.read()

    def find(self, first_output: str, trigger: str) -> dict:
        for dep in self.deps:
            outputs = [o.split("@")[0] for o in _outputs(dep["output"])]
            if outputs[0] == first_output and any(f"{i['id']}.{i['property']}" == trigger for i in dep["inputs"]):
                return dep
        raise KeyError(f"no callback with first output {first_output} and input {trigger}")

    def call(self, first_output: str, trigger: str, values: dict) -> tuple[dict, float, int]:
        """Run the callback; `values` maps "id.prop" (or "id" for pattern lists) to values.
        Returns (response, seconds, bytes)."""
        dep = self.find(first_output, trigger)

        def filled(items):
            out = []
            for item in items:
                key = f"{item['id']}.{item['property']}"
                if item["id"].startswith("{"):  # pattern-matching ALL: a list (empty here)
                    out.append(values.get(key, []))
                else:
                    out.append({**item, "value": values.get(key)})
            return out

        body = {
            "output": dep["output"],
            "outputs": [{"id": o.split(".")[0], "property": o.split(".", 1)[1].split("@")[0]}
                        for o in _outputs(dep["output"])],
            "inputs": filled(dep["inputs"]),
            "state": filled(dep["state"]),
            "changedPropIds": [trigger],
        }
        data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/_dash-update-component", data=data,
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            raw = response.read()
        seconds = time.perf_counter() - start
        return (json.loads(raw) if raw else {}), seconds, len(raw)


def _outputs(output: str) -> list[str]:
    return [o for o in output.strip(".").split("...")] if output.startswith("..") else [output]


def scene_upload(seed: int) -> str:
    from PIL import Image

    from models.scenes import make_scene

    buffer = io.BytesIO()
    Image.fromarray(make_scene(seed, (768, 1024)).image).save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cache: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CAMLENS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--cache-dir", cache],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2).read()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("app.py exited: " + process.stderr.read().decode()[-2000:])
            time.sleep(0.5)
    process.kill()
    raise SystemExit("app.py did not answer /healthz within 120 s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running camlens (default: start one)")
    parser.add_argument("--model", default="vehicles")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    process = None
    with tempfile.TemporaryDirectory() as cache:
        if args.url is None:
            process, args.url = start_server(cache)
        try:
            run(Client(args.url), args.model, args.repeat)
        finally:
            if process is not None:
                process.terminate()
                process.wait(10)


def run(client: Client, model: str, repeat: int) -> None:
    health = json.loads(client.get("/healthz"))
    if model not in health.get("models", []):
        raise SystemExit(f"model {model!r} is not available here; available: {health.get('models')}")
    display = {"colormap.value": "jet", "opacity.value": 0.5, "view.value": "overlay", "scale.value": "map"}
    rows = {m: {"compute": [], "render": [], "redraw": [], "response": [], "figure": []} for m in METHODS}
    for i in range(repeat + 1):
        contents = scene_upload(1000 + i)
        response, _, _ = client.call("image.data", "upload.contents",
                                     {"upload.contents": contents, "upload.filename": f"scene{i}.jpg"})
        image = response["response"]["image"]["data"]
        response, _, _ = client.call("target.value", "image.data", {"image.data": image, "model.value": model})
        target = response["response"]["target"]["value"]
        layers, _, _ = client.call("layer.options", "model.value", {"model.value": model})
        layer = layers["response"]["layer"]["value"]
        for method in METHODS:
            context = {"image.data": image, "model.value": model, "layer.value": layer, "target.value": target,
                       "score.value": "logit", "counterfactual.value": False, "methods.value": [method]}
            _, compute, _ = client.call("fast-done.data", "methods.value", context)
            shown, render, size = client.call("results-grid.children", "fast-done.data",
                                              {**context, **display, "fast-done.data": time.time()})
            _, redraw, _ = client.call("results-grid.children", "opacity.value",
                                       {**context, **display, "opacity.value": 0.7})
            if i == 0:
                continue  # warm-up: first model load and tracing
            figure = shown["response"]["results-grid"]["children"][0]["props"]["children"]["props"]["children"]
            rows[method]["compute"].append(compute)
            rows[method]["render"].append(render)
            rows[method]["redraw"].append(redraw)
            rows[method]["response"].append(size)
            rows[method]["figure"].append(len(json.dumps(figure["props"]["children"]["props"]["figure"])))
    stats = json.loads(client.get("/debug/stats"))
    print(f"camlens web app, model {model}, 1024x768 JPEG uploads, median of {repeat} warm runs")
    print(f"{'method':<12}{'compute ms':>12}{'render ms':>11}{'redraw ms':>11}{'total ms':>10}"
          f"{'response KB':>13}{'figure KB':>11}")
    for method, r in rows.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        print(f"{method:<12}{med['compute'] * 1e3:>12.1f}{med['render'] * 1e3:>11.1f}{med['redraw'] * 1e3:>11.1f}"
              f"{(med['compute'] + med['render']) * 1e3:>10.1f}{med['response'] / 1024:>13.1f}"
              f"{med['figure'] / 1024:>11.1f}")
    print(f"server counters: {stats['explain_calls']} explain calls, {stats['predict_calls']} predict calls "
          f"for {repeat + 1} images x {len(METHODS)} methods (redraws ran no model)")


if __name__ == "__main__":
    main()
