"""Test bed: a real PostgreSQL primary + hot standby, started once per session.

Django is configured against it with short probe intervals. Tests that break a node
(stop, SIGSTOP, pause replay) use the ``healthy`` fixture, which puts the cluster
back and waits for the router to see it whole again, also when the test fails.
Tests that damage the cluster for good (promotion) make their own with
``make_cluster``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "example_project"))

from pgcluster import LocalCluster  # noqa: E402

# Probe fast so that detection windows are short: FALL x INTERVAL + TIMEOUT = 0.5 s.
INTERVAL = 0.1
TIMEOUT = 0.3
FALL = 2
RISE = 2
WINDOW = FALL * INTERVAL + TIMEOUT

#: A database of the project's that is not part of the cluster (issue: a good
#: neighbour). It lives on the primary's server but is no standby of anything.
UNRELATED_DB = "unrelated"
BACKEND = "replica_router.backends.postgresql"

ROUTER_SETTINGS: dict[str, Any] = {
    # Explicit: with the unrelated alias there are two other PostgreSQL aliases, and
    # the router never guesses which of them is a standby.
    "REPLICAS": ["replica"],
    "PROBE_INTERVAL": INTERVAL,
    "PROBE_TIMEOUT": TIMEOUT,
    "FALL": FALL,
    "RISE": RISE,
}

_cluster: LocalCluster | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _cluster
    import django
    from django.conf import settings

    if settings.configured:
        return
    _cluster = LocalCluster()
    _cluster.up()
    # Shared-health files of this session (and of its subprocesses) live with the
    # cluster and go with it, instead of accumulating in the user's directory.
    share_dir = Path(_cluster.base_dir) / "share"
    share_dir.mkdir(mode=0o700, exist_ok=True)
    share_dir.chmod(0o700)
    os.environ.setdefault("REPLICA_ROUTER_SHARE_DIR", str(share_dir))
    _cluster.sql("primary", f"CREATE DATABASE {UNRELATED_DB}")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-secret-key-0123456789abcdef",
        DATABASES={
            # The cluster's aliases use the router's backend (passive health, read
            # retry, bounded connections), as the quickstart recommends.
            "default": {**_cluster.dsn("primary"), "ENGINE": BACKEND},
            "replica": {**_cluster.dsn("standby"), "ENGINE": BACKEND},
            "other": {
                **_cluster.dsn("primary"),
                "NAME": UNRELATED_DB,
                "OPTIONS": {"connect_timeout": 2},
            },
        },
        DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
        REPLICA_ROUTER=dict(ROUTER_SETTINGS),
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "replica_router",
            "router",
        ],
        MIDDLEWARE=["replica_router.middleware.ReadYourWritesMiddleware"],
        ROOT_URLCONF="tests.urls",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate", database="other", verbosity=0)
    _cluster.wait_replayed()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _cluster
    if _cluster is not None:
        from replica_router import _runtime

        _runtime.reset()
        _cluster.down()
        _cluster = None


@pytest.fixture(scope="session")
def cluster() -> LocalCluster:
    """The session's primary + standby (``primary`` -> alias default, ``standby`` -> replica)."""
    assert _cluster is not None
    return _cluster


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> float:
    """Polls until ``predicate()`` is truthy; returns the seconds it took. Fails on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.2f}s: {predicate}")
        time.sleep(interval)


def states() -> dict[str, str]:
    import replica_router

    return {n["alias"]: n["state"] for n in replica_router.status()}


def wait_all_up(timeout: float = 10) -> None:
    wait_until(lambda: set(states().values()) == {"up"}, timeout)


def restore(cluster: LocalCluster) -> None:
    """Put the session cluster back to primary + streaming standby."""
    for node in ("primary", "standby"):
        if cluster.is_frozen(node):
            cluster.sigcont(node)
    for node in ("primary", "standby"):
        if not cluster.is_running(node):
            cluster.start(node, wait_streaming=False)
    try:
        cluster.resume_replay()
    except Exception:
        pass
    cluster.wait_streaming()


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


@pytest.fixture
def healthy(cluster: LocalCluster, router_reset: None) -> Iterator[LocalCluster]:
    """The session cluster, all up; put back together after the test, whatever happens."""
    restore(cluster)
    wait_all_up()
    try:
        yield cluster
    finally:
        restore(cluster)


@pytest.fixture
def make_cluster() -> Iterator[Callable[[], LocalCluster]]:
    """Factory for a private cluster (for tests that promote or otherwise damage it)."""
    made: list[LocalCluster] = []

    def make() -> LocalCluster:
        c = LocalCluster()
        made.append(c)
        c.up()
        return c

    yield make
    for c in made:
        c.down()


Record = Callable[[str, object], None]
_measure = logging.getLogger("tests.measure")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """Attach a measured number to the test report (``user_properties``) and log it."""

    def add(name: str, value: object) -> None:
        request.node.user_properties.append((name, value))
        _measure.info("%s = %s", name, value)

    return add


@pytest.fixture(autouse=True)
def clean_context() -> Iterator[None]:
    """Every test starts and ends with no routing state (pins) in its thread's context."""
    from replica_router import context

    context.end_request()
    yield
    context.end_request()


@pytest.fixture
def paused(healthy: LocalCluster) -> Iterator[list[int]]:
    """The session cluster with standby replay paused; yields pks of replicated rows
    (see ``tests.test_consistency.replay_paused``)."""
    from tests.test_consistency import replay_paused

    with replay_paused(healthy) as old:
        yield old


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def existing_test_databases(cluster: LocalCluster, node: str = "primary") -> list[str]:
    """Names of test databases (``test_*``) that exist on ``node``."""
    out = cluster.sql(
        node, r"SELECT datname FROM pg_database WHERE datname LIKE 'test\_%' ORDER BY 1"
    )
    return out.split()


@pytest.fixture
def clean_test_databases(healthy: LocalCluster) -> Iterator[LocalCluster]:
    """The session cluster with no test database, before the test and after it."""
    drop_test_databases(healthy)
    try:
        yield healthy
    finally:
        drop_test_databases(healthy)


def drop_test_databases(cluster: LocalCluster) -> None:
    """Drop leftover test databases (even with sessions still attached to them)."""
    for name in existing_test_databases(cluster):
        cluster.sql("primary", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
