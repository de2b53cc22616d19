"""Caught up by default (issue 15), against a real primary and standby.

With the session's settings (no lag key set: the defaults), a standby whose replay is
paused (``pg_wal_replay_pause()``) or whose WAL receiver is stopped (``primary_conninfo``
emptied and reloaded) leaves weighted reads while the primary writes; an idle primary
keeps a paused or disconnected standby in reads (it lacks nothing); and while every
standby lags, the herd policy keeps plain reads spread while reads that must see the
caller's writes (pins, the cookie, ``use_primary``, ``atomic()``) go to the primary.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import router, transaction
from django.test import Client, override_settings
from router.models import ReplicationModel

import replica_router
from tests.server.test_health import Writer, node_status
from tests.server.web import user, web_settings
from tests.support import INTERVAL, ROUTER_SETTINGS, WINDOW, LocalCluster, wait_until

#: The defaults under test (asserted below, so a change of default is noticed here).
MAX_LAG_SECONDS = 5.0
LAG_CEILING_SECONDS = 10.0
#: Extra time allowed on top of any protocol bound: the machine is shared and slow.
SLACK = 1.0

measure = logging.getLogger("tests.measure")
measure.setLevel(logging.INFO)


def reads(count: int = 400) -> Counter[str]:
    """Where ``count`` routing decisions for a plain read go right now."""
    return Counter(router.db_for_read(ReplicationModel) for _ in range(count))


def replica_state() -> str:
    return str(node_status("replica")["state"])


def replica_status_command() -> tuple[int, dict[str, Any]]:
    """``manage.py replica_status --json``: (exit code, parsed output)."""
    out = StringIO()
    code = 0
    try:
        call_command("replica_status", "--json", "--wait", "0", stdout=out)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(out.getvalue())


@pytest.fixture(autouse=True)
def _defaults_are_these(healthy: LocalCluster) -> None:
    """The session's settings set no lag key: what runs here is the defaults."""
    assert not {"MAX_LAG_SECONDS", "MAX_LAG_BYTES", "LAG_CEILING_SECONDS"} & set(ROUTER_SETTINGS)
    from replica_router import _runtime

    s = _runtime.get_settings()
    assert (s.max_lag_seconds, s.lag_ceiling_seconds) == (MAX_LAG_SECONDS, LAG_CEILING_SECONDS)
    assert s.max_lag_bytes is not None


@contextmanager
def caught_up(cluster: LocalCluster) -> Iterator[None]:
    """The replica up with zero lag before the fault starts."""
    wait_until(lambda: replica_state() == "up", 10)
    cluster.wait_replayed()
    wait_until(lambda: node_status("replica")["lag_bytes"] == 0, 10)
    yield


def time_until_lagging(started: float) -> float:
    """Polls the replica's state every 10 ms; seconds from ``started`` to ``lagging``."""
    bound = MAX_LAG_SECONDS + WINDOW + SLACK
    wait_until(lambda: replica_state() == "lagging", bound + 5, interval=0.01)
    return time.monotonic() - started


def test_paused_replay_leaves_reads_and_every_report_says_why(healthy: LocalCluster) -> None:
    """Replay paused while the primary writes: the standby is ``lagging`` within the
    default limit plus the detection window (in practice within a few probe intervals,
    without waiting for the 5 s to fill); ``status()`` says why; ``replica_status``
    exits 1 and names the cause; the readiness view says ``degraded`` and the status
    page shows the cause. After resume it is back in reads."""
    cluster = healthy
    # Before the pause: the standby still serves plain reads, the session's user too.
    staff_user = user("rr-staff", staff=True)
    with caught_up(cluster):
        cluster.pause_replay()
        with Writer() as writer:
            started = time.monotonic()
            took = time_until_lagging(started)
            n = node_status("replica")
            code, report = replica_status_command()
            with web_settings():
                staff = Client()
                staff.force_login(staff_user)
                ready = staff.get("/replicas/ready/").json()
                page = staff.get("/replicas/").content.decode()
            assert writer.error is None, writer.error
    measure.info("paused replay: lagging %.3f s after writes began", took)
    assert took <= MAX_LAG_SECONDS + WINDOW + SLACK, took
    assert n["replay_paused"] is True, n
    assert str(n["lag_reason"]).startswith("replay paused"), n
    assert code == 1, report
    replica = next(r for r in report["nodes"] if r["alias"] == "replica")
    assert replica["state"] == "lagging" and "replay paused" in replica["lag_reason"], replica
    assert ready["status"] == "degraded", ready
    assert any("replay paused" in str(r.get("lag_reason")) for r in ready["nodes"]), ready
    assert "replay paused" in page
    cluster.resume_replay()
    wait_until(lambda: replica_state() == "up", 10)
    assert node_status("replica")["lag_reason"] is None


def test_stopped_wal_receiver_leaves_reads(healthy: LocalCluster) -> None:
    """``primary_conninfo`` emptied and reloaded while the primary writes: the WAL
    receiver goes away, and the standby is ``lagging`` within the default limit plus
    the detection window, named as such; with the receiver back it rejoins reads."""
    cluster = healthy
    with caught_up(cluster):
        cluster.stop_streaming()
        with Writer() as writer:
            started = time.monotonic()
            took = time_until_lagging(started)
            n = node_status("replica")
            assert writer.error is None, writer.error
    measure.info("stopped WAL receiver: lagging %.3f s after writes began", took)
    assert took <= MAX_LAG_SECONDS + WINDOW + SLACK, took
    assert n["wal_receiver_status"] != "streaming", n
    assert "WAL receiver" in str(n["lag_reason"]), n
    cluster.resume_streaming()
    cluster.wait_streaming()
    wait_until(lambda: replica_state() == "up", 15)


UNDO = {"pause_replay": "resume_replay", "stop_streaming": "resume_streaming"}


@pytest.mark.parametrize("fault", ["pause_replay", "stop_streaming"])
def test_idle_primary_keeps_a_caught_up_standby_in_reads(
    healthy: LocalCluster, fault: str
) -> None:
    """With the primary idle, a standby that has everything lacks nothing, whether its
    replay is paused or its receiver stopped: it stays ``up``, at 0 bytes behind, and
    in reads, for many detection windows.

    "Idle" is checked, not assumed: PostgreSQL itself writes a small WAL record now
    and then after activity (a running-transactions snapshot every 15 s), which rightly
    makes a stopped standby lag. An observation during which the primary's WAL position
    moved proves nothing either way, so it is made again (up to 5 times)."""
    cluster = healthy
    for _attempt in range(5):
        with caught_up(cluster):
            before = cluster.sql("primary", "SELECT pg_current_wal_lsn()")
            getattr(cluster, fault)()
            observed: list[tuple[str, int | None]] = []
            end = time.monotonic() + max(2.0, 4 * WINDOW)
            while time.monotonic() < end:
                n = node_status("replica")
                observed.append((n["state"], n["lag_bytes"]))
                time.sleep(INTERVAL)
            spread = reads()
            after = cluster.sql("primary", "SELECT pg_current_wal_lsn()")
            getattr(cluster, UNDO[fault])()
        measure.info("idle primary, %s: %s -> %s, %s", fault, before, after, observed)
        if before == after:
            break
        cluster.wait_streaming()
    else:
        pytest.fail(f"the primary never stayed idle for {max(2.0, 4 * WINDOW)} s")
    assert all(obs == ("up", 0) for obs in observed), observed
    assert spread["replica"] > 0, spread


def test_lag_spike_keeps_plain_reads_spread_and_own_writes_fresh(
    healthy: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Every standby lagging (replay paused under writes), defaults: plain reads keep
    going to the least-lagged standby for its weighted share (reason ``lag_tolerated``)
    instead of all moving to the primary, and the change is logged once. Reads that
    must see the caller's writes still do: a pin after a write, the cookie across
    requests, ``use_primary`` and ``atomic()`` all read the new row."""
    caplog.set_level(logging.INFO, logger="replica_router")
    cluster = healthy
    client = Client()
    with caught_up(cluster):
        cluster.pause_replay()
        with Writer() as writer:
            time_until_lagging(time.monotonic())
            before = replica_router.decisions()
            spread = reads()
            after = replica_router.decisions()
            stale = Counter[str]()
            for _ in range(50):
                # Pinned after a write in the same request.
                body = client.post("/write-then-read/").json()
                stale["pin"] += not body["found"]
                # The cookie: the next request of the same client.
                pk = client.post("/write/").json()["pk"]
                body = client.get(f"/read/{pk}/").json()
                stale["cookie"] += not body["found"]
                with replica_router.unit_of_work():
                    row = ReplicationModel.objects.create(name="herd", count=1, average=1.0)
                    with replica_router.use_primary():
                        stale["use_primary"] += not ReplicationModel.objects.filter(
                            pk=row.pk
                        ).exists()
                with replica_router.unit_of_work(), transaction.atomic():
                    row = ReplicationModel.objects.create(name="herd", count=1, average=1.0)
                    stale["atomic"] += not ReplicationModel.objects.filter(pk=row.pk).exists()
            assert replica_state() == "lagging"
            assert writer.error is None, writer.error
    tolerated = after["lag_tolerated"] - before["lag_tolerated"]
    measure.info("lag spike, defaults: %s; lag_tolerated %d; stale %s", spread, tolerated, stale)
    # 1:1 weights: about half the plain reads stay on the standby.
    assert 0.3 < spread["replica"] / sum(spread.values()) < 0.7, spread
    assert tolerated == spread["replica"], (before, after)
    assert sum(stale.values()) == 0, stale
    herd = [r.getMessage() for r in caplog.records if "every replica is over" in r.getMessage()]
    assert len(herd) == 1 and "least-lagged" in herd[0], herd
    cluster.resume_replay()
    wait_until(lambda: replica_state() == "up", 10)
    wait_until(lambda: any("replicas take reads again" in r.getMessage() for r in caplog.records), 5)


def test_over_the_ceiling_plain_reads_go_to_the_primary(
    healthy: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``LAG_CEILING_SECONDS`` just above the default limit, a standby paused for
    longer stops serving: from then on every plain read goes to the primary (counted
    as ``lag_fallback``), logged once; after resume it is back in reads."""
    caplog.set_level(logging.INFO, logger="replica_router")
    ceiling = MAX_LAG_SECONDS + 1.0
    cluster = healthy
    with override_settings(REPLICA_ROUTER={**ROUTER_SETTINGS, "LAG_CEILING_SECONDS": ceiling}):
        with caught_up(cluster):
            cluster.pause_replay()
            with Writer() as writer:
                started = time.monotonic()
                time_until_lagging(started)
                assert reads()["replica"] > 0
                # Past the ceiling by the prober's own measure (the weight falls toward it
                # gradually, so "no read to the replica" alone can happen just before it).
                wait_until(
                    lambda: (node_status("replica")["lag_seconds"] or 0) > ceiling,
                    ceiling + WINDOW + SLACK + 5,
                )
                moved = time.monotonic() - started
                lag = node_status("replica")["lag_seconds"]
                before = replica_router.decisions()
                spread = reads()
                after = replica_router.decisions()
                assert writer.error is None, writer.error
            herd = [r.getMessage() for r in caplog.records if "every replica is over" in r.getMessage()]
            cluster.resume_replay()
            wait_until(lambda: replica_state() == "up", 10)
            wait_until(lambda: reads(50)["replica"] > 0, 5)
    measure.info("ceiling %.1f s: lag over it %.3f s after writes began", ceiling, moved)
    assert lag is not None and lag > ceiling, lag
    assert spread == Counter({"default": 400}), spread
    assert after["lag_fallback"] - before["lag_fallback"] == 400
    assert len(herd) == 2 and "LAG_CEILING_SECONDS" in herd[1], herd
