"""The HTTP surface: health check, locally served Bootstrap, what the Dockerfile names, and the
production server (serve.py, as `make serve` starts it) under stalled, oversized and malformed requests."""
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from app import Config, create_app, max_request_bytes

REPO = Path(__file__).resolve().parents[2]


def test_healthz_reports_status_and_versions(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert re.match(r"\d+\.\d+", body["versions"]["tensorflow"])
    assert body["versions"]["keras"].startswith("3.")
    assert set(body["versions"]) >= {"tensorflow", "keras", "dash"}


def test_bootstrap_and_icons_are_served_locally(client):
    index = client.get("/").get_data(as_text=True)
    assert "cdn" not in index.lower()
    for href in re.findall(r'href="(/vendor/[^"]+)"', index):
        response = client.get(href)
        assert response.status_code == 200, href
        assert len(response.get_data()) > 10_000, href
    css = client.get("/vendor/bootstrap5/css/font/bootstrap-icons.min.css").get_data(as_text=True)
    font = re.search(r'url\("?(\./)?fonts/([^")?]+)', css).group(2)
    assert client.get(f"/vendor/bootstrap5/css/font/fonts/{font}").status_code == 200


def test_vendor_route_does_not_escape_its_folder(client):
    assert client.get("/vendor/bootstrap5/../../__init__.py").status_code == 404


def test_wsgi_server_is_importable_for_gunicorn(tmp_path):
    code = "import app; print(type(app.server).__name__)"
    env = {"CAMLENS_CACHE_DIR": str(tmp_path), "PATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Flask"


def test_dockerfile_names_things_that_exist():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM python:3.11-slim")
    for name in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (REPO / name).exists(), name
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert re.search(r"^ARG \w+", dockerfile, re.M)
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert "serve.py" in cmd and (REPO / "serve.py").exists()
    assert re.search(r"^serve:.*\n\t\$\(PY\) serve\.py$", (REPO / "Makefile").read_text(), re.M)
    for module in re.findall(r"python -m ([\w.]+)", dockerfile):
        assert importlib.util.find_spec(module) is not None, module
    requirements = (REPO / "requirements.txt").read_text()
    assert "waitress==" in requirements


def test_every_requirement_is_pinned():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[\w.\-\[\],]+==[\w.]+", line), line


# ---- the production server, started as `make serve` starts it (a real process on a free port) ----

MALFORMED = ["null", "[]", "{}", '"text"', "not json", '{"inputs": []}', '{"output": 5, "inputs": []}',
             '{"output": "nowhere.children", "inputs": [], "changedPropIds": []}',
             '{"output": "model-card-modal.is_open", "inputs": "x"}',
             '{"output": "model-card-modal.is_open", "inputs": [], "changedPropIds": []}',
             '{"output": "model-card-modal.is_open", "inputs": [{"id": "model-card-open", "property": 3}]}',
             '{"output": "model-card-modal.is_open", "inputs": [{"id": "model-card-open", "property": "n_clicks"}],'
             ' "changedPropIds": "model-card-open.n_clicks"}',
             '{"output": "model-card-modal.is_open", "inputs": [{"id": "other", "property": "n_clicks"}]}']
GOOD = {"output": "model-card-modal.is_open", "outputs": {"id": "model-card-modal", "property": "is_open"},
        "inputs": [{"id": "model-card-open", "property": "n_clicks", "value": 1}],
        "changedPropIds": ["model-card-open.n_clicks"], "state": []}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, data: bytes | None = None, timeout: float = 10):
    """(status, headers, body) of a GET, or of a JSON POST when `data` is given."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _start(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "serve.py"], cwd=REPO, env=env, stdout=out, stderr=out)


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """serve.py (what `make serve` and the Docker CMD run) on 127.0.0.1:<free port>."""
    port = _free_port()
    cache = tmp_path_factory.mktemp("serve") / "cache"
    env = {**os.environ, "CAMLENS_PORT": str(port), "CAMLENS_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "CAMLENS_CACHE_DIR": str(cache), "CAMLENS_THREADS": "4", "CAMLENS_IDLE_TIMEOUT": "3"}
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    process = _start(env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if _request(url + "/healthz", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, "serve.py did not answer /healthz within 120 s"
        time.sleep(0.3)

    class Server:
        pass

    server = Server()
    server.url, server.port, server.pid, server.log = url, port, process.pid, log
    server.process, server.env, server.cache = process, env, cache
    yield server
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def _until_warm(url: str, process, log: Path, limit: float = 240) -> dict:
    """/healthz's answer once it says the default model is warm."""
    deadline = time.time() + limit
    while True:
        try:
            status, _, body = _request(url + "/healthz", timeout=5)
            if status == 200 and json.loads(body)["warm"]:
                return json.loads(body)
        except OSError:
            pass
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.time() < deadline, f"the default model was not warm within {limit} s"
        time.sleep(0.3)


def test_a_restart_loads_the_passes_the_first_start_kept(production, tmp_path):
    """serve.py warms the default model at start (/healthz says when) and keeps its passes in the
    cache folder; a second server on the same folder loads them instead of tracing."""
    health = _until_warm(production.url, production.process, production.log)
    assert health["default_model"]
    cache = Path(production.cache) / "passes"
    assert list(cache.glob("*.pb")), "no pass was kept"
    port = _free_port()
    _starts_with_kept_passes({**production.env, "CAMLENS_PORT": str(port)}, port, tmp_path / "second.log")


def _starts_with_kept_passes(env: dict, port: int, log: Path) -> None:
    """A server started on `env` warms up by loading kept passes, none of them dropped."""
    server = _start(env, log)
    try:
        _until_warm(f"http://127.0.0.1:{port}", server, log)
        text = log.read_text()
        assert "loaded from the kept passes" in text and "dropped" not in text, text[-3000:]
    finally:
        server.terminate()
        server.wait(30)


def test_keep_passes_fills_the_cache_so_even_a_first_start_loads_them(tmp_path):
    """`serve.py --keep-passes` (the Docker build runs it): the default model's first passes are
    kept before any server runs, a server's very first start then loads them, and running it
    again leaves a filled folder alone."""
    port = _free_port()
    env = {**os.environ, "CAMLENS_PORT": str(port), "CAMLENS_HOST": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "CAMLENS_CACHE_DIR": str(tmp_path / "cache")}

    def keep():
        done = subprocess.run([sys.executable, "serve.py", "--keep-passes"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    assert re.search(r"kept \d+ passes of \S+ in ", keep())
    kept = sorted((tmp_path / "cache" / "passes").glob("*.pb"))
    assert kept and (tmp_path / "cache").stat().st_mode & 0o077 == 0
    assert "already" in keep() and sorted((tmp_path / "cache" / "passes").glob("*.pb")) == kept
    _starts_with_kept_passes(env, port, tmp_path / "server.log")
    bad = subprocess.run([sys.executable, "serve.py", "--port", "1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--keep-passes" in bad.stderr.strip().splitlines()[-1]


def _stalled(port: int, declared: int, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + first)
    return sock


def test_production_server_answers_healthz_with_security_headers(production):
    status, headers, body = _request(production.url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, body = _request(production.url + "/")
    assert status == 200 and b"_dash-config" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["Referrer-Policy"] == "same-origin"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp and "default-src 'self'" in csp and "'unsafe-inline'" not in csp.split(
        "script-src")[1].split(";")[0]


def test_stalled_request_bodies_do_not_starve_the_server(production):
    """8 clients send headers and 1 byte of a declared 1 MB body, then nothing (4 app threads)."""
    sockets = [_stalled(production.port, 2**20, b"{") for _ in range(8)]
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        status, _, body = _request(production.url + "/healthz", timeout=5)
        assert status == 200 and time.perf_counter() - start < 5
        status, _, _ = _request(production.url + "/_dash-update-component", json.dumps(GOOD).encode(), timeout=5)
        assert status == 200
    finally:
        for sock in sockets:
            sock.close()


def test_idle_connections_are_closed(production):
    """A client that stops sending mid-body is disconnected after the idle timeout (3 s here)."""
    sock = _stalled(production.port, 2**20, b"{")
    try:
        sock.settimeout(15)
        start = time.perf_counter()
        try:
            leftover = sock.recv(100)
        except ConnectionResetError:
            leftover = b""
        assert leftover == b"" and time.perf_counter() - start < 15
    finally:
        sock.close()


def test_oversized_body_is_refused_before_it_is_read(production):
    """A declared 200 MB body: 413 at once, and the server does not grow by the few MB sent."""
    process = psutil.Process(production.pid)
    before = process.memory_info().rss
    sock = _stalled(production.port, 200 * 2**20, b"")
    try:
        start = time.perf_counter()
        sock.settimeout(5)
        try:
            for _ in range(4):  # a few MB, if the server still takes them
                sock.sendall(b"A" * 2**20)
        except OSError:
            pass  # the server answered and closed: fine
        answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert time.perf_counter() - start < 5
    finally:
        sock.close()
    assert process.memory_info().rss - before < 50 * 2**20
    assert _request(production.url + "/healthz")[0] == 200


def test_malformed_callback_bodies_get_a_4xx_with_a_reason(production):
    for body in MALFORMED:
        status, headers, answer = _request(production.url + "/_dash-update-component", body.encode())
        assert 400 <= status < 500, (body, status, answer[:200])
        assert json.loads(answer)["error"], body
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, answer = _request(production.url + "/_dash-update-component", json.dumps(GOOD).encode())
    assert status == 200, answer[:300]


def test_the_flask_app_limits_bodies_too(tmp_path):
    """`python app.py` (no waitress in front) answers 413 from the declared length, unread."""
    config = Config(cache_dir=tmp_path / "cache", max_upload_mb=0.01)
    client = create_app(config).server.test_client()
    limit = max_request_bytes(config)
    assert limit >= int(0.01 * 2**20 * 4 / 3)
    response = client.post("/_dash-update-component", data=b"x" * (limit + 1), content_type="application/json")
    assert response.status_code == 413 and "limit" in response.get_json()["error"]
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_body_limit_leaves_room_for_a_base64_upload():
    config = Config(max_upload_mb=15)
    assert max_request_bytes(config) > 15 * 2**20 * 4 / 3 + 2**19


def test_unexpected_errors_answer_a_short_json_500_and_log_the_traceback(dash_app, caplog):
    @dash_app.server.route("/boom")
    def boom():
        raise RuntimeError("kaput\nsecond line")

    client = dash_app.server.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error (RuntimeError); the server log has the details"}
    assert response.headers["Content-Security-Policy"]
    record = next(r for r in caplog.records if "GET /boom failed" in r.getMessage())
    assert record.exc_info and "kaput" in record.getMessage()
    assert client.get("/vendor/bootstrap5/no-such.css").status_code == 404


def test_malformed_callback_bodies_in_the_flask_app(client):
    for body in MALFORMED:
        response = client.post("/_dash-update-component", data=body, content_type="application/json")
        assert response.status_code == 400, (body, response.status_code)
    response = client.post("/_dash-update-component", json=GOOD)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def test_the_page_works_under_its_content_security_policy(camlens, images):
    """Chromium enforces the CSP: the page renders, an upload is predicted and explained by two
    methods, and no policy violation (nor any console error) happens on the way."""
    page = camlens.open("?model=tiny-gap.keras&methods=gradcam,gradients")
    duo = page.duo
    duo.driver.execute_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
    page.upload(images["small"])
    duo.wait_for_contains_text("#predictions", "Top-5 predictions", timeout=20)
    page.figures(2)
    assert duo.driver.execute_script("return window.__csp") == []
    assert duo.get_logs() == []


def test_serve_settings_follow_the_environment():
    import serve

    config = Config(max_upload_mb=3)
    options = serve.settings(config, {"CAMLENS_THREADS": "8", "CAMLENS_IDLE_TIMEOUT": "12"})
    assert options["threads"] == 8 and options["channel_timeout"] == 12
    assert options["max_request_body_size"] == max_request_bytes(config)
    assert serve.settings(config, {})["threads"] == 4
    with pytest.raises(ValueError, match="CAMLENS_THREADS"):
        serve.settings(config, {"CAMLENS_THREADS": "many"})
    with pytest.raises(ValueError, match="at least 1"):
        serve.settings(config, {"CAMLENS_IDLE_TIMEOUT": "0"})


def test_a_clientside_callbacks_output_gets_a_400(dash_app):
    """A body naming a callback that runs in the browser (found in the map, no Python function)
    is refused with a reason, not Dash's KeyError as a 500."""
    client = dash_app.server.test_client()
    output = next(k for k, v in dash_app.callback_map.items() if "callback" not in v)
    body = {"output": output, "outputs": [], "inputs": [{"id": "model", "property": "value", "value": None}],
            "state": [], "changedPropIds": []}
    callback = dash_app.callback_map[output]
    body["inputs"] = [{"id": i["id"], "property": i["property"], "value": None} for i in callback["inputs"]]
    body["state"] = [{"id": i["id"], "property": i["property"], "value": None} for i in callback.get("state", [])]
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 400 and "browser" in response.get_json()["error"]
