# camlens: `make run` installs what is missing and starts the app; `make test` installs what
# tests need and runs them all (browser tests included, headless).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS   ?=

.PHONY: run test browser redis serve bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps make a second `make run` install nothing unless the requirements changed.
$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) app.py $(ARGS)

# Production serving: waitress reads whole requests before an app thread sees them, so slow or
# stalled clients cannot hold the threads (serve.py and README "Production serving" say why).
serve: $(VENV)/.runtime
	$(PY) serve.py

browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# tests/app/test_celery.py starts its own redis-server (a free port, no persistence) and a worker.
redis:
	@if ! command -v redis-server >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server; \
	fi

test: $(VENV)/.dev browser redis
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) bench/explain.py

clean:
	rm -rf $(VENV) .pytest_cache
