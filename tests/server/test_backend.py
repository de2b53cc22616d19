"""The router's database backend on real faults: passive health, safe read retry,
bounded connections (DESIGN.md, "Faults on the request path").

The session's ``default`` and ``replica`` aliases use
``replica_router.backends.postgresql``. Faults are real: a backend terminated with
``pg_terminate_backend`` (that very connection), a server stopped with
``-m immediate``, a server SIGSTOPped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, OperationalError, ProgrammingError, connections, transaction
from django.db.models import Count, Max
from django.test import override_settings
from router.models import ReplicationModel

import replica_router
from replica_router import _runtime, context, faults
from tests.support import (
    INTERVAL,
    RISE,
    ROUTER_SETTINGS,
    TIMEOUT,
    WINDOW,
    LocalCluster,
    wait_all_up,
    wait_until,
)

Record = Callable[[str, object], None]
#: Reads only from the replica (the primary serves them only as a fallback), so a
#: fault on the replica meets every read.
REPLICA_ONLY = {**ROUTER_SETTINGS, "PRIMARY_READ_WEIGHT": 0}


def node(alias: str) -> dict[str, Any]:
    return next(n for n in replica_router.status() if n["alias"] == alias)


def backend_pid(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@pytest.fixture
def replica_only(healthy: LocalCluster) -> Iterator[LocalCluster]:
    """The session cluster with reads on the replica only; rows to read."""
    with override_settings(REPLICA_ROUTER=REPLICA_ONLY):
        connections.close_all()
        _runtime.reset()
        ReplicationModel.objects.all().delete()
        ReplicationModel.objects.bulk_create(
            ReplicationModel(name=f"r{i}", count=i, average=1.0) for i in range(10)
        )
        healthy.wait_replayed()
        wait_all_up()
        try:
            yield healthy
        finally:
            connections.close_all()
            _runtime.reset()


def test_read_retried_when_its_replica_connection_is_terminated(
    replica_only: LocalCluster,
) -> None:
    """``pg_terminate_backend`` of the very connection a read uses (57P01): the read
    returns the right rows from the primary, the retry is counted, the replica leaves
    reads at once though it is healthy, and comes back only after RISE good probes."""
    with replica_router.unit_of_work():
        assert ReplicationModel.objects.count() == 10  # connects to the replica
        pid = backend_pid("replica")
        replica_only.sql("standby", f"SELECT pg_terminate_backend({pid})")
        probes_before = node("replica")["probes"]
        before = replica_router.decisions()["retried"]
        assert ReplicationModel.objects.filter(count__gte=5).count() == 5
        assert replica_router.decisions()["retried"] == before + 1
    n = node("replica")
    assert n["state"] == "down", n
    # psycopg 3 reads 57P01 from the server's goodbye; psycopg2 reports the lost
    # connection without a SQLSTATE. Either is a node fault.
    assert n["passive_faults"] >= 1, n
    assert n["error_class"] in ("admin_shutdown", "connection_failure"), n
    assert "passive" in n["last_error"]
    wait_until(lambda: node("replica")["state"] == "up", RISE * INTERVAL + TIMEOUT + 5)
    assert node("replica")["probes"] - probes_before >= RISE


def test_read_retried_when_the_replica_dies_mid_query(replica_only: LocalCluster) -> None:
    """A raw read through Django's cursor is sleeping on the replica when its backend
    is terminated: the caller gets the primary's answer, not an error."""
    pid_box: list[int] = []

    def kill_when_running() -> None:
        wait_until(lambda: bool(pid_box), 5)
        wait_until(
            lambda: (
                "pg_sleep"
                in replica_only.sql(
                    "standby", f"SELECT query FROM pg_stat_activity WHERE pid = {pid_box[0]}"
                )
            ),
            5,
        )
        replica_only.sql("standby", f"SELECT pg_terminate_backend({pid_box[0]})")

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    with replica_router.unit_of_work():
        alias = ReplicationModel.objects.all().db
        assert alias == "replica"
        pid_box.append(backend_pid(alias))
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT count(*), inet_server_port() FROM router_replicationmodel, pg_sleep(2)"
            )
            count, port = cursor.fetchone()
    killer.join()
    assert count == 10
    assert port == replica_only.primary_port


def test_every_read_shape_survives_a_replica_restart(replica_only: LocalCluster) -> None:
    """QuerySet iteration, get, count, exists, values, select_related,
    prefetch_related, aggregates and raw SQL, each on a connection whose replica was
    restarted under it: all answer, from the primary."""
    # Related rows for select_related / prefetch_related: auth's permissions and their
    # content types (migrated on the primary, replicated).
    perms = Permission.objects.all()
    types = ContentType.objects.all()
    shapes: list[tuple[str, Callable[[], Any]]] = [
        ("iterate", lambda: [o.name for o in ReplicationModel.objects.order_by("count")]),
        ("get", lambda: ReplicationModel.objects.get(name="r3").count),
        ("count", lambda: ReplicationModel.objects.count()),
        ("exists", lambda: ReplicationModel.objects.filter(count=9).exists()),
        ("values", lambda: list(ReplicationModel.objects.values_list("count", flat=True))),
        (
            "select_related",
            lambda: sorted(p.content_type.model for p in perms.select_related("content_type")),
        ),
        (
            "prefetch",
            lambda: sorted(
                len(ct.permission_set.all()) for ct in types.prefetch_related("permission_set")
            ),
        ),
        ("aggregate", lambda: ReplicationModel.objects.aggregate(m=Max("count"), c=Count("id"))),
        (
            "raw",
            lambda: [
                o.pk for o in ReplicationModel.objects.raw("SELECT * FROM router_replicationmodel")
            ],
        ),
    ]
    assert perms.exists() and types.exists()
    expected = {name: fn() for name, fn in shapes}  # healthy: from the replica
    for name, fn in shapes:
        wait_all_up()
        with replica_router.unit_of_work():
            assert ReplicationModel.objects.all().db == "replica"
            backend_pid("replica")  # this thread holds a live replica connection
            replica_only.stop("standby", mode="immediate")
            try:
                assert fn() == expected[name], name
            finally:
                replica_only.start("standby")


def test_writes_and_transactions_fail_as_django_makes_them_fail(
    replica_only: LocalCluster,
) -> None:
    """A write on a terminated primary connection raises Django's OperationalError
    and is not repeated; nor is an ``atomic()`` block: the rows exist at most once."""
    ReplicationModel.objects.create(name="w0", count=0, average=1.0)
    replica_only.sql("primary", f"SELECT pg_terminate_backend({backend_pid('default')})")
    with pytest.raises(OperationalError):
        ReplicationModel.objects.create(name="w1", count=1, average=1.0)
    connections["default"].close()
    assert ReplicationModel.objects.using("default").filter(name="w1").count() == 0
    wait_all_up()
    with pytest.raises(OperationalError):
        with transaction.atomic():
            ReplicationModel.objects.create(name="w2", count=2, average=1.0)
            replica_only.sql("primary", f"SELECT pg_terminate_backend({backend_pid('default')})")
            ReplicationModel.objects.create(name="w3", count=3, average=1.0)
    connections["default"].close()
    assert not ReplicationModel.objects.using("default").filter(name__in=["w2", "w3"]).exists()
    # A read inside atomic() on the replica is not moved elsewhere either.
    wait_all_up()
    with pytest.raises(OperationalError):
        with transaction.atomic(using="replica"):
            ReplicationModel.objects.using("replica").count()
            replica_only.sql("standby", f"SELECT pg_terminate_backend({backend_pid('replica')})")
            ReplicationModel.objects.using("replica").count()
    connections["replica"].close()


def test_application_errors_leave_nodes_in_rotation(replica_only: LocalCluster) -> None:
    """A unique violation, a statement_timeout (57014) and a syntax error are the
    application's: no node leaves reads and nothing is retried."""
    before = replica_router.decisions()["retried"]
    obj = ReplicationModel.objects.create(name="u", count=1, average=1.0)
    with pytest.raises(IntegrityError):
        ReplicationModel.objects.create(id=obj.id, name="dup", count=1, average=1.0)
    with connections["replica"].cursor() as cursor:
        cursor.execute("SET statement_timeout = 50")
        with pytest.raises(OperationalError) as info:
            cursor.execute("SELECT pg_sleep(1)")
        cause = info.value.__cause__
        assert (getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)) == "57014"
        cursor.execute("SET statement_timeout = 0")
        with pytest.raises(ProgrammingError):
            cursor.execute("SELEKT 1")
    for alias in ("default", "replica"):
        n = node(alias)
        assert n["state"] == "up" and n["passive_faults"] == 0, n
    assert replica_router.decisions()["retried"] == before


def test_connect_to_a_frozen_node_gives_up_within_the_bound(
    replica_only: LocalCluster, record: Record
) -> None:
    """SIGSTOP the standby: a new connection to it fails within connect_timeout
    (derived from PROBE_TIMEOUT, at least libpq's 2 s), not after minutes."""
    params = connections["replica"].get_connection_params()
    assert params["connect_timeout"] == 2 and params["keepalives"] == 1
    connections["replica"].close()
    replica_only.sigstop("standby")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            connections["replica"].ensure_connection()
        took = time.monotonic() - started
        record("frozen_connect.seconds", round(took, 2))
        assert took < params["connect_timeout"] + 1.5
    finally:
        replica_only.sigcont("standby")
        connections["replica"].close()


@pytest.mark.parametrize("persistent", [False, True], ids=["CONN_MAX_AGE=0", "persistent"])
@pytest.mark.parametrize(
    "fault", ["standby_crash", "standby_restart", "standby_frozen", "primary_crash"]
)
def test_no_failed_read_through_a_fault(
    healthy: LocalCluster, fault: str, persistent: bool, record: Record
) -> None:
    """Threads reading through each fault (weights 1:1): zero failed reads. Without
    persistent connections each read opens its own, as a request would with
    ``CONN_MAX_AGE = 0``. A thread never waits on a frozen node much longer than the
    detection window (the connect bound, for connects already started)."""
    cluster = healthy
    wait_all_up()
    stop = threading.Event()
    failures: list[str] = []
    reads = [0]
    longest = [0.0]
    lock = threading.Lock()

    def reader() -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    with replica_router.unit_of_work():
                        ReplicationModel.objects.filter(count__gte=0).exists()
                except Exception as exc:
                    with lock:
                        failures.append(repr(exc))
                took = time.monotonic() - started
                with lock:
                    reads[0] += 1
                    longest[0] = max(longest[0], took)
                if not persistent:
                    connections.close_all()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        node_name = "primary" if fault == "primary_crash" else "standby"
        if fault == "standby_frozen":
            cluster.sigstop("standby")
            time.sleep(WINDOW + 2.5)
            cluster.sigcont("standby")
        else:
            cluster.stop(node_name, mode="immediate")
            if fault == "standby_restart":
                cluster.start("standby", wait_streaming=False)
            time.sleep(WINDOW + 1.5)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    record(
        f"{fault}.{'persistent' if persistent else 'cma0'}",
        (reads[0], len(failures), round(longest[0], 2)),
    )
    assert reads[0] > 50
    assert failures == [], failures[:5]
    if fault == "standby_frozen":
        # Queries in flight are interrupted at detection; connects end at their bound.
        assert longest[0] < max(WINDOW, 2.0) + 1.5, longest[0]


def test_interrupt_touches_only_live_connections_of_that_alias(
    replica_only: LocalCluster,
) -> None:
    """``faults.interrupt`` shuts down the sockets of the alias's live connections
    only: the primary's connection in this thread keeps working."""
    backend_pid("replica")
    backend_pid("default")
    assert faults.interrupt("replica", primary=False) >= 1
    with pytest.raises(OperationalError):
        with connections["replica"].cursor() as cursor:
            cursor.execute("SET application_name = 'interrupted'")  # not a read
    assert backend_pid("default") > 0
    connections["replica"].close()
    # The primary's connection inside a transaction is never interrupted.
    with transaction.atomic():
        backend_pid("default")
        assert faults.interrupt("default", primary=True) == 0
        assert backend_pid("default") > 0


def test_pooled_connection_with_health_checks_reports_and_retries(
    replica_only: LocalCluster,
) -> None:
    """Django's connection pool (``OPTIONS["pool"]``) with ``CONN_HEALTH_CHECKS``: a
    pooled replica connection terminated under a read is reported and the read is
    retried; the connect bound and keepalives reach the pool's connections."""
    from replica_router.backends.postgresql.base import DatabaseWrapper

    settings_dict = {
        **connections["replica"].settings_dict,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 5}},
    }
    pooled = DatabaseWrapper(settings_dict, alias="replica")
    try:
        params = pooled.get_connection_params()
        assert params["connect_timeout"] == 2 and params["keepalives"] == 1
        with replica_router.unit_of_work():
            with pooled.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
                replica_only.sql("standby", f"SELECT pg_terminate_backend({pid})")
                cursor.execute("SELECT count(*), inet_server_port() FROM router_replicationmodel")
                count, port = cursor.fetchone()
        assert count == 10 and port == replica_only.primary_port
        assert node("replica")["passive_faults"] >= 1
    finally:
        pooled.close()
        pooled.close_pool()


def test_async_view_read_retried_after_the_replica_dies(replica_only: LocalCluster) -> None:
    """An async view (ASGI, ``AsyncClient``) whose read meets a freshly stopped
    replica answers from the primary: the connect failure is reported and the read
    runs again elsewhere."""
    import asyncio

    from django.test import AsyncClient

    pk = ReplicationModel.objects.using("default").get(name="r1").pk
    # Probes alone would take 1000 failures to notice: only the request path can. A
    # generous probe timeout keeps a loaded machine from flapping the nodes meanwhile.
    slow = {**REPLICA_ONLY, "FALL": 1000, "PROBE_INTERVAL": 0.5, "PROBE_TIMEOUT": 2.0}
    with override_settings(REPLICA_ROUTER=slow):
        _runtime.reset()
        wait_all_up()
        connections.close_all()
        context.end_request()  # the fixture's writes pinned this context to the primary
        replica_only.stop("standby", mode="immediate")
        try:
            response = asyncio.run(AsyncClient().get(f"/aread-any/{pk}/"))
            retried = replica_router.decisions()["retried"]
            # The report is folded in at once, or by the prober's next step if it
            # held its lock at that moment (the report never waits for it).
            wait_until(lambda: node("replica")["passive_faults"] >= 1, 5)
            n = node("replica")
        finally:
            replica_only.start("standby")
            _runtime.reset()
    assert response.status_code == 200, response.content
    assert response.json()["found"] is True
    assert n["passive_faults"] >= 1 and n["state"] == "down", n
    assert retried >= 1
