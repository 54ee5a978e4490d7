# integr8s: `make run` starts the site and a worker, `make test` runs the tests.
# Both install first when needed; `make install` is idempotent.

PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES ?= bubblewrap
# What the end-to-end tests drive: a browser, podman for pod manifests (catatonit builds its
# pause image; it is only a "recommends" of podman, so name it), Prometheus (promtool) and
# Alertmanager (amtool) for monitoring, Caddy for the HTTPS front.
TEST_PACKAGES ?= chromium fonts-dejavu-core podman catatonit runc debootstrap prometheus \
	prometheus-alertmanager caddy procps

# The newest Python >= 3.12 on this machine: pyenv's installs first, then PATH.
FIND_PYTHON := for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) \
	$$(command -v python3.14 python3.13 python3.12 python3 2>/dev/null); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$p"; break; }; done

.PHONY: install test-system run test test-fast bench lint typecheck format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@if ! command -v bwrap >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing system packages: $(SYSTEM_PACKAGES)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
		else \
			echo "bubblewrap is missing. Run: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; \
		fi; \
	fi
	@PYTHON=$$($(FIND_PYTHON)); \
	if [ -z "$$PYTHON" ]; then echo "No Python >= 3.12 found. Install one (e.g. pyenv install 3.13) and retry."; exit 1; fi; \
	if [ ! -x $(PY) ]; then echo "Creating $(VENV) with $$PYTHON"; "$$PYTHON" -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) manage.py migrate --no-input -v 0
	touch $(STAMP)

# The default version's package set is built on first start (about 40 s here); the others
# with `$(PY) manage.py build_runtimes` (or --python 3.X).
run: install
	$(PY) manage.py build_runtimes --default --if-missing
	$(PY) manage.py serve --port $(PORT)

# As root with apt, installs what the end-to-end tests need; otherwise those tests skip and
# say why (and the command below names the packages).
test-system:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing test packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "Some end-to-end tests will skip. For all of them: sudo apt-get install -y$$missing"; \
		fi; \
	fi
	@if [ "$$(id -u)" = 0 ]; then sh .ci/podman-setup.sh; fi

# The default runtime's package set too (as make run builds it): the plot and numpy tests use it.
test: install test-system
	$(PY) manage.py build_runtimes --default --if-missing
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=92

test-fast: install
	$(PY) -m pytest -m "not slow" -x -q

bench: install
	$(PY) manage.py bench

# Load test a running site with a named Locust profile (tests/load/): smoke, light, medium,
# heavy, stress. RUN_TIME=20s and REPORT_DIR=... override its length and its report folder.
PROFILE ?= smoke
HOST ?= http://127.0.0.1:$(PORT)
.PHONY: load
load: install
	PROFILE=$(PROFILE) HOST=$(HOST) PY=$(PY) tests/load/run.sh

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# mypy with django-stubs over the app code (not tests, not migrations): pyproject.toml [tool.mypy].
typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles .coverage

# --- operations: the whole stack in containers, or monitoring beside `make run` -------------

# `make up`: .env with fresh random secrets on first use, then web, worker, PostgreSQL, the
# HTTPS front, Prometheus, Alertmanager, Grafana and logs (docker-compose.yml). COMPOSE picks
# the engine ("podman compose" works too).
COMPOSE ?= docker compose
.PHONY: up down monitor
up:
	@sh deploy/env.sh
	@command -v $(firstword $(COMPOSE)) >/dev/null || { \
		echo "make up needs a container engine with Compose ($(COMPOSE)); none is installed."; exit 1; }
	$(COMPOSE) up --build

down:
	$(COMPOSE) down

# `make monitor`: Debian's Prometheus (127.0.0.1:9090) and Alertmanager (:9093) with the
# repository's configuration, scraping the site `make run` serves (PORT) and its worker
# (WORKER_METRICS_PORT); installs them when missing, as `make test` does. Ctrl+C stops both.
WORKER_METRICS_PORT ?= 9100
monitor:
	@PORT=$(PORT) WORKER_METRICS_PORT=$(WORKER_METRICS_PORT) deploy/monitor.sh
