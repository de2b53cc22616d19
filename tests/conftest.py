"""Configures Django once per run, for the fast tests and, when asked for, the real ones.

Django can be configured only once per process, so this decides at
``pytest_configure`` what the whole run needs:

* only paths under ``tests/fast`` (``pytest tests/fast``, ``make test-fast``): no
  server. The cluster's aliases point at loopback ports where nothing listens, so a
  probe (or a connection) is refused at once and no test can reach a database.
* anything else (``pytest``, ``pytest tests``, ``pytest tests/server/...``): a real
  PostgreSQL primary + hot standby (``tests/pgcluster.py``) is started on free
  loopback ports, migrated, and stopped at the end of the run. Fast tests that run
  in such a run make their own offline cluster (``tests/fast/conftest.py``).

The fixtures for real-server tests are in ``tests/server/conftest.py``; the shared
constants and helpers in ``tests/support.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.support import ROUTER_SETTINGS, UNRELATED_DB, LocalCluster

FAST = support.ROOT / "tests" / "fast"
#: Runs that need no session cluster: the fast tests, the install tests (which
#: start their own cluster for the venvs they build) and the Patroni tests (which run
#: on their own 3-node bed, ``tests/patroni/conftest.py``).
NO_SESSION_CLUSTER = (FAST, support.ROOT / "tests" / "dist", support.ROOT / "tests" / "patroni")


def wants_servers(config: pytest.Config) -> bool:
    """Whether the run was asked for any test outside ``tests/fast``.

    The paths come from the command line, else from ``testpaths`` (all of
    ``tests``); a node id (``path::test``) counts by its path.
    """
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if not any(path == d or d in path.parents for d in NO_SESSION_CLUSTER):
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    cluster: LocalCluster | None = None
    if wants_servers(config):
        cluster = LocalCluster()
        cluster.up()
        support.set_cluster(cluster)
        # Shared-health files of this session (and of its subprocesses) live with the
        # cluster and go with it, instead of accumulating in the user's directory.
        share_dir = Path(cluster.base_dir) / "share"
        share_dir.mkdir(mode=0o700, exist_ok=True)
        share_dir.chmod(0o700)
        os.environ.setdefault("REPLICA_ROUTER_SHARE_DIR", str(share_dir))
        cluster.sql("primary", f"CREATE DATABASE {UNRELATED_DB}")
        databases = support.databases(cluster)
    else:
        databases = support.offline_databases()
    settings.configure(**django_settings(databases))
    django.setup()
    if cluster is not None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("migrate", database="other", verbosity=0)
        cluster.wait_replayed()


def django_settings(databases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's settings: the router, its app and middleware, on ``databases``."""
    return {
        "DEBUG": False,
        "SECRET_KEY": "tests-only-secret-key-0123456789abcdef",
        "DATABASES": databases,
        "DATABASE_ROUTERS": ["replica_router.ReadWriteRouter"],
        "REPLICA_ROUTER": dict(ROUTER_SETTINGS),
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "replica_router",
            "router",
        ],
        "MIDDLEWARE": ["replica_router.middleware.ReadYourWritesMiddleware"],
        "ROOT_URLCONF": "tests.server.urls",
        "ALLOWED_HOSTS": ["testserver", "127.0.0.1"],
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LOGGING_CONFIG": None,
    }


def pytest_report_header(config: pytest.Config) -> str:
    try:
        cluster = support.session_cluster()
    except RuntimeError:
        return "replica_router: fast tests only, no PostgreSQL server started"
    return (
        f"replica_router: PostgreSQL primary :{cluster.port('primary')}, "
        f"hot standby :{cluster.port('standby')} in {cluster.base_dir}"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        cluster = support.session_cluster()
    except RuntimeError:
        cluster = None
    from django.conf import settings

    if settings.configured:
        from replica_router import _runtime

        _runtime.reset()
    if cluster is not None:
        cluster.down()
        support.set_cluster(None)


@pytest.fixture
def router_reset() -> Iterator[None]:
    """A fresh cluster object in the router (new probes, zeroed counters)."""
    from django.db import connections

    from replica_router import _runtime

    _runtime.reset()
    connections.close_all()
    yield
    _runtime.reset()
    connections.close_all()


@pytest.fixture(autouse=True)
def clean_context() -> Iterator[None]:
    """Every test starts and ends with no routing state (pins) in its thread's context."""
    from replica_router import context

    context.end_request()
    yield
    context.end_request()
