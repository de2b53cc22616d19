"""Fast tests: no PostgreSQL server, no connection, a few seconds for all of them.

They run alone (``pytest tests/fast``: the run's aliases point at loopback ports
where nothing listens) and inside a full run (real servers configured). So a test
that builds the router's cluster takes the ``offline`` fixture: the cluster's
aliases on ports where nothing listens, which makes every node unreachable and the
cluster cold in both kinds of run. Any attempt to open a database connection fails
the test (``no_connections``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ROUTER_SETTINGS, databases_override, offline_databases


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast test that opens a database connection fails, whatever the run's settings."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    def connect(self: BaseDatabaseWrapper) -> None:
        raise AssertionError(f"a fast test tried to connect to {self.alias!r}")

    monkeypatch.setattr(BaseDatabaseWrapper, "connect", connect)


@pytest.fixture
def offline(router_reset: None) -> Iterator[dict[str, dict[str, Any]]]:
    """The session's aliases (``default`` primary, ``replica``, and ``other`` outside
    the cluster) and router settings, on ports where nothing listens; a fresh router
    before and after. Yields the ``DATABASES`` in force."""
    databases = offline_databases()
    with databases_override(databases, REPLICA_ROUTER=dict(ROUTER_SETTINGS)):
        yield databases
