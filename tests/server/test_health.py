"""The health engine against real PostgreSQL servers and real faults.

Every fault here is real: WAL replay paused with ``pg_wal_replay_pause()`` while the
primary writes, a standby promoted with ``pg_promote()``, wrong credentials and a
missing database, a standby stopped and SIGSTOPped under concurrent routing, and a
TCP listener that accepts connections and never answers.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections, router
from django.test import override_settings
from router.models import ReplicationModel

import replica_router
from tests.support import (
    INTERVAL,
    RISE,
    ROOT,
    ROUTER_SETTINGS,
    LocalCluster,
    states,
    wait_all_up,
    wait_until,
)

#: Extra time allowed on top of any protocol bound: the machine is shared and slow.
SLACK = 1.0

#: Measured numbers go to this logger; ``pytest -rP`` shows them for passing tests.
measure = logging.getLogger("tests.measure")
measure.setLevel(logging.INFO)

# Django warns on every DATABASES override; these tests mean to point it elsewhere.
ignore_databases_override = pytest.mark.filterwarnings(
    "ignore:Overriding setting DATABASES:UserWarning"
)


def node_status(alias: str) -> dict[str, Any]:
    """The ``status()`` entry of one node."""
    for n in replica_router.status():
        if n["alias"] == alias:
            return n
    raise AssertionError(f"no node {alias!r} in status()")


def reads(count: int = 200) -> set[str]:
    """The aliases ``db_for_read`` returns over ``count`` calls."""
    return {router.db_for_read(ReplicationModel) for _ in range(count)}


def databases(cluster: LocalCluster, **replica_overrides: Any) -> dict[str, dict[str, Any]]:
    """A ``DATABASES`` dict for ``cluster``, shaped like conftest's."""
    return {
        "default": {**cluster.dsn("primary"), "OPTIONS": {"connect_timeout": 2}},
        "replica": {
            **cluster.dsn("standby"),
            "OPTIONS": {"connect_timeout": 2},
            **replica_overrides,
        },
    }


class Writer:
    """Inserts rows on the primary from its own thread (its own Django connection and
    routing context, so the main thread's reads are not pinned by these writes)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-writer", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                ReplicationModel.objects.using("default").create(
                    name="lag", count=self.rows, average=1.0
                )
                self.rows += 1
                time.sleep(0.005)
        except BaseException as exc:
            self.error = exc
        finally:
            connections["default"].close()

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "writer thread did not stop"


def non_decreasing(values: list[float]) -> bool:
    return all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(("limit", "value"), [("MAX_LAG_BYTES", 1000), ("MAX_LAG_SECONDS", 1.0)])
def test_paused_replay_lags_leaves_reads_and_rises_back_with_hysteresis(
    healthy: LocalCluster, limit: str, value: float
) -> None:
    """With replay paused while the primary writes, the replica's lag in bytes and
    seconds grows probe after probe; over the lag limit it turns ``lagging``, gets no
    reads (counted as lag fallbacks); after replay resumes it is ``up`` again, but only
    after RISE probes under the limit. The herd policy is off here (``LAG_CEILING_SECONDS``
    None), so every read goes to the primary; ``test_lag.py`` tests it."""
    cluster = healthy
    limits = {**ROUTER_SETTINGS, limit: value, "LAG_CEILING_SECONDS": None}
    with override_settings(REPLICA_ROUTER=limits):
        wait_all_up()
        cluster.wait_replayed()
        wait_until(lambda: node_status("replica")["lag_bytes"] == 0, 5)
        cluster.pause_replay()
        samples: list[tuple[int, float, str]] = []
        first_lagging: float | None = None
        with Writer() as writer:
            # Replay is paused before the first write, so the replayed LSN is frozen.
            started = time.monotonic()
            end = started + 1.5
            while time.monotonic() < end:
                r = node_status("replica")
                if r["lag_bytes"] is not None and r["lag_seconds"] is not None:
                    samples.append((r["lag_bytes"], r["lag_seconds"], r["state"]))
                if r["state"] == "lagging" and first_lagging is None:
                    first_lagging = time.monotonic() - started
                time.sleep(INTERVAL)
            wait_until(lambda: node_status("replica")["state"] == "lagging", 5)
            lagging = node_status("replica")
            before = replica_router.decisions()
            seen = reads(200)
            after = replica_router.decisions()
            assert writer.error is None, writer.error
            assert writer.rows > 10, writer.rows

        lag_bytes = [s[0] for s in samples]
        lag_seconds = [s[1] for s in samples]
        assert len(samples) >= 5, samples
        assert non_decreasing(lag_bytes), lag_bytes
        assert non_decreasing(lag_seconds), lag_seconds
        assert lag_bytes[-1] > lag_bytes[0], lag_bytes
        assert lag_seconds[-1] > lag_seconds[0], lag_seconds
        assert lagging["replay_paused"] is True, lagging
        if limit == "MAX_LAG_BYTES":
            assert lagging["lag_bytes"] > value, lagging
        else:
            assert lagging["lag_seconds"] > value, lagging
        assert seen == {"default"}, seen

        resumed_at = time.monotonic()
        cluster.resume_replay()
        wait_until(lambda: node_status("replica")["state"] == "up", 10)
        took = time.monotonic() - resumed_at
        measure.info("lag samples (bytes, seconds, state): %s", samples)
        fallbacks = after["lag_fallback"] - before["lag_fallback"]
        measure.info(
            "%s=%s: first seen lagging %s s after writes began; %d of 200 reads counted "
            "as lag fallbacks; up %.3f s after resume",
            limit,
            value,
            first_lagging,
            fallbacks,
            took,
        )
        # Hysteresis: one good probe under the limit is not enough.
        assert took >= (RISE - 1) * INTERVAL, took
        wait_until(lambda: "replica" in reads(200), 5)
        # Every replica was lagging, so each of those 200 reads was a lag fallback
        # (DESIGN: "Each such fallback is counted").
        assert fallbacks >= 200, (before, after)


def test_idle_primary_does_not_make_a_caught_up_replica_lag(healthy: LocalCluster) -> None:
    """An idle primary for longer than MAX_LAG_SECONDS: the caught-up replica reports
    0.0 s of lag and stays ``up`` (the ``now() - pg_last_xact_replay_timestamp()`` trap
    would report seconds here)."""
    cluster = healthy
    with override_settings(REPLICA_ROUTER={**ROUTER_SETTINGS, "MAX_LAG_SECONDS": 0.5}):
        wait_all_up()
        cluster.wait_replayed()
        # Lag is known once the primary and the replica have both answered a round.
        wait_until(lambda: node_status("replica")["lag_seconds"] is not None, 5)
        observed: list[tuple[str, float | None, int | None]] = []
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            r = node_status("replica")
            observed.append((r["state"], r["lag_seconds"], r["lag_bytes"]))
            time.sleep(INTERVAL)
        measure.info("idle replica (state, lag_seconds, lag_bytes): %s", observed)
        assert all(state == "up" for state, _, _ in observed), observed
        assert all(s is not None and s < 0.5 for _, s, _ in observed), observed
        # Exactly zero, not "small": the timestamp trap would report whole seconds on
        # every sample. (A background WAL record, e.g. a checkpoint's, may show for a
        # probe or two before the replica replays it in milliseconds.)
        zero = [s for _, s, b in observed if s == 0.0 and b == 0]
        assert len(zero) >= 0.8 * len(observed), observed
        assert "replica" in reads(200)


@ignore_databases_override
def test_promoted_replica_is_flagged_and_left_out_of_reads(
    make_cluster: Callable[[], LocalCluster],
    router_reset: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``pg_promote()`` on the standby: within two probe intervals the replica shows
    ``role_mismatch`` with observed role ``primary`` on a higher timeline, gets no more
    reads, and an ERROR names the promotion and which of the two primaries is newest."""
    caplog.set_level(logging.INFO, logger="replica_router")
    c = make_cluster()
    with override_settings(DATABASES=databases(c)):
        wait_all_up()
        assert "replica" in reads(200)
        called = time.monotonic()
        c.promote()
        returned = time.monotonic()

        def flagged() -> bool:
            r = node_status("replica")
            return bool(r["role_mismatch"]) and r["observed_role"] == "primary"

        wait_until(flagged, 2 * INTERVAL + SLACK, interval=0.005)
        flagged_at = time.monotonic()
        primary, replica = replica_router.status()
        assert reads(500) == {"default"}
        assert primary["timeline"] is not None and replica["timeline"] is not None
        assert replica["timeline"] > primary["timeline"], (primary, replica)
        assert primary["role_mismatch"] is False, primary

        def messages() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.name == "replica_router" and r.levelno >= logging.ERROR
            ]

        wait_until(lambda: any("promoted" in r.getMessage() for r in messages()), 5)
        wait_until(
            lambda: any("claim to be primary" in r.getMessage() for r in messages()),
            5,
        )
        claim = next(r.getMessage() for r in messages() if "claim to be primary" in r.getMessage())
        assert 'newest timeline is on "replica"' in claim, claim
        measure.info(
            "promotion flagged %.3f s after pg_promote() was called, %.3f s after it returned",
            flagged_at - called,
            flagged_at - returned,
        )
        assert flagged_at - returned <= 2 * INTERVAL + SLACK


@ignore_databases_override
def test_wrong_password_is_misconfigured_and_never_shown(
    cluster: LocalCluster, router_reset: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password for the replica is a configuration error (not ``down``), named
    as an authentication failure; the password appears in no status, counter or log
    record, and the replica gets no reads."""
    secret = "wrong-pass-xyz"
    caplog.set_level(logging.DEBUG, logger="replica_router")
    with override_settings(DATABASES=databases(cluster, PASSWORD=secret)):
        wait_until(lambda: node_status("replica")["state"] == "misconfigured", 5)
        wait_until(lambda: node_status("default")["state"] == "up", 5)
        r = node_status("replica")
        assert r["error_class"] == "authentication_failed", r
        assert "password authentication failed" in (r["last_error"] or ""), r
        assert reads(200) == {"default"}
        wait_until(lambda: any("misconfigured" in rec.getMessage() for rec in caplog.records), 5)
        record = next(rec for rec in caplog.records if "misconfigured" in rec.getMessage())
        assert record.levelno == logging.ERROR
        assert "password authentication failed" in record.getMessage()
        shown = [
            repr(replica_router.status()),
            repr(replica_router.decisions()),
            *(rec.getMessage() for rec in caplog.records),
            caplog.text,
        ]
        for text in shown:
            assert secret not in text


@ignore_databases_override
def test_missing_database_is_misconfigured(cluster: LocalCluster, router_reset: None) -> None:
    """A replica whose database does not exist is ``misconfigured`` with error class
    ``database_missing``, and gets no reads."""
    with override_settings(DATABASES=databases(cluster, NAME="no_such_db")):
        wait_until(lambda: node_status("replica")["state"] == "misconfigured", 5)
        r = node_status("replica")
        assert r["error_class"] == "database_missing", r
        assert "no_such_db" in (r["last_error"] or ""), r
        assert reads(200) == {"default"}


def test_threads_route_safely_while_the_standby_flaps(healthy: LocalCluster) -> None:
    """16 threads route reads (some inside units of work that write) for seconds while
    the standby is stopped, started, frozen and thawed: no exception, no deadlock, only
    cluster aliases, and no read that started after ``status()`` said the standby was
    down goes to it."""
    cluster = healthy
    stop = threading.Event()
    logs: list[list[tuple[float, str]]] = [[] for _ in range(16)]
    errors: list[BaseException] = []
    bad_pins: list[tuple[str, str]] = []

    def worker(idx: int) -> None:
        log = logs[idx]
        try:
            while not stop.is_set():
                if idx % 4 == 0:
                    with replica_router.unit_of_work():
                        w = router.db_for_write(ReplicationModel)
                        r = router.db_for_read(ReplicationModel)
                        if (w, r) != ("default", "default"):
                            bad_pins.append((w, r))
                started = time.monotonic()
                log.append((started, router.db_for_read(ReplicationModel)))
                time.sleep(0.0005)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(16)]
    began = time.monotonic()
    for t in threads:
        t.start()
    down_windows: list[tuple[str, float, float]] = []
    try:
        time.sleep(0.3)
        flaps: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            ("stop", lambda: cluster.stop("standby"), lambda: cluster.start("standby", False)),
            ("sigstop", lambda: cluster.sigstop("standby"), lambda: cluster.sigcont("standby")),
        ]
        for what, fault, undo in flaps:
            faulted = time.monotonic()
            fault()
            wait_until(lambda: states()["replica"] == "down", 10)
            known = time.monotonic()
            time.sleep(0.3)
            down_windows.append((what, known, time.monotonic()))
            undone = time.monotonic()
            undo()
            wait_until(lambda: states()["replica"] == "up", 15)
            measure.info(
                "%s: seen down %.3f s after the fault; up %.3f s after undo",
                what,
                known - faulted,
                time.monotonic() - undone,
            )
            time.sleep(0.2)
        remaining = 4.0 - (time.monotonic() - began)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not [t for t in threads if t.is_alive()], "routing threads deadlocked"
    assert not errors, errors
    assert not bad_pins, bad_pins[:5]
    everything = [entry for log in logs for entry in log]
    assert all(log for log in logs), [len(log) for log in logs]
    assert {alias for _, alias in everything} == {"default", "replica"}
    measure.info("%d reads by 16 threads in %.1f s", len(everything), time.monotonic() - began)
    # 10 ms of margin for the instant between status() and the snapshot swap.
    for what, known, until in down_windows:
        during = [alias for t, alias in everything if known + 0.01 < t < until]
        assert during, f"no read happened while the standby was down ({what})"
        assert set(during) == {"default"}, (what, during.count("replica"), len(during))


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never says a word."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.05)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="exit-test",
        DATABASES=json.loads(sys.argv[1]),
        DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
        REPLICA_ROUTER={"PROBE_INTERVAL": 0.2, "PROBE_TIMEOUT": 5},
        INSTALLED_APPS=["django.contrib.contenttypes", "replica_router"],
        LOGGING_CONFIG=None,
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.contenttypes.models import ContentType
    from django.db import router
    import replica_router

    aliases = [router.db_for_read(ContentType) for _ in range(5)]
    time.sleep(0.5)  # the replica's first probe is now stuck on the silent node
    aliases += [router.db_for_read(ContentType) for _ in range(5)]
    replica = replica_router.status()[1]
    print(json.dumps({
        "aliases": aliases,
        "replica_state": replica["state"],
        "replica_probes": replica["probes"],
        "exiting_at": time.time(),
    }), flush=True)
    """
)


def test_interpreter_exit_with_a_probe_stuck_on_a_silent_node(
    cluster: LocalCluster, silent_listener: int
) -> None:
    """A process whose prober waits on a node that never answers (PROBE_TIMEOUT 5 s)
    still exits at once, cleanly: code 0, no panic, no fatal error, no traceback."""
    dbs = databases(cluster)
    dbs["replica"]["PORT"] = str(silent_listener)
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, json.dumps(dbs)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        check=False,
    )
    ended = time.time()
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    for marker in ("panicked", "Fatal", "Traceback", "Exception"):
        assert marker not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # The probe of the silent node was in flight: no answer, no failure yet.
    assert report["replica_state"] == "unknown", report
    assert report["replica_probes"] == 0, report
    assert set(report["aliases"]) == {"default"}, report
    exit_took = ended - report["exiting_at"]
    measure.info("exit with a probe in flight took %.3f s: %s", exit_took, report)
    assert exit_took < 3.0, exit_took
