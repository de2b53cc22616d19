"""Roles that change (DESIGN.md, "Roles that change"): writes follow the primary.

Real role changes on a private cluster each (``tests/pgroles.py``): a clean switchover
(the old primary comes back as a standby), a failover (``stop -m immediate`` and
``pg_promote()``), and a demoted primary still reached by a new connection before
the router has seen the change (a long probe interval keeps the core's view old, so
the statement is rejected with 25006 deterministically).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.local import Local
from django.db import DatabaseError, connections, transaction
from router.models import ReplicationModel

import replica_router
from replica_router.roles import PrimaryUnavailable, roles
from tests.pgroles import failover, switchover
from tests.server.load import Load
from tests.support import (
    BACKEND,
    LocalCluster,
    databases_override,
    router_settings,
    wait_until,
)

SLACK = 1.0


def cluster_databases(
    c: LocalCluster, alias: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """``default`` on the primary node and ``replica`` on the standby, both with the
    router's backend (the README's aliases) and the ``alias`` settings."""
    return {
        "default": {**c.dsn("primary"), "ENGINE": BACKEND, **(alias or {})},
        "replica": {**c.dsn("standby"), "ENGINE": BACKEND, **(alias or {})},
    }


def reload_connections() -> None:
    """Django's connection handler reads ``DATABASES`` once: make it read them again
    (this thread's connections closed first; no other thread uses any now)."""
    connections.close_all()
    connections._settings = None
    connections.__dict__.pop("settings", None)
    connections._connections = Local(connections.thread_critical)


@contextmanager
def using_databases(dbs: dict[str, dict[str, Any]], **router: Any) -> Iterator[None]:
    """Django and the router on ``dbs`` (``router`` settings changed) for the block."""
    with databases_override(dbs), router_settings(**router):
        reload_connections()
        try:
            yield
        finally:
            reload_connections()
            close_pools(dbs)
    reload_connections()


def close_pools(aliases: Iterable[str]) -> None:
    """Django keeps connection pools per alias for the process: close those of
    ``aliases`` (they point at a cluster that goes away)."""
    from django.db.backends.postgresql.base import DatabaseWrapper as Postgres

    from replica_router.backends.postgresql.base import DatabaseWrapper

    for alias in aliases:
        pool = Postgres._connection_pools.pop(alias, None)
        if pool is not None:
            pool.close()
        DatabaseWrapper._rr_pool_nodes.pop(alias, None)


@contextmanager
def on_cluster(
    c: LocalCluster, alias: dict[str, Any] | None = None, **router: Any
) -> Iterator[None]:
    """Django pointed at ``c`` (``alias`` settings on its aliases, ``router`` settings
    changed), the model's table created on its primary; connections closed after."""
    with using_databases(cluster_databases(c, alias), **router):
        with connections["default"].schema_editor() as editor:
            editor.create_model(ReplicationModel)
        c.wait_replayed()
        wait_until(lambda: roles()["primary_node"] == "default", 10)
        yield


def server_port(alias: str) -> int:
    """The port of the server ``alias``'s connection is on now."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT inet_server_port()")
        return int(cursor.fetchone()[0])


def rows_with(c: LocalCluster, node: str, value: str) -> int:
    return int(c.sql(node, f"SELECT count(*) FROM router_replicationmodel WHERE name = '{value}'"))


def write(value: str) -> None:
    ReplicationModel.objects.create(name=value, count=1, average=1.0)


def test_switchover_under_load_writes_follow_and_old_primary_serves_reads(
    make_cluster: Callable[[], LocalCluster], router_reset: None, record: Any
) -> None:
    """A clean switchover under reading and writing threads: no read fails, writes
    resume on the new primary (every acknowledged row is there, once), and the
    demoted primary serves reads again through the replica alias once it streams."""
    c = make_cluster()
    with on_cluster(c):
        with Load(writers=2, readers=2) as load:
            time.sleep(0.5)
            event = time.monotonic()
            switchover(c)
            rejoined = time.monotonic()
            load.wait_writes_after(rejoined, 10)
        record("switchover_failed_writes", len(load.failed_writes))
        record("switchover_write_outage_s", round(load.outage_after(event), 3))
        record("switchover_seconds", round(rejoined - event, 3))
        assert load.failed_reads == [], load.failed_reads[:3]
        assert load.acked, "no write succeeded"
        missing = [v for v in load.acked if rows_with(c, "standby", v) != 1]
        assert missing == [], missing[:5]
        assert server_port("default") == c.port("standby")
        r = roles()
        assert r["primary_node"] == "replica" and r["role_changes"] >= 1, r

        def old_primary_reads() -> bool:
            node = next(n for n in replica_router.status() if n["alias"] == "default")
            return bool(
                node["state"] == "up"
                and node["observed_role"] == "replica"
                and node["connected_as"] == "replica"
            )

        wait_until(old_primary_reads, 10)
        connections["replica"].close()
        assert server_port("replica") == c.port("primary")


def test_failover_writes_resume_on_the_promoted_standby(
    make_cluster: Callable[[], LocalCluster], router_reset: None, record: Any
) -> None:
    """The primary crashes (``stop -m immediate``) and the standby is promoted: no read
    fails, writes resume on the new primary; acknowledged rows missing there (async
    replication loses what was in flight) are counted, not asserted."""
    c = make_cluster()
    with on_cluster(c):
        with Load(writers=2, readers=2) as load:
            time.sleep(0.5)
            event = time.monotonic()
            failover(c)
            promoted = time.monotonic()
            load.wait_writes_after(promoted, 10)
        record("failover_failed_writes", len(load.failed_writes))
        record("failover_write_outage_s", round(load.outage_after(event), 3))
        lost = [v for v in load.acked if rows_with(c, "standby", v) == 0]
        record("failover_acked_missing", len(lost))
        assert load.failed_reads == [], load.failed_reads[:3]
        late = [v for t, v in load.acked_at if t > promoted]
        assert late and all(rows_with(c, "standby", v) == 1 for v in late[-5:])
        assert server_port("default") == c.port("standby")


@contextmanager
def demoted_unseen(c: LocalCluster, **alias: Any) -> Iterator[None]:
    """Django on ``c`` (``alias`` settings on both aliases) with a long probe interval;
    then a switchover the core has not probed yet: a new connection of ``default``
    still goes to the old primary, which is a streaming standby now."""
    with on_cluster(c, alias, PROBE_INTERVAL=60.0, FALL=2, RISE=1):
        connections.close_all()
        switchover(c)
        assert roles()["primary_node"] == "default"  # not seen yet
        yield


def test_write_rejected_as_read_only_runs_once_on_the_new_primary(
    make_cluster: Callable[[], LocalCluster], router_reset: None
) -> None:
    """Outside ``atomic()``, an INSERT rejected with 25006 by the demoted primary ran
    nowhere: it runs once more, on the new primary, and the row exists exactly once."""
    c = make_cluster()
    with demoted_unseen(c):
        write("retried")
        assert rows_with(c, "standby", "retried") == 1
        assert server_port("default") == c.port("standby")
        assert roles()["primary_node"] == "replica"


def test_with_django_pool_writes_follow_the_primary(
    make_cluster: Callable[[], LocalCluster], router_reset: None
) -> None:
    """With Django's connection pool (``OPTIONS["pool"]``), which connects where it was
    built: the 25006 write runs once on the new primary, and the pool of ``default``
    now hands out connections to it."""
    c = make_cluster()
    pool = {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}}
    # Health checks: the pool's connections from before the switchover are dead.
    with demoted_unseen(c, OPTIONS=pool, CONN_HEALTH_CHECKS=True):
        write("pooled")
        assert rows_with(c, "standby", "pooled") == 1
        connections["default"].close()
        assert server_port("default") == c.port("standby")


def test_write_inside_atomic_fails_and_is_not_repeated(
    make_cluster: Callable[[], LocalCluster], router_reset: None
) -> None:
    """Inside ``atomic()`` the rejected INSERT fails as Django makes it fail, and is
    not run again; the next transaction goes to the new primary."""
    c = make_cluster()
    with demoted_unseen(c):
        with pytest.raises(DatabaseError, match="read-only"):
            with transaction.atomic(using="default"):
                write("in-atomic")
        assert rows_with(c, "standby", "in-atomic") == 0
        with transaction.atomic(using="default"):
            write("next-txn")
        assert rows_with(c, "standby", "next-txn") == 1
        assert rows_with(c, "standby", "in-atomic") == 0


def test_writes_wait_through_the_gap_then_give_up_with_a_clear_error(
    make_cluster: Callable[[], LocalCluster], router_reset: None, record: Any
) -> None:
    """The primary stops: a write waits for a primary instead of failing, and goes
    through once the standby is promoted. With nothing to promote it gives up after
    PRIMARY_WAIT_TIMEOUT with an error that says so; reads never wait."""
    c = make_cluster()
    bound = 1.5
    with on_cluster(c, PRIMARY_WAIT_TIMEOUT=bound):
        connections.close_all()  # a write on a new connection: its connect is refused
        c.stop("primary", "immediate")
        started = time.monotonic()
        with pytest.raises(PrimaryUnavailable, match="PRIMARY_WAIT_TIMEOUT"):
            write("no-primary")
        waited = time.monotonic() - started
        record("gave_up_after_s", round(waited, 3))
        assert bound <= waited <= bound + 2 * SLACK
        read_started = time.monotonic()
        with replica_router.unit_of_work():
            assert ReplicationModel.objects.filter(name="no-primary").count() == 0
        assert time.monotonic() - read_started < bound

    with on_cluster_after_stop(c, PRIMARY_WAIT_TIMEOUT=30.0):
        import threading

        done: list[float] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                write("gap")
                done.append(time.monotonic())
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        promoted_at = time.monotonic()
        c.promote()
        t.join(30)
        assert not errors, errors
        assert done, "the write did not return"
        record("write_after_promotion_s", round(done[0] - promoted_at, 3))
        assert rows_with(c, "standby", "gap") == 1


@contextmanager
def on_cluster_after_stop(c: LocalCluster, **router: Any) -> Iterator[None]:
    """Django on ``c`` whose primary is already stopped (no table to create)."""
    with using_databases(cluster_databases(c), **router):
        yield


def test_two_primaries_on_one_timeline_refuse_writes(
    cluster: LocalCluster,
    make_cluster: Callable[[], LocalCluster],
    router_reset: None,
) -> None:
    """Two distinct servers that both say they are primary on timeline 1 (two
    independent clusters): writes fail at once, naming both."""
    other = make_cluster()
    dbs = {
        "default": {**cluster.dsn("primary"), "ENGINE": BACKEND},
        "replica": {**other.dsn("primary"), "ENGINE": BACKEND},
    }
    with using_databases(dbs, PRIMARY_WAIT_TIMEOUT=30.0):
        wait_until(lambda: roles()["state"] == "split", 10)
        started = time.monotonic()
        with pytest.raises(PrimaryUnavailable) as info:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
        assert time.monotonic() - started < SLACK
        message = str(info.value)
        assert "timeline 1" in message, message
        assert str(cluster.port("primary")) in message, message
        assert str(other.port("primary")) in message, message
