"""Fixtures for tests against the real PostgreSQL primary + hot standby.

``tests/conftest.py`` starts the session cluster when these tests are collected and
points Django at it with short probe intervals. Tests that break a node (stop,
SIGSTOP, pause replay) use the ``healthy`` fixture, which puts the cluster back and
waits for the router to see it whole again, also when the test fails. Tests that
damage the cluster for good (promotion) make their own with ``make_cluster``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from tests.support import (
    LocalCluster,
    drop_test_databases,
    restore,
    session_cluster,
    wait_all_up,
)


@pytest.fixture(scope="session")
def cluster() -> LocalCluster:
    """The session's primary + standby (``primary`` -> alias default, ``standby`` -> replica)."""
    return session_cluster()


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


@pytest.fixture
def paused(healthy: LocalCluster) -> Iterator[list[int]]:
    """The session cluster with standby replay paused; yields pks of replicated rows
    (see ``tests.server.test_consistency.replay_paused``)."""
    from tests.server.test_consistency import replay_paused

    with replay_paused(healthy) as old:
        yield old


@pytest.fixture
def clean_test_databases(healthy: LocalCluster) -> Iterator[LocalCluster]:
    """The session cluster with no test database, before the test and after it."""
    drop_test_databases(healthy)
    try:
        yield healthy
    finally:
        drop_test_databases(healthy)
