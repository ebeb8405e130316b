"""Load-test a running camlens server the way browsers use it: the Dash callback protocol.

    make serve &                                    # or any server; only ever point this at your own
    .venv/bin/python bench/load.py http://127.0.0.1:8050 --sessions 20 --requests 25

Each session is one simulated browser tab on its own thread. It loads the page (GET /, the
layout, the callback list from /_dash-dependencies), runs the initial callbacks, uploads a sample
from assets/samples through the `upload` component's callback, and then makes a realistic mix of
changes, each followed by every callback the change triggers, as the renderer would chain them:
  upload     another sample (the upload callback, then predictions, gradients, figures)
  method     another set of fast methods (Grad-CAM family, gradients...)
  display    colormap / opacity / view / scale (figures only, no model run)
  target     another class from the predictions
  slow       a slow method through its background callback (POST, then polls cacheKey/job)
A request is one such user action, timed until the last callback it triggered has answered; each
callback is one POST /_dash-update-component (a background job's polls count as one, timed from its
first POST to the result). Per round it prints errors, p50/p95 latency of both, callbacks per
second and the server's memory (RSS of the process listening on the URL's port and its children, via
psutil, when it runs on this machine; or --pid).
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "assets" / "samples").glob("*.*")
                 if not p.stem.endswith("_mask") and p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
ACTIONS = {"display": 4, "method": 3, "target": 2, "upload": 1, "slow": 1}  # weights of the mix
WILDCARDS = ("ALL", "MATCH", "ALLSMALLER")


class CallbackError(Exception):
    pass


def stringify_id(id_) -> str:
    """Dash's own key for an id (dict ids: sorted keys, compact JSON values)."""
    if isinstance(id_, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(id_[k], separators=(',', ':'))}" for k in sorted(id_)) + "}"
    return id_


def parse_id(text: str):
    return json.loads(text) if text.startswith("{") else text


def split_outputs(output: str) -> list[tuple[str, str]]:
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    out = []
    for part in parts:
        id_, prop = part.rsplit(".", 1)
        out.append((id_, prop.split("@")[0]))
    return out


def is_pattern(id_text: str) -> bool:
    return id_text.startswith("{") and any(isinstance(v, list) for v in json.loads(id_text).values())


def matches(pattern: dict, id_) -> bool:
    return isinstance(id_, dict) and set(id_) == set(pattern) and all(
        isinstance(v, list) or id_[k] == v for k, v in pattern.items())


class Page:
    """One browser tab: the component props it knows, and the callbacks it runs."""

    def __init__(self, url: str, deps: list, timeout: float):
        self.url, self.deps, self.timeout = url, deps, timeout
        self.props: dict[tuple[str, str], object] = {}
        self.ids: dict[str, object] = {}  # key -> id (str or dict)
        self.owned: dict[tuple[str, str], set[str]] = {}
        self.latencies: list[float] = []
        self.verbose = False
        html = self._get("/").decode()
        config = json.loads(re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', html, re.S).group(1))
        self.end_id = config.get("end_id")
        layout = json.loads(self._get("/_dash-layout"))
        self._walk(layout, owner=None)

    # ---- HTTP ----
    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as response:
            return response.read()

    def _post(self, body: dict, query: dict) -> tuple[int, dict | None]:
        path = "/_dash-update-component"
        query = {"endId": self.end_id, **query} if self.end_id else query
        if query:
            path += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
                return response.status, (json.loads(data) if data else None)
        except urllib.error.HTTPError as error:
            raise CallbackError(f"HTTP {error.code} {error.read()[:200]!r}") from None

    # ---- the component store ----
    def _walk(self, value, owner: tuple[str, str] | None):
        if isinstance(value, dict):
            if "props" in value and "type" in value and isinstance(value["props"], dict):
                props = value["props"]
                if "id" in props:
                    key = stringify_id(props["id"])
                    self.ids[key] = props["id"]
                    if owner:
                        self.owned.setdefault(owner, set()).add(key)
                    for prop, v in props.items():
                        self._set(key, prop, v)
                    return
                for v in props.values():
                    self._walk(v, owner)
                return
            for v in value.values():
                self._walk(v, owner)
        elif isinstance(value, list):
            for v in value:
                self._walk(v, owner)

    def _drop(self, owner: tuple[str, str]):
        for key in self.owned.pop(owner, set()):
            self.ids.pop(key, None)
            for k in [k for k in self.props if k[0] == key]:
                self.props.pop(k)
                self._drop(k)

    def _set(self, key: str, prop: str, value):
        self._drop((key, prop))
        self.props[(key, prop)] = value
        self._walk(value, owner=(key, prop))

    def get(self, key: str, prop: str, default=None):
        return self.props.get((key, prop), default)

    # ---- callbacks ----
    def _deps_items(self, items: list) -> list | None:
        out = []
        for item in items:
            if is_pattern(item["id"]):
                pattern = json.loads(item["id"])
                out.append([{"id": self.ids[k], "property": item["property"], "value": self.props.get((k, item["property"]))}
                            for k in self.ids if matches(pattern, self.ids[k])])
            elif item["id"] in self.ids:
                out.append({"id": item["id"], "property": item["property"],
                            "value": self.props.get((item["id"], item["property"]))})
            else:
                return None  # not on the page: the renderer would not run it
        return out

    def body(self, dep: dict, changed: list[str]) -> dict | None:
        inputs, state = self._deps_items(dep["inputs"]), self._deps_items(dep["state"])
        if inputs is None or state is None:
            return None
        outputs = []
        for id_text, prop in split_outputs(dep["output"]):
            if is_pattern(id_text):
                pattern = json.loads(id_text)
                outputs.append([{"id": self.ids[k], "property": prop} for k in self.ids if matches(pattern, self.ids[k])])
            elif id_text in self.ids:
                outputs.append({"id": id_text, "property": prop})
            else:
                return None
        return {"output": dep["output"], "outputs": outputs if dep["output"].startswith("..") else outputs[0],
                "inputs": inputs, "state": state, "changedPropIds": changed}

    def _apply(self, updates: dict) -> list[str]:
        changed = []
        for key, props in (updates or {}).items():
            for prop, value in props.items():
                self._set(key, prop, value)
                changed.append(f"{key}.{prop}")
        return changed

    def run(self, dep: dict, changed: list[str]) -> list[str]:
        body = self.body(dep, changed)
        if body is None:
            return []
        start = time.perf_counter()
        status, answer = self._post(body, {})
        if dep.get("background") and answer and "cacheKey" in answer and "response" not in answer:
            interval = min(dep["background"].get("interval", 1000), 500) / 1000
            handles = {"cacheKey": answer["cacheKey"], "job": answer["job"]}
            poll = json.loads(json.dumps(body))
            for item in poll["inputs"] + poll["state"]:
                for d in item if isinstance(item, list) else [item]:
                    d["value"] = None
            deadline = time.time() + self.timeout
            while True:
                time.sleep(interval)
                status, answer = self._post(poll, handles)
                if answer and "progress" in answer:
                    self._apply({k.rsplit(".", 1)[0]: {k.rsplit(".", 1)[1]: v} for k, v in answer["progress"].items()})
                if status == 204 or (answer and "response" in answer):
                    break
                if time.time() > deadline:
                    raise CallbackError("background job did not finish in time")
        self.latencies.append(time.perf_counter() - start)
        if self.verbose:
            print(f"    {time.perf_counter() - start:6.2f}s {status} {dep['output'][:70]}", flush=True)
        if status == 204 or not answer:
            return []
        return self._apply(answer.get("response")) + self._apply(answer.get("sideUpdate"))

    def trigger(self, changed: list[str], initial: bool = False, limit: int = 60):
        """Run every callback an input of which changed, then those their outputs trigger, as the
        renderer does: a callback waits while another pending one still has to produce one of its
        inputs, and a callback's own outputs do not trigger it again."""
        pending: dict[int, list[str]] = {}

        def add(props: list[str], source: int | None, first: bool):
            for i, dep in enumerate(self.deps):
                if i == source or (first and dep.get("prevent_initial_call")):
                    continue
                hits = [c for c in props if any(self._is_input(c, item) for item in dep["inputs"])]
                if hits:
                    pending.setdefault(i, [])
                    pending[i] += [h for h in hits if h not in pending[i]]

        add(changed, None, initial)
        runs = 0
        while pending and runs < limit:
            waiting = {i for i in pending if any(
                f"{item['id']}.{item['property']}" in self._outputs(j) for j in pending if j != i
                for item in self.deps[i]["inputs"])}
            ready = [i for i in pending if i not in waiting] or [min(pending)]
            for i in ready:
                hits = pending.pop(i)
                runs += 1
                add(self.run(self.deps[i], hits), i, False)

    def _outputs(self, i: int) -> set[str]:
        return {f"{id_}.{prop}" for id_, prop in split_outputs(self.deps[i]["output"])}

    def _is_input(self, changed: str, item: dict) -> bool:
        key, prop = changed.rsplit(".", 1)
        if prop != item["property"]:
            return False
        if is_pattern(item["id"]):
            return matches(json.loads(item["id"]), parse_id(key))
        return key == item["id"]

    # ---- what a user does ----
    def start(self):
        self.trigger([f"{k}.{p}" for (k, p) in self.props], initial=True)

    def set(self, key: str, prop: str, value):
        self._set(key, prop, value)
        self.trigger([f"{key}.{prop}"])

    def options(self, key: str) -> list:
        values = []
        for option in self.get(key, "options") or []:
            values.append(option["value"] if isinstance(option, dict) else option)
        return values


def data_url(path: Path, rng: random.Random | None = None) -> str:
    """The file as the upload component sends it; with `rng`, one pixel changed first (a photo of
    the user's own, so no cached prediction or heatmap of an earlier upload applies)."""
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}[path.suffix.lower()]
    data = path.read_bytes()
    if rng is not None:
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.putpixel((rng.randrange(image.width), rng.randrange(image.height)), tuple(rng.randrange(256) for _ in "rgb"))
        out = io.BytesIO()
        image.save(out, format="PNG")
        data, mime = out.getvalue(), "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode()


class Session(threading.Thread):
    def __init__(self, url, deps, requests, seed, timeout, fast, slow):
        super().__init__(daemon=True)
        self.url, self.deps, self.requests, self.timeout = url, deps, requests, timeout
        self.random, self.fast, self.slow = random.Random(seed), fast, slow
        self.latencies, self.errors, self.actions, self.action_times = [], [], {}, []
        self.page, self.verbose, self.fresh = None, False, True

    def upload(self):
        sample = self.random.choice(SAMPLES)
        self.page._set("upload", "filename", sample.name)
        self.page.set("upload", "contents", data_url(sample, self.random if self.fresh else None))

    def act(self, action: str):
        page = self.page
        if action == "upload":
            self.upload()
        elif action == "method":
            chosen = self.random.sample(self.fast, k=min(len(self.fast), self.random.choice([1, 2, 3])))
            page.set("methods", "value", chosen)
        elif action == "display":
            prop = self.random.choice([p for p in ("colormap", "opacity", "view", "scale") if (p, "value") in page.props])
            if prop == "opacity":
                value = round(self.random.uniform(0.2, 0.9), 2)
            else:
                choices = [v for v in page.options(prop) if v != page.get(prop, "value")] or page.options(prop)
                value = self.random.choice(choices)
            page.set(prop, "value", value)
        elif action == "target":
            choices = [v for v in page.options("target") if v != page.get("target", "value")]
            if choices:
                page.set("target", "value", self.random.choice(choices[:5]))
        elif action == "slow" and self.slow and ("run-slow", "n_clicks") in page.props:
            methods = list(page.get("methods", "value") or [])
            page._set("methods", "value", methods[:1] + [self.random.choice(self.slow)])
            page.set("run-slow", "n_clicks", (page.get("run-slow", "n_clicks") or 0) + 1)

    def run(self):
        try:
            self.page = Page(self.url, self.deps, self.timeout)
            self.page.verbose = self.verbose
            self.page.start()
            weights = {a: w for a, w in ACTIONS.items() if a != "slow" or self.slow}
            for i in range(self.requests):
                action = "upload" if i == 0 else self.random.choices(list(weights), list(weights.values()))[0]
                self.actions[action] = self.actions.get(action, 0) + 1
                if self.verbose:
                    print(f"  {action}", flush=True)
                start = time.perf_counter()
                try:
                    self.act(action)
                    self.action_times.append(time.perf_counter() - start)
                except (CallbackError, OSError) as error:
                    self.errors.append(f"{action}: {error}")
        except Exception as error:  # a session that cannot even start counts as an error
            self.errors.append(f"session: {type(error).__name__}: {error}")
        if self.page:
            self.latencies = self.page.latencies


def server_rss(url: str, pid: int | None) -> float | None:
    """MB of the server process (and its children) listening on the URL's port, if it is ours."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        if pid is None:
            port = urllib.parse.urlparse(url).port or 80
            pid = next((c.pid for c in psutil.net_connections("tcp")
                        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid), None)
        if pid is None:
            return None
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process] + process.children(recursive=True)) / 2**20
    except (psutil.Error, OSError):
        return None


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


# Methods the app runs as background jobs (explain: slow=True); the bench runs the few in --slow.
SLOW = {"occlusion", "scorecam", "ablationcam", "lime", "shap", "rise", "smoothgrad", "integrated-gradients",
        "expected-gradients"}


def method_lists(url: str, deps: list, timeout: float, slow: list[str]) -> tuple[list, list]:
    """The fast methods offered by the page's methods checklist, and those of `slow` it offers."""
    offered = Page(url, deps, timeout).options("methods")
    return [m for m in offered if m not in SLOW], [m for m in slow if m in offered]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8050")
    parser.add_argument("--sessions", type=int, default=20, help="simulated browser tabs, run at once")
    parser.add_argument("--requests", type=int, default=25,
                        help="user requests (actions) per session and round, the first an upload")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--pid", type=int, help="server pid for the memory column (default: found by port)")
    parser.add_argument("--slow", default="smoothgrad,integrated-gradients,occlusion",
                        help="background methods the 'slow' action picks from (empty: none)")
    parser.add_argument("--verbose", action="store_true", help="print every action and callback")
    parser.add_argument("--same-files", action="store_true",
                        help="upload the samples as they are (else each upload has one pixel changed: no cache hits)")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    deps = json.loads(urllib.request.urlopen(url + "/_dash-dependencies", timeout=args.timeout).read())
    deps = [d for d in deps if not d.get("clientside_function")]   # those run in the browser
    fast, slow = method_lists(url, deps, args.timeout, [m for m in args.slow.split(",") if m])
    print(f"{url}: {len(deps)} callbacks; {args.sessions} sessions x {args.requests} requests; fast methods "
          f"{len(fast)}, slow {slow}; {len(SAMPLES)} samples")
    print("  requests = user actions (each runs the callbacks it triggers); callbacks = POSTs to /_dash-update-component")
    header = (f"{'round':>5} {'requests':>8} {'errors':>6} {'req p50':>7} {'req p95':>7} {'callbacks':>9} "
              f"{'cb p50':>7} {'cb p95':>7} {'cb max':>7} {'cb/s':>6} {'wall s':>7} {'server MB':>9}")
    print(header)
    rss = server_rss(url, args.pid)
    print(f"{'0':>5}{'':>{len(header) - 15}}{rss if rss is None else round(rss):>10}")
    total_errors = 0
    for round_ in range(1, args.rounds + 1):
        sessions = [Session(url, deps, args.requests, hash((args.seed, round_, i)), args.timeout, fast, slow)
                    for i in range(args.sessions)]
        for s in sessions:
            s.verbose, s.fresh = args.verbose, not args.same_files
        start = time.perf_counter()
        for s in sessions:
            s.start()
        for s in sessions:
            s.join()
        wall = time.perf_counter() - start
        calls = [x for s in sessions for x in s.latencies]
        actions = [x for s in sessions for x in s.action_times]
        errors = [e for s in sessions for e in s.errors]
        total_errors += len(errors)
        rss = server_rss(url, args.pid)
        print(f"{round_:>5} {sum(sum(s.actions.values()) for s in sessions):>8} {len(errors):>6} "
              f"{percentile(actions, 0.5):>7.2f} {percentile(actions, 0.95):>7.2f} {len(calls):>9} "
              f"{percentile(calls, 0.5):>7.2f} {percentile(calls, 0.95):>7.2f} {max(calls, default=float('nan')):>7.2f} "
              f"{len(calls) / wall:>6.1f} {wall:>7.1f} {rss if rss is None else round(rss):>9}")
        mix = {}
        for s in sessions:
            for a, n in s.actions.items():
                mix[a] = mix.get(a, 0) + n
        print(f"      mix: {mix}")
        for error in errors[:10]:
            print("      error:", error[:300])
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
