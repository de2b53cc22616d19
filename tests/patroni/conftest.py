"""Fixtures for the tests on a 3-node Patroni + etcd cluster (``make test-patroni``).

One bed per run (``tests/patronicluster.py``), node1 leading and the others streaming
at the start of every test, whatever the previous test did. Django runs in this
process; :func:`django_on` points its connections (and the router) at the bed in one
of two alias styles:

* ``static``: today's aliases, ``default`` = node1, ``replica`` / ``replica2`` = the others;
* ``multihost``: libpq multi-host aliases over all three nodes, ``default`` with
  ``target_session_attrs=read-write`` and ``replica`` with ``prefer-standby``.

``tests/conftest.py`` starts no primary + standby for this folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.patronicluster import NAMES, PatroniCluster
from tests.support import BACKEND, ROUTER_SETTINGS, databases_override


def bed_databases(bed: PatroniCluster, style: str, conn_max_age: int) -> dict[str, Any]:
    """``DATABASES`` for ``bed`` in alias ``style`` (the router's backend)."""
    if style == "static":
        dbs: dict[str, dict[str, Any]] = {
            "default": bed.dsn("node1"),
            "replica": bed.dsn("node2"),
            "replica2": bed.dsn("node3"),
        }
    elif style == "multihost":
        dbs = {
            "default": bed.multi_host_dsn("read-write"),
            "replica": bed.multi_host_dsn("prefer-standby"),
        }
    else:
        raise ValueError(f"unknown alias style {style!r}")
    for entry in dbs.values():
        entry["ENGINE"] = BACKEND
        entry["CONN_MAX_AGE"] = conn_max_age
    return dbs


def _reset_connections() -> None:
    """Make Django's connection handler read ``settings.DATABASES`` again (it caches
    the first one it saw) and forget this thread's connection objects."""
    from asgiref.local import Local
    from django.db import connections

    connections.close_all()
    connections.__dict__.pop("settings", None)
    connections._settings = None
    connections._connections = Local(connections.thread_critical)


@contextmanager
def django_on(
    bed: PatroniCluster, style: str, conn_max_age: int = 0, **router: Any
) -> Iterator[None]:
    """Django and the router on ``bed`` for the duration (see the module doc);
    ``router``: more ``REPLICA_ROUTER`` keys (``PATRONI_URLS``, ...)."""
    from replica_router import _runtime

    dbs = bed_databases(bed, style, conn_max_age)
    replicas = [a for a in dbs if a != "default"]
    settings = {**ROUTER_SETTINGS, "REPLICAS": replicas, **router}
    with databases_override(dbs, REPLICA_ROUTER=settings):
        _reset_connections()
        _runtime.reset()
        try:
            yield
        finally:
            _reset_connections()
            _runtime.reset()
    _reset_connections()


@pytest.fixture(scope="session")
def session_bed() -> Iterator[PatroniCluster]:
    """The run's Patroni cluster, with the example's tables migrated on it."""
    from django.core.management import call_command

    with PatroniCluster() as bed:
        with django_on(bed, "static"):
            call_command("migrate", database="default", verbosity=0)
        yield bed


@pytest.fixture
def bed(session_bed: PatroniCluster, router_reset: None) -> PatroniCluster:
    """The bed with node1 leading and node2, node3 streaming from it."""
    session_bed.restore(NAMES[0])
    return session_bed
