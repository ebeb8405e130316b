"""The HTTP surface: health check, locally served Bootstrap, and what the Dockerfile names."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

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
    assert "gunicorn" in cmd and "app:server" in cmd
    assert (REPO / "gunicorn.conf.py").exists()
    for module in re.findall(r"python -m ([\w.]+)", dockerfile):
        assert importlib.util.find_spec(module) is not None, module
    requirements = (REPO / "requirements.txt").read_text()
    assert "gunicorn==" in requirements


def test_every_requirement_is_pinned():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[\w.\-\[\],]+==[\w.]+", line), line
