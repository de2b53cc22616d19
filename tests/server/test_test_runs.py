"""A settings error that would put a test database on a hot standby stops a user's
test run first, with its check id, and no test database is created anywhere
(issue 16, point 3): ``manage.py test`` (the app's ``test`` command) and pytest with
pytest-django (the ``replica_router`` pytest plugin), on a project laid out like
django-reversion's suite: ``REPLICAS`` unset and two other PostgreSQL aliases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import LocalCluster, existing_test_databases

#: Generous: a subprocess on a shared 2-core machine; a hang must still end the test.
PROC_TIMEOUT = 120

SETTINGS = """
import json, os
DATABASES = json.loads(os.environ["RR_DBS"])
DATABASE_ROUTERS = ["replica_router.ReadWriteRouter"]
INSTALLED_APPS = ["django.contrib.contenttypes", "replica_router"]
REPLICA_ROUTER = {"PROBE_INTERVAL": 0.1, "PROBE_TIMEOUT": 0.3}
SECRET_KEY = "test-runs"
USE_TZ = True
"""

DJANGO_TESTS = """
from django.test import TestCase


class UsesEveryDatabase(TestCase):
    databases = "__all__"

    def test_nothing(self):
        pass
"""

PYTEST_TESTS = """
import pytest


@pytest.mark.django_db(databases="__all__")
def test_nothing():
    pass
"""


@pytest.fixture
def project(clean_test_databases: LocalCluster, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A project with ``default`` (the primary) and two unlisted PostgreSQL aliases:
    ``replica`` (the hot standby) and ``other`` (another database on the primary)."""
    cluster = clean_test_databases
    (tmp_path / "proj_settings.py").write_text(SETTINGS)
    (tmp_path / "app_tests.py").write_text(DJANGO_TESTS)
    (tmp_path / "test_app.py").write_text(PYTEST_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    dbs = {
        "default": cluster.dsn("primary"),
        "replica": cluster.dsn("standby"),
        "other": {**cluster.dsn("primary"), "NAME": "template1"},
    }
    env = {
        **os.environ,
        "RR_DBS": json.dumps(dbs),
        "PYTHONPATH": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "proj_settings",
        "REPLICA_ROUTER_SHARE_DIR": str(tmp_path / "share"),
    }
    env.pop("PYTEST_ADDOPTS", None)
    return tmp_path, env


def assert_nothing_created(cluster: LocalCluster) -> None:
    assert existing_test_databases(cluster, "primary") == []
    cluster.wait_replayed()
    assert existing_test_databases(cluster, "standby") == []


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_manage_py_test_stops_at_e003_before_any_test_database(
    project: tuple[Path, dict[str, str]], clean_test_databases: LocalCluster
) -> None:
    """Proves: ``manage.py test`` of that project fails with E003 (its id, the two
    aliases named) before any test database is created on either server; Django's
    own command would have created one on the primary and then failed on the
    standby's read-only transaction."""
    cwd, env = project
    code, output = run(
        [sys.executable, "-m", "django", "test", "app_tests", "-v", "2", "--noinput"], cwd, env
    )
    assert code != 0, output[-4000:]
    assert "(replica_router.E003)" in output, output[-4000:]
    assert "'replica'" in output and "'other'" in output, output[-4000:]
    # The hint's example is the alias that answers as a standby (point 5).
    assert "{'REPLICAS': {'replica': {'WEIGHT': 1}}}" in output, output[-4000:]
    assert "Creating test database" not in output, output[-4000:]
    assert "read-only transaction" not in output, output[-4000:]
    assert_nothing_created(clean_test_databases)


def test_pytest_django_stops_at_e003_before_any_test_database(
    project: tuple[Path, dict[str, str]], clean_test_databases: LocalCluster
) -> None:
    """Proves: a pytest-django session of that project stops at E003 (the plugin
    that pytest loads from the package's entry point) before any test database is
    created."""
    cwd, env = project
    code, output = run(
        [sys.executable, "-m", "pytest", "-p", "django", "-p", "no:cacheprovider", "test_app.py"],
        cwd,
        env,
    )
    assert code == pytest.ExitCode.USAGE_ERROR, output[-4000:]
    assert "(replica_router.E003)" in output, output[-4000:]
    assert_nothing_created(clean_test_databases)
