"""Routing rules against the real primary + hot standby (DESIGN.md, "Routing rules").

Every test runs on the session cluster through the ``healthy`` fixture: both nodes
up, a fresh router, and the cluster put back together afterwards. Reads that must be
spread by weight are made inside ``replica_router.unit_of_work()``, so that a pin left
by an earlier write in the test thread cannot skew them.
"""

from __future__ import annotations

import json
from collections import Counter
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, router, transaction
from django.test import override_settings
from router.models import ReplicationModel

import replica_router
from replica_router import _core
from tests.support import (
    FALL,
    INTERVAL,
    ROUTER_SETTINGS,
    TIMEOUT,
    LocalCluster,
    states,
    wait_all_up,
    wait_until,
)

READS = 20_000

#: Every key ``replica_router.status()`` documents for a node.
STATUS_KEYS = {
    "alias",
    "configured_role",
    "observed_role",
    "role_mismatch",
    "state",
    "stale",
    "weight",
    "host",
    "port",
    "timeline",
    "lag_bytes",
    "lag_seconds",
    "replay_paused",
    "wal_receiver_status",
    "current_lsn",
    "receive_lsn",
    "replay_lsn",
    "latency_ms",
    "consecutive_failures",
    "consecutive_successes",
    "probes",
    "failed_probes",
    "last_error",
    "error_class",
    "last_state_change",
    "last_probe",
    "last_good_probe_age",
    "reads_routed",
    "reads_by_reason",
}


def read_counts(n: int) -> Counter[str]:
    """Aliases ``django.db.router.db_for_read`` returns over ``n`` calls, in a fresh unit."""
    with replica_router.unit_of_work():
        return Counter(router.db_for_read(ReplicationModel) for _ in range(n))


def node(alias: str) -> dict[str, Any]:
    return next(n for n in replica_router.status() if n["alias"] == alias)


def weights(replica: float, primary: float) -> dict[str, Any]:
    return {
        **ROUTER_SETTINGS,
        "REPLICAS": {"replica": {"WEIGHT": replica}},
        "PRIMARY_READ_WEIGHT": primary,
    }


def test_writes_go_to_the_primary(healthy: LocalCluster) -> None:
    """``db_for_write`` names the primary and a created row lives on it."""
    with replica_router.unit_of_work():
        assert router.db_for_write(ReplicationModel) == "default"
        obj = ReplicationModel.objects.create(name="w", count=1, average=1.0)
        assert obj._state.db == "default"
        assert ReplicationModel.objects.using("default").filter(pk=obj.pk).exists()
        ReplicationModel.objects.using("default").filter(pk=obj.pk).delete()
    assert replica_router.decisions()["writes"] >= 1


def test_reads_follow_weights(healthy: LocalCluster) -> None:
    """Replica WEIGHT 3 against PRIMARY_READ_WEIGHT 1: the replica serves 75% +- 2 points."""
    with override_settings(REPLICA_ROUTER=weights(replica=3, primary=1)):
        wait_all_up()
        counts = read_counts(READS)
        assert set(counts) == {"default", "replica"}
        share = counts["replica"] / READS
        assert abs(share - 0.75) <= 0.02, counts
        assert node("replica")["weight"] == 3.0
        assert node("default")["weight"] == 1.0


def test_primary_read_weight_zero_sends_every_read_to_the_replica(healthy: LocalCluster) -> None:
    """PRIMARY_READ_WEIGHT 0: the primary serves reads only as a fallback."""
    with override_settings(REPLICA_ROUTER=weights(replica=1, primary=0)):
        wait_all_up()
        assert read_counts(READS) == Counter({"replica": READS})


def test_replica_weight_zero_sends_every_read_to_the_primary(healthy: LocalCluster) -> None:
    """A replica with WEIGHT 0 is probed but never chosen while the primary is up."""
    with override_settings(REPLICA_ROUTER=weights(replica=0, primary=1)):
        wait_all_up()
        assert read_counts(READS) == Counter({"default": READS})


def test_writing_through_the_replica_fails_read_only(healthy: LocalCluster) -> None:
    """The standby really is a hot standby: PostgreSQL refuses a write on it."""
    with pytest.raises(DatabaseError, match="read-only transaction"):
        ReplicationModel.objects.using("replica").create(name="ro", count=1, average=1.0)


def test_reads_inside_atomic_see_the_rows_written_there(healthy: LocalCluster) -> None:
    """In ``transaction.atomic()`` reads go to the primary and find the row just written.

    The rows are written with ``using("default")``, which bypasses ``db_for_write`` and
    so sets no pin: the primary is chosen by the transaction rule alone (counted as
    ``transaction``). After the block, reads are spread again.
    """
    iterations = 2000
    before = replica_router.decisions()
    missing = 0
    wrong: Counter[str] = Counter()
    try:
        with replica_router.unit_of_work():
            for i in range(iterations):
                with transaction.atomic():
                    obj = ReplicationModel.objects.using("default").create(
                        name="atomic", count=i, average=0.5
                    )
                    alias = router.db_for_read(ReplicationModel)
                    if alias != "default":
                        wrong[alias] += 1
                    if not ReplicationModel.objects.filter(pk=obj.pk).exists():
                        missing += 1
            assert missing == 0
            assert not wrong
            after = replica_router.decisions()
            assert after["transaction"] - before["transaction"] >= 2 * iterations
            assert after["pinned"] == before["pinned"]
            # The block is over and nothing pinned this unit: reads are spread again.
            spread = Counter(router.db_for_read(ReplicationModel) for _ in range(400))
            assert set(spread) == {"default", "replica"}, spread
    finally:
        ReplicationModel.objects.using("default").filter(name="atomic").delete()


def test_reads_inside_atomic_without_writes_stay_on_the_primary(healthy: LocalCluster) -> None:
    """An open transaction on the primary keeps every read there, even before a write."""
    with replica_router.unit_of_work():
        with transaction.atomic():
            inside = Counter(router.db_for_read(ReplicationModel) for _ in range(1000))
        outside = Counter(router.db_for_read(ReplicationModel) for _ in range(1000))
    assert inside == Counter({"default": 1000})
    assert set(outside) == {"default", "replica"}, outside


def test_status_when_healthy(healthy: LocalCluster) -> None:
    """``status()``: primary first, every documented key, sane values, no password."""
    # Let a few probe rounds pass so that lag and streaks have settled.
    wait_until(lambda: all(n["probes"] >= FALL + 1 for n in replica_router.status()), 10)
    read_counts(100)
    nodes = replica_router.status()
    assert [n["alias"] for n in nodes] == ["default", "replica"]
    for n in nodes:
        assert STATUS_KEYS <= set(n), STATUS_KEYS - set(n)
        assert n["state"] == "up"
        assert n["stale"] is False
        assert n["role_mismatch"] is False
        assert n["host"] == "127.0.0.1"
        assert n["weight"] == 1.0
        assert n["timeline"] is not None and n["timeline"] >= 1
        assert n["latency_ms"] is not None and 0 < n["latency_ms"] < TIMEOUT * 1000
        assert n["consecutive_failures"] == 0
        assert n["consecutive_successes"] >= 1
        assert n["probes"] >= FALL + 1
        assert n["failed_probes"] == 0
        assert n["last_error"] is None
        assert n["error_class"] is None
        assert n["last_probe"] is not None
        assert n["last_good_probe_age"] is not None
        assert 0 <= n["last_good_probe_age"] < INTERVAL + TIMEOUT + 1.0
        assert set(n["reads_by_reason"]) == set(_core.REASONS)
        assert n["reads_routed"] == sum(n["reads_by_reason"].values())
    primary, replica = nodes
    assert primary["configured_role"] == "primary"
    assert primary["observed_role"] == "primary"
    assert primary["port"] == healthy.port("primary")
    assert primary["current_lsn"] is not None
    assert replica["configured_role"] == "replica"
    assert replica["observed_role"] == "replica"
    assert replica["port"] == healthy.port("standby")
    assert replica["replay_lsn"] is not None
    assert replica["receive_lsn"] is not None
    assert replica["replay_paused"] is False
    assert replica["wal_receiver_status"] == "streaming"
    # Idle loopback cluster: caught up, or a probe round behind at most.
    assert replica["lag_bytes"] is not None and replica["lag_bytes"] < 1_000_000
    assert replica["lag_seconds"] is not None and replica["lag_seconds"] < 2.0
    assert primary["reads_routed"] + replica["reads_routed"] >= 100
    # The session cluster's password is "postgres" (also its user and database
    # name), none of which status() has any business showing.
    assert "postgres" not in repr(nodes)


def run_status(*args: str) -> tuple[int, str]:
    """Runs ``replica_status``; returns (exit code, stdout)."""
    out = StringIO()
    try:
        call_command("replica_status", *args, stdout=out)
    except SystemExit as exc:
        code = exc.code
        assert isinstance(code, int)
        return code, out.getvalue()
    return 0, out.getvalue()


def test_replica_status_command_healthy(healthy: LocalCluster) -> None:
    """Table and ``--json`` list both aliases and exit 0 on a healthy cluster."""
    code, text = run_status()
    assert code == 0, text
    lines = text.splitlines()
    assert any(line.split()[:1] == ["default"] for line in lines), text
    assert any(line.split()[:1] == ["replica"] for line in lines), text
    assert "healthy" in text

    code, text = run_status("--json")
    assert code == 0, text
    data = json.loads(text)
    assert [n["alias"] for n in data["nodes"]] == ["default", "replica"]
    assert {n["state"] for n in data["nodes"]} == {"up"}
    assert data["exit_code"] == 0
    assert "writes" in data["decisions"]


def test_replica_status_command_exit_codes(healthy: LocalCluster) -> None:
    """Exit 1 when the standby is stopped, exit 2 when the primary is stopped."""
    healthy.stop("standby")
    wait_until(lambda: states()["replica"] == "down", 10)
    code, text = run_status()
    assert code == 1, text
    code, text = run_status("--json")
    assert code == 1, text
    assert json.loads(text)["exit_code"] == 1

    healthy.start("standby", wait_streaming=False)
    healthy.stop("primary")
    wait_until(lambda: states()["default"] == "down", 10)
    code, text = run_status()
    assert code == 2, text
    code, text = run_status("--json")
    assert code == 2, text
    assert json.loads(text)["exit_code"] == 2
