"""libpq multi-host aliases (DESIGN.md, "Settings" and "Roles that change"): each
host is a node; ``target_session_attrs`` says which role the alias wants.

Both aliases list both servers of a private cluster, as a user following a primary
with libpq would: ``default`` with ``read-write``, ``replica`` with
``prefer-standby``. Reads go to the standby, writes to the primary, and writes
follow the primary through a switchover and a failover (``tests/pgroles.py``). Each
server is probed once whichever aliases list it (one probe connection, its nodes
moving together), also when a follower process reads the shared health.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core import checks
from django.core.management import call_command
from django.db import connections
from router.models import ReplicationModel

import replica_router
from replica_router.roles import roles
from tests.gunicorn_pool import probe_backends
from tests.pgroles import failover, promote, switchover
from tests.server.load import Load
from tests.server.test_roles import rows_with, server_port, using_databases, write
from tests.server.test_shared_health import run_follower
from tests.support import BACKEND, INTERVAL, LocalCluster, wait_until


def multi_host_databases(c: LocalCluster) -> dict[str, dict[str, Any]]:
    """``default`` and ``replica`` both on every server of ``c`` (libpq's form)."""
    hosts = ",".join([c.dsn("primary")["HOST"], c.dsn("standby")["HOST"]])
    ports = f"{c.port('primary')},{c.port('standby')}"
    base = {**c.dsn("primary"), "ENGINE": BACKEND, "HOST": hosts, "PORT": ports}
    return {
        "default": {**base, "OPTIONS": {"target_session_attrs": "read-write"}},
        "replica": {**base, "OPTIONS": {"target_session_attrs": "prefer-standby"}},
    }


def node_name(c: LocalCluster, alias: str, node: str) -> str:
    return f"{alias}@{c.dsn(node)['HOST']}:{c.port(node)}"


@contextmanager
def on_multi_host(c: LocalCluster, **router: Any) -> Iterator[None]:
    """Django on ``c`` through multi-host aliases, the model's table created; the
    primary takes no weighted reads, so that a plain read goes through ``replica``."""
    with using_databases(multi_host_databases(c), **{"PRIMARY_READ_WEIGHT": 0, **router}):
        wait_until(lambda: roles()["primary_node"] == node_name(c, "default", "primary"), 10)
        with connections["default"].schema_editor() as editor:
            editor.create_model(ReplicationModel)
        c.wait_replayed()
        yield


def exposition() -> str:
    """The router's metrics, as Prometheus scrapes them."""
    from prometheus_client import CollectorRegistry, generate_latest

    from replica_router import metrics

    registry = CollectorRegistry()
    metrics.register(registry)
    try:
        return generate_latest(registry).decode()
    finally:
        metrics.unregister(registry)


def read_port() -> int:
    """The port of the server a plain read (``unit_of_work``) runs on."""
    with replica_router.unit_of_work():
        alias = ReplicationModel.objects.all().db
        return server_port(alias)


def test_multi_host_aliases_pass_check_read_from_the_standby_write_to_the_primary(
    make_cluster: Callable[[], LocalCluster], router_reset: None
) -> None:
    """``manage.py check`` accepts the aliases; each host is a node named
    ``alias@host:port`` in ``status()``; reads run on the standby (through
    ``replica``), writes on the primary (through ``default``), each connection on one
    host that the router chose."""
    c = make_cluster()
    with on_multi_host(c):
        # Not E004/W003 either: a host of the replica alias being the primary is
        # what the multi-host form is for.
        ours = [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.")]
        assert ours == []
        params = connections["replica"].get_connection_params()
        assert "target_session_attrs" not in params  # the router picks the one host
        call_command("check", stdout=StringIO(), stderr=StringIO())
        names = {n["alias"]: n for n in replica_router.status()}
        primary, standby = (node_name(c, "default", n) for n in ("primary", "standby"))
        assert set(names) == {
            primary,
            standby,
            node_name(c, "replica", "primary"),
            node_name(c, "replica", "standby"),
        }
        assert names[primary]["primary_now"] and names[primary]["connected_as"] == "default"
        # The primary reached through the replica alias is the same server: primary
        # now too, so replica_status judges the cluster healthy (exit code 0).
        assert names[node_name(c, "replica", "primary")]["primary_now"]
        assert not names[standby]["primary_now"] and names[standby]["connected_as"] is None
        replica_standby = node_name(c, "replica", "standby")
        wait_until(
            lambda: any(
                n["alias"] == replica_standby and n["state"] == "up"
                for n in replica_router.status()
            ),
            10,
        )
        out = StringIO()
        call_command("replica_status", stdout=out)  # exits non-zero if unhealthy
        assert primary in out.getvalue() and replica_standby in out.getvalue()
        text = exposition()
        assert f'replica_router_node_primary_now{{alias="{primary}"}} 1.0' in text, text
        write("multi")
        assert rows_with(c, "primary", "multi") == 1
        assert server_port("default") == c.port("primary")
        for _ in range(5):
            connections["replica"].close()
            assert read_port() == c.port("standby")


def test_multi_host_switchover_writes_follow_the_primary(
    make_cluster: Callable[[], LocalCluster], router_reset: None, record: Any
) -> None:
    """A switchover under reading and writing threads, with multi-host aliases: no
    read fails, writes resume on the new primary (every acknowledged row there,
    once), and reads go to the demoted primary once it streams."""
    c = make_cluster()
    with on_multi_host(c):
        with Load(writers=2, readers=2) as load:
            time.sleep(0.5)
            event = time.monotonic()
            switchover(c)
            rejoined = time.monotonic()
            load.wait_writes_after(rejoined, 10)
        record("multi_host_switchover_failed_writes", len(load.failed_writes))
        record("multi_host_switchover_write_outage_s", round(load.outage_after(event), 3))
        assert load.failed_reads == [], load.failed_reads[:3]
        assert load.acked, "no write succeeded"
        missing = [v for v in load.acked if rows_with(c, "standby", v) != 1]
        assert missing == [], missing[:5]
        connections["default"].close()
        assert server_port("default") == c.port("standby")
        assert roles()["primary_node"] == node_name(c, "default", "standby")
        status = {n["alias"]: n for n in replica_router.status()}
        new_primary = status[node_name(c, "default", "standby")]
        assert new_primary["primary_now"] and new_primary["connected_as"] == "default"

        def old_primary_reads() -> bool:
            node = next(
                n
                for n in replica_router.status()
                if n["alias"] == node_name(c, "replica", "primary")
            )
            return bool(node["state"] == "up" and node["observed_role"] == "replica")

        wait_until(old_primary_reads, 10)
        ports = set()
        for _ in range(10):
            connections["replica"].close()
            ports.add(read_port())
        assert ports == {c.port("primary")}


def test_multi_host_failover_writes_resume_on_the_promoted_standby(
    make_cluster: Callable[[], LocalCluster], router_reset: None, record: Any
) -> None:
    """The primary crashes and the standby is promoted, with multi-host aliases: no
    read fails and writes resume on the new primary."""
    c = make_cluster()
    with on_multi_host(c):
        with Load(writers=2, readers=2) as load:
            time.sleep(0.5)
            event = time.monotonic()
            failover(c)
            promoted = time.monotonic()
            load.wait_writes_after(promoted, 10)
        record("multi_host_failover_failed_writes", len(load.failed_writes))
        record("multi_host_failover_write_outage_s", round(load.outage_after(event), 3))
        assert load.failed_reads == [], load.failed_reads[:3]
        late = [v for t, v in load.acked_at if t > promoted]
        assert late and all(rows_with(c, "standby", v) == 1 for v in late[-5:])
        connections["default"].close()
        assert server_port("default") == c.port("standby")


def test_multi_host_one_probe_per_server_and_a_stopped_server_is_down_under_every_alias(
    make_cluster: Callable[[], LocalCluster], router_reset: None
) -> None:
    """Both aliases list both servers (4 nodes): each server has one probe connection,
    not one per alias, and its two nodes count the same probes. Stopping the standby
    takes both of its nodes down in the same step, and reads through either alias go
    on, on the primary."""
    c = make_cluster()
    with on_multi_host(c):
        wait_until(lambda: {n["state"] for n in replica_router.status()} == {"up"}, 10)
        # Over several probe intervals, never a second probe connection on a server.
        for _ in range(10):
            assert (probe_backends(c, "primary"), probe_backends(c, "standby")) == (1, 1)
            time.sleep(INTERVAL)
        status = {n["alias"]: n for n in replica_router.status()}
        for server in ("primary", "standby"):
            ours, theirs = (status[node_name(c, a, server)] for a in ("default", "replica"))
            assert ours["probes"] == theirs["probes"] > 0, (ours, theirs)
            assert ours["server_started"] == theirs["server_started"]
        on_standby = [node_name(c, a, "standby") for a in ("default", "replica")]

        def standby_states() -> list[str]:
            by_name = {n["alias"]: n["state"] for n in replica_router.status()}
            return [by_name[name] for name in on_standby]

        c.stop("standby")
        wait_until(lambda: "down" in standby_states(), 10)
        # Never one down and the other up: one probe outcome moved both.
        assert standby_states() == ["down", "down"]
        assert probe_backends(c, "primary") == 1
        connections["replica"].close()
        assert ReplicationModel.objects.using("replica").count() == 0
        assert server_port("replica") == c.port("primary")
        assert read_port() == c.port("primary")
        connections["default"].close()
        assert ReplicationModel.objects.using("default").count() == 0
        assert server_port("default") == c.port("primary")


def test_multi_host_follower_reads_every_node_and_its_fault_counts_for_the_server(
    healthy: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both aliases on both servers (libpq's multi-host form), this process leading:
    a follower reads all four nodes from the segment (per node, as always), and a
    refused connection it reports through ``replica`` on the standby reaches the
    leader, which counts it for both of the standby's nodes (one server), and for
    neither of the primary's."""
    from replica_router import _runtime

    share_dir = tmp_path / "share"
    share_dir.mkdir(mode=0o700)
    share_dir.chmod(0o700)
    dbs = multi_host_databases(healthy)
    monkeypatch.setenv("REPLICA_ROUTER_SHARE_DIR", str(share_dir))
    with using_databases(dbs):
        _runtime.reset()
        wait_until(lambda: {n["state"] for n in replica_router.status()} == {"up"}, 10)
        leader = replica_router.status()
        assert leader[0]["shared"] is True and leader[0]["prober_pid"] == os.getpid()
        names = [n["alias"] for n in leader]
        reported = names.index(node_name(healthy, "replica", "standby"))
        before = {n["alias"]: n["passive_faults"] for n in leader}
        report = run_follower(healthy, share_dir, report=True, dbs=dbs, node=reported)
        assert [n["alias"] for n in report["status"]] == names, report
        assert {n["prober_pid"] for n in report["status"]} == {os.getpid()}, report
        assert {n["state"] for n in report["status"]} == {"up"}, report
        assert report["reported"]["was_in_reads"] is True, report
        after = {n["alias"]: n["passive_faults"] for n in replica_router.status()}
        counted = {name: after[name] - before[name] for name in names}
        assert counted == {
            node_name(healthy, "default", "primary"): 0,
            node_name(healthy, "replica", "primary"): 0,
            node_name(healthy, "default", "standby"): 1,
            node_name(healthy, "replica", "standby"): 1,
        }, counted


def _refuses_connects(c: LocalCluster, node: str) -> bool:
    """Whether a new connection to ``node`` is refused as its shutdown goes on."""
    dsn = c.dsn(node)
    try:
        psycopg.connect(
            host=dsn["HOST"], port=dsn["PORT"], dbname=dsn["NAME"], user=dsn["USER"],
            password=dsn["PASSWORD"], connect_timeout=5,
        ).close()  # fmt: skip
    except psycopg.OperationalError as exc:
        return "shutting down" in str(exc)
    return False


def test_multi_host_write_whose_connect_meets_the_old_primary_shutting_down_runs_on_the_new(
    make_cluster: Callable[[], LocalCluster], router_reset: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The primary begins a smart shutdown (its sessions, the probe's among them, go
    on; new connections get ``the database system is shutting down``) and the standby
    is promoted a moment later. A write outside ``atomic()`` connects to the old
    primary first: nothing ran, so it waits and runs once on the new primary, never
    again on the old server under the other alias's name for it (``replica@...``)."""
    c = make_cluster()
    with on_multi_host(c):
        wait_until(lambda: {n["state"] for n in replica_router.status()} == {"up"}, 10)
        connections["default"].close()
        dsn = c.dsn("primary")
        held = psycopg.connect(
            host=dsn["HOST"], port=dsn["PORT"], dbname=dsn["NAME"], user=dsn["USER"],
            password=dsn["PASSWORD"],
        )  # fmt: skip
        promoter = threading.Timer(1.0, promote, (c, "standby"))
        try:
            pid = c.postmaster_pid("primary")
            assert pid is not None
            os.kill(pid, signal.SIGTERM)  # smart shutdown: waits for the sessions
            wait_until(lambda: _refuses_connects(c, "primary"), 10)
            assert roles()["primary_node"] == node_name(c, "default", "primary")
            promoter.start()
            write("shutdown")
        finally:
            promoter.cancel()
            if promoter.is_alive():
                promoter.join()
            held.close()
        assert rows_with(c, "standby", "shutdown") == 1
        assert server_port("default") == c.port("standby")
        old = {n["alias"]: n for n in replica_router.status()}[node_name(c, "default", "primary")]
        assert old["passive_faults"] >= 1, old
        # The first connect met the shutdown; the node and its other name left writes.
        reported = [r.getMessage() for r in caplog.records if "reported by a query" in r.getMessage()]
        assert any("shutting down" in m for m in reported), reported
