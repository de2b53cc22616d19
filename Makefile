# django-replica-router: `make demo` and `make test` set up everything themselves.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: all demo test test-rust test-python test-browser lint bench bench-shared soak wheel venv postgres clean

all: test

## demo: build + install the wheel, bring up a primary + hot standby, run DJReplica end to end
demo: wheel postgres
	$(PY) example_project/demo.py

## test: Rust unit tests, then the Python suite against real PostgreSQL servers
test: test-rust test-python

test-rust:
	cargo test --all-targets

test-python: wheel postgres
	$(PY) -m pytest -p no:django --ignore=tests/test_status_page_browser.py $(PYTEST_ARGS)

## test-browser: the staff status page in headless Chromium (Debian's chromium, installed
## as root when absent); UPDATE_SCREENSHOT=1 rewrites example_project/screenshots/status_page.png
UPDATE_SCREENSHOT ?=
test-browser: wheel postgres
	if [ -z "$${CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
	    else
	        echo "Chromium not found: install it (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM to its path." >&2
	        exit 1
	    fi
	fi
	RR_UPDATE_SCREENSHOT=$(UPDATE_SCREENSHOT) $(PY) -m pytest -p no:django tests/test_status_page_browser.py $(PYTEST_ARGS)

## lint: rustfmt, clippy, ruff, mypy --strict, stubtest (stubs against the built module)
lint: venv
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests example_project benchmarks
	$(VENV)/bin/mypy
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q
	$(PY) -m mypy.stubtest replica_router._core --allowlist tests/stubtest-allowlist.txt

## bench: router cost and dead-replica behaviour vs peers, printed as a table
bench: wheel postgres
	$(PY) benchmarks/run.py

## bench-shared: one prober per host under gunicorn (1, 4, 16 workers): probe backends,
## detection in every worker, takeover after SIGKILL, db_for_read shared vs not
bench-shared: wheel postgres
	$(PY) benchmarks/shared_health.py

## soak: flap a standby for SOAK_MINUTES while threads route; prints RSS/threads/fds
SOAK_MINUTES ?= 10
soak: wheel postgres
	$(PY) benchmarks/soak.py --minutes $(SOAK_MINUTES)

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "maturin>=1.9.4,<2" "Django>=4.2" "psycopg[binary]>=3.1" "pytest>=8" \
	    "pytest-django>=4.8" "gunicorn>=22" "ruff>=0.6" "mypy>=1.10" "django-multidb-router>=0.11" \
	    "prometheus_client>=0.17" "django-prometheus>=2.3"
	touch $@

venv: $(VENV)/.deps

## wheel: build the release wheel with maturin and install it into the venv
wheel: venv
	rm -rf dist
	$(VENV)/bin/maturin build --release --out dist --interpreter $(PY)
	$(PIP) install -q --force-reinstall --no-deps dist/*.whl

## postgres: PostgreSQL's server binaries (Debian package `postgresql`), installed if absent
postgres:
	if [ -n "$${PG_BIN:-}" ] && [ -x "$$PG_BIN/initdb" ]; then exit 0; fi
	if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
	else
	    echo "PostgreSQL server binaries not found: install them (Debian/Ubuntu: sudo apt-get install postgresql) or set PG_BIN to their directory." >&2
	    exit 1
	fi

clean:
	rm -rf dist target $(VENV)
