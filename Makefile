# django-replica-router: `make demo` and `make test` set up everything themselves.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTHON ?= python3
PYTEST_ARGS ?=
# The installed wheel is up to date with these (rebuilt by the tests when one changes).
WHEEL_STAMP   := $(VENV)/.wheel-installed
WHEEL_SOURCES := Cargo.toml Cargo.lock pyproject.toml $(shell find src -name '*.rs') \
    $(shell find python -type f -not -path '*/__pycache__/*' -not -name '*.so')

.PHONY: all demo test test-rust test-python test-fast test-server test-browser lint bench faults lag \
        bench-shared soak wheel venv postgres clean dist test-dist test-matrix \
        patroni test-patroni failover docs

all: test

## demo: build + install the wheel, bring up a primary + hot standby, run DJReplica end to end
demo: wheel postgres
	$(PY) example_project/demo.py

## test: Rust unit tests, then the fast tests, then the tests against real PostgreSQL servers
test: test-rust test-python

test-rust:
	cargo test --all-targets

test-python: test-fast test-server

## test-fast: the tests that need no PostgreSQL server (seconds once the wheel is built)
test-fast: $(WHEEL_STAMP)
	$(PY) -m pytest -p no:django tests/fast $(PYTEST_ARGS)

## test-server: the tests against a real primary + hot standby that they start themselves
test-server: $(WHEEL_STAMP) postgres
	$(PY) -m pytest -p no:django tests/server --ignore=tests/server/test_status_page_browser.py $(PYTEST_ARGS)

## test-browser: the staff status page in headless Chromium (Debian's chromium, installed
## as root when absent); UPDATE_SCREENSHOT=1 rewrites example_project/screenshots/status_page.png
UPDATE_SCREENSHOT ?=
test-browser: $(WHEEL_STAMP) postgres
	if [ -z "$${CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
	    else
	        echo "Chromium not found: install it (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM to its path." >&2
	        exit 1
	    fi
	fi
	RR_UPDATE_SCREENSHOT=$(UPDATE_SCREENSHOT) $(PY) -m pytest -p no:django tests/server/test_status_page_browser.py $(PYTEST_ARGS)

## lint: rustfmt, clippy, ruff, mypy --strict, stubtest (stubs against the built module)
lint: $(WHEEL_STAMP)
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests example_project benchmarks
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest replica_router._core --allowlist tests/stubtest-allowlist.txt

## docs: rewrite docs/settings.md's settings reference from the settings table
## (src/settings/table.rs); a fast test fails while it is out of date
docs: $(WHEEL_STAMP)
	$(PY) -m tests.settings_reference
	$(PY) -m tests.status_types_reference

## bench: router cost and dead-replica behaviour vs peers, printed as a table
bench: wheel postgres
	$(PY) benchmarks/run.py

## lag: gunicorn + HTTP load + steady writes while the standby's replay is paused for 20 s;
## a table per lag setting (LAG_ARGS="--runs defaults,no-ceiling --json out.json")
lag: wheel postgres
	$(PY) benchmarks/lag.py $(LAG_ARGS)

## faults: gunicorn + HTTP load while the standby/primary crash, restart, freeze; a table per router
## (FAULTS_ARGS="--faults standby-freeze --routers backend --conn-max-age 60 --json out.json")
FAULTS_ARGS ?=
faults: wheel postgres
	$(PY) benchmarks/faults.py $(FAULTS_ARGS)

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
	$(PIP) install -q "maturin>=1.9.4,<2" "Django>=4.2" "psycopg[binary,pool]>=3.1" "pytest>=8" \
	    "pytest-django>=4.8" "gunicorn>=22" "ruff>=0.6" "mypy>=1.10" "django-multidb-router>=0.11" \
	    "prometheus_client>=0.17" "django-prometheus>=2.3"
	touch $@

venv: $(VENV)/.deps

## wheel: build the release wheel with maturin and install it into the venv
wheel: venv
	rm -rf dist
	$(VENV)/bin/maturin build --release --out dist --interpreter $(PY)
	$(PIP) install -q --force-reinstall --no-deps dist/*.whl
	touch $(WHEEL_STAMP)

$(WHEEL_STAMP): $(VENV)/.deps $(WHEEL_SOURCES)
	$(MAKE) --no-print-directory wheel

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

## patroni: the issue-14 bed's tools: etcd 3.4 and HAProxy (Debian `etcd-server`, `haproxy`,
## installed as root when absent) and Patroni 4.1 in its own venv from the system Python
## (PATRONI_VENV); tests/patronicluster.py runs them on loopback as user postgres
PATRONI_VENV ?= .venv-patroni
SYSTEM_PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)

$(PATRONI_VENV)/.installed:
	$(SYSTEM_PYTHON) -m venv $(PATRONI_VENV)
	$(PATRONI_VENV)/bin/pip install -q "patroni[etcd3,psycopg3]>=4.1,<4.2"
	touch $@

patroni: postgres $(PATRONI_VENV)/.installed
	missing=""
	command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || missing="$$missing etcd-server"
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"
	if [ -z "$$missing" ]; then exit 0; fi
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing
	else
	    echo "Not found:$$missing. Install them (Debian/Ubuntu: sudo apt-get install$$missing)." >&2
	    exit 1
	fi

## test-patroni: real-server tests on a 3-node Patroni + etcd cluster: switchover and
## failover under reading and writing threads (tests/patroni)
test-patroni: $(WHEEL_STAMP) patroni
	PATRONI="$(abspath $(PATRONI_VENV))/bin/patroni" $(PY) -m pytest -p no:django tests/patroni $(PYTEST_ARGS)

## failover: gunicorn + HTTP reads and writes through a Patroni switchover and failover;
## this router (two alias styles), HAProxy with Patroni's checks, the tutorial's router
## (FAILOVER_ARGS="--events switchover --setups ours-static --conn-max-age 0 --json out.json")
FAILOVER_ARGS ?=
failover: wheel patroni
	PATRONI="$(abspath $(PATRONI_VENV))/bin/patroni" $(PY) benchmarks/failover.py $(FAILOVER_ARGS)

## dist: sdist + abi3 wheels tagged manylinux2014 (glibc 2.17) for DIST_TARGETS, built with
## zig (PyPI `ziglang`, no Docker), into DIST_DIR; `auditwheel show` prints each wheel's tag.
## DIST_DIR is not dist/, which `make wheel` empties.
DIST_DIR     ?= wheelhouse
DIST_TARGETS ?= x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
MANYLINUX    ?= manylinux2014

$(VENV)/.dist-deps: $(VENV)/.deps
	$(PIP) install -q "ziglang>=0.13" "auditwheel>=6"
	touch $@

dist: $(VENV)/.dist-deps
	targets=""
	for t in $(DIST_TARGETS); do
	    if rustup target list --installed 2>/dev/null | grep -qx "$$t" \
	        || timeout 300 rustup target add "$$t"; then
	        targets="$$targets $$t"
	    else
	        # rustup fetches a target's standard library from its own server, which a
	        # machine that reaches only the package registries may not reach.
	        echo "make dist: WARNING: no Rust standard library for $$t (rustup target add" \
	             "failed); its wheel is not built. The other targets are." >&2
	    fi
	done
	case "$$targets" in *x86_64-unknown-linux-gnu*) ;; *) echo "make dist: x86_64 is required" >&2; exit 1;; esac
	rm -rf $(DIST_DIR)
	$(VENV)/bin/maturin sdist --out $(DIST_DIR)
	for t in $$targets; do
	    # maturin finds zig through `python3 -m ziglang` on PATH: the venv's.
	    PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --locked --release --zig \
	        --target "$$t" --compatibility $(MANYLINUX) --out $(DIST_DIR)
	done
	for w in $(DIST_DIR)/*.whl; do $(VENV)/bin/auditwheel show "$$w"; done
	ls -l $(DIST_DIR)

## test-dist: install the x86_64 wheel (Python 3.10 and 3.13) and the sdist (a full
## release build) into clean venvs; each routes a read against a real primary + standby
test-dist: dist postgres
	RR_DIST_DIR="$(abspath $(DIST_DIR))" $(PY) -m pytest -p no:django tests/dist -v $(PYTEST_ARGS)

## test-matrix: the supported Python x Django x driver matrix (tests/noxfile.py), one wheel for all
test-matrix: wheel postgres
	$(PIP) install -q "nox>=2025.2.9"
	RR_WHEEL="$$(ls $(CURDIR)/dist/*.whl)" $(VENV)/bin/nox -f tests/noxfile.py --envdir $(CURDIR)/.nox

clean:
	rm -rf dist target $(VENV) $(DIST_DIR) .nox $(PATRONI_VENV)
