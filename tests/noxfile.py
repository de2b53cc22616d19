"""The supported matrix: each cell is a fresh venv with one Python, one Django and one
PostgreSQL driver, the project's one abi3 wheel installed into it, and the tests in
``TESTS`` run against real servers (the suite's own session cluster, see
``tests/conftest.py``).

Run with ``make test-matrix`` (it builds the wheel with ``make wheel`` first), or
``nox -f tests/noxfile.py`` with ``RR_WHEEL`` naming a wheel; ``nox -l`` lists the cells.
Interpreters are looked up on PATH and under ``~/.pyenv/versions``.
"""

from __future__ import annotations

import glob
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nox

#: What every cell runs: pytest node ids, or globs of test files (a glob that matches
#: nothing is left out, so ``tests/test_backend*.py`` joins once it exists). Extend here.
TESTS: list[str] = [
    # every fast test (no server: settings, checks, context, middleware, stubs...)
    "tests/fast",
    "tests/server/test_smoke.py",
    # routing, and the good neighbour (other databases, users' test suites)
    "tests/server/test_routing.py",
    "tests/server/test_good_neighbour.py",
    # the request path: passive health, read retry, bounded connections
    "tests/server/test_backend.py",
    # faults seen by probes
    "tests/server/test_faults.py::test_standby_stopped",
    "tests/server/test_faults.py::test_primary_stopped",
    # consistency with the standby's replay paused
    "tests/server/test_consistency.py::test_request_is_a_unit_of_work",
    "tests/server/test_consistency.py::test_reads_inside_atomic_see_the_write",
    "tests/server/test_consistency.py::test_write_outside_a_unit_pins_for_pin_seconds",
    "tests/server/test_consistency.py::test_instance_loaded_from_replica_hints_reads_to_replica",
    # the read-your-writes middleware (sync and async paths)
    "tests/server/test_consistency.py::test_cookie_read_your_writes_across_requests",
    "tests/server/test_consistency.py::test_forged_garbled_or_expired_cookie_is_ignored",
    "tests/server/test_async.py::test_async_views_cookie_round_trip",
    # the example project's manage.py test, and pytest-django
    "tests/server/test_example_project.py",
]

#: (Python, Django series, driver): the supported matrix, as pyproject.toml states it.
CELLS: list[tuple[str, str, str]] = [
    ("3.10", "5.2", "psycopg"),
    ("3.11", "5.2", "psycopg"),
    ("3.11", "5.2", "psycopg2"),
    ("3.12", "6.0", "psycopg"),
    ("3.13", "6.1", "psycopg"),
]

DRIVERS: dict[str, str] = {
    "psycopg": "psycopg[binary,pool]>=3.1",
    "psycopg2": "psycopg2-binary>=2.9",
}
TEST_DEPS: list[str] = ["pytest>=8", "pytest-django>=4.8"]

ROOT = Path(__file__).resolve().parent.parent

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_venv = "no"


def _add_pyenv_interpreters() -> None:
    """Put ``~/.pyenv/versions/X.Y.*/bin`` ahead of PATH (and of pyenv's shims, which
    answer ``pythonX.Y`` with an error unless that version is selected)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: list[str] = []
    for python in sorted({cell[0] for cell in CELLS}):
        candidates = sorted(glob.glob(str(root / f"{python}.*" / "bin" / f"python{python}")))
        if candidates:
            found.append(str(Path(candidates[-1]).parent))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_interpreters()


def selected_tests() -> list[str]:
    """``TESTS`` with globs expanded (relative to the project root)."""
    out: list[str] = []
    for entry in TESTS:
        path = entry.split("::", 1)[0]
        if glob.has_magic(path):
            out.extend(sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / path))))
        else:
            if not (ROOT / path).exists():
                raise FileNotFoundError(f"noxfile TESTS names a missing file: {entry}")
            out.append(entry)
    return out


def the_wheel() -> str:
    """The wheel to test: ``RR_WHEEL``, else the only one in ``dist/`` (``make wheel``)."""
    named = os.environ.get("RR_WHEEL")
    if named:
        return str(Path(named).resolve())
    wheels = sorted(glob.glob(str(ROOT / "dist" / "*.whl")))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in dist/ (run `make wheel`), found {wheels}")
    return wheels[0]


def junit_counts(path: Path) -> dict[str, int]:
    """tests / failures / errors / skipped from a pytest JUnit XML report."""
    suite = ET.parse(path).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    return {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}


@nox.session(download_python="never")
@nox.parametrize(
    "python,django,driver",
    [nox.param(*cell, id=f"py{cell[0]}-django{cell[1]}-{cell[2]}") for cell in CELLS],
)
def tests(session: nox.Session, django: str, driver: str) -> None:
    """One cell: install the wheel + Django + driver, run TESTS against real servers."""
    started = time.monotonic()
    # nox runs from this file's folder; the test ids are relative to the project root.
    session.chdir(str(ROOT))
    session.install(the_wheel(), f"Django~={django}.0", DRIVERS[driver], *TEST_DEPS)
    # The package must come from the wheel, and Django and the driver from this cell.
    session.run(
        "python",
        "-c",
        "import django, replica_router._core as c, sys;"
        f"assert django.VERSION[:2] == {tuple(int(x) for x in django.split('.'))!r}, django.VERSION;"
        f"assert c.__file__.startswith(sys.prefix), c.__file__;"
        f"assert '%d.%d' % sys.version_info[:2] == {session.python!r}, sys.version;"
        f"import {'psycopg' if driver == 'psycopg' else 'psycopg2'} as d;"
        "print('django', django.get_version(), '| core', c.__file__, '| driver', d.__version__)",
    )
    installed = time.monotonic() - started
    assert session.bin is not None
    report = Path(session.create_tmp()) / "junit.xml"
    # tests/test_example_project.py runs manage.py and pytest-django with this interpreter.
    env = {"RR_TEST_PYTHON": str(Path(session.bin) / "python")}
    deselect: list[str] = []
    if driver == "psycopg2":
        # Django must not find psycopg 3 here: the cell is about psycopg2.
        session.run("python", "-c", "import importlib.util as u; assert not u.find_spec('psycopg')")
        # Django's connection pool exists for psycopg 3 only, and one fast test builds
        # psycopg 3's error classes by hand (real psycopg2 errors are classified by
        # the real-server backend tests in this cell).
        deselect = ["-k", "not pooled_connection and not node_fault_reads_django_and_driver_errors"]
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:django",
        f"--junitxml={report}",
        *selected_tests(),
        *deselect,
        *session.posargs,
        env=env,
    )
    counts = junit_counts(report)
    if counts["tests"] == 0 or counts["skipped"]:
        session.error(f"cell ran {counts['tests']} tests, skipped {counts['skipped']}")
    session.log(
        f"CELL {session.name}: {counts['tests']} tests, "
        f"{time.monotonic() - started:.0f}s (install {installed:.0f}s)"
    )
