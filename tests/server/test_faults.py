"""Real faults against the session cluster (DESIGN.md, "Health" and "Performance").

Each fault is real: a stopped server (connections refused), a SIGSTOPped server (TCP
accepted by the kernel, nothing answers), a listener that accepts and never speaks,
a stopped primary. Detection times are measured from the moment the fault is
injected and recorded with ``record_property`` (they land in the JUnit XML).

While a probe is failing or stuck, the read path must not notice: ``db_for_read``
never waits on I/O and the process's threads and file descriptors stay flat (how many
microseconds a read takes is measured by ``make bench``, not asserted here).
"""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections, router
from django.test import override_settings
from router.models import ReplicationModel

import replica_router
from replica_router import _runtime
from tests.support import (
    INTERVAL,
    RISE,
    TIMEOUT,
    WINDOW,
    LocalCluster,
    open_fds,
    thread_count,
    wait_until,
)

#: Scheduling slack on a shared 2-core machine, on top of the detection window.
SLACK = 1.0
HOT_PATH_CALLS = 20_000
FAULT_SECONDS = 3.0
#: A read that takes this long must be explained by the kernel preempting the thread.
MAX_CALL_NS = 20_000_000

Record = Callable[[str, object], None]

# record_property warns under --junitxml with the default junit_family (xunit2), and
# the project turns warnings into errors: measurements must never fail a test.
pytestmark = pytest.mark.filterwarnings("ignore:record_property is incompatible with junit_family")


def node(alias: str) -> dict[str, Any]:
    return next(n for n in replica_router.status() if n["alias"] == alias)


def reads(n: int = 200) -> list[str]:
    """``n`` routing decisions for reads, in a fresh unit of work (no pin)."""
    with replica_router.unit_of_work():
        return [router.db_for_read(ReplicationModel) for _ in range(n)]


def seconds_until(predicate: Callable[[], bool], start: float, timeout: float = 15.0) -> float:
    """Seconds from ``start`` (a ``time.monotonic()``) until ``predicate()`` holds."""
    deadline = start + timeout
    while True:
        now = time.monotonic()
        if predicate():
            return now - start
        assert now < deadline, f"condition not met within {timeout:.1f}s"
        time.sleep(0.005)


def replica_gets_no_reads() -> bool:
    return "replica" not in reads(200)


def check_reads_stay_fast_and_resources_flat(
    record: Record, fds: Callable[[], int] = open_fds
) -> None:
    """For ``FAULT_SECONDS`` of an ongoing fault: ``db_for_read`` never waits on I/O,
    and neither threads nor file descriptors pile up.

    Calls are timed one by one. A call of 20 ms or more (far below PROBE_TIMEOUT, the
    least a wait on a stuck probe would cost) must be explained by the kernel
    preempting the test thread (4 ms scheduler ticks, worse under load on a shared
    machine). Such a call is recognised by the thread's own context-switch counters
    (``getrusage(RUSAGE_THREAD)``): it was preempted (an involuntary switch) and never
    blocked (no voluntary switch). A call that waited on a socket, a lock or a
    condition would have blocked, so any slow call that blocked fails the test.
    How fast a call is depends on the machine: the median and the tail are recorded
    here and measured by ``make bench`` (``benchmarks/run.py``, "a blackholed
    replica" table), never asserted.

    ``fds`` counts the descriptors that matter (the silent server's accepted sockets
    belong to the test, not to the router).
    """
    threads0, fds0 = thread_count(), fds()
    max_threads, max_fds = threads0, fds0
    timings: list[int] = []
    slow: list[tuple[float, int, int]] = []  # (ms, voluntary, involuntary switches)
    perf = time.perf_counter_ns
    usage = resource.getrusage
    who = resource.RUSAGE_THREAD
    end = time.monotonic() + FAULT_SECONDS
    with replica_router.unit_of_work():
        while len(timings) < HOT_PATH_CALLS or time.monotonic() < end:
            if len(timings) < HOT_PATH_CALLS:
                for _ in range(1000):
                    u0 = usage(who)
                    t0 = perf()
                    router.db_for_read(ReplicationModel)
                    took = perf() - t0
                    u1 = usage(who)
                    timings.append(took)
                    if took >= MAX_CALL_NS:
                        slow.append(
                            (took / 1e6, u1.ru_nvcsw - u0.ru_nvcsw, u1.ru_nivcsw - u0.ru_nivcsw)
                        )
            else:
                time.sleep(0.02)
            max_threads = max(max_threads, thread_count())
            max_fds = max(max_fds, fds())
    median_us = statistics.median(timings) / 1000
    max_ms = max(timings) / 1e6
    record("db_for_read_median_us", round(median_us, 2))
    record("db_for_read_max_ms", round(max_ms, 3))
    record("db_for_read_slow_calls", repr(slow))
    record("threads_before_max", f"{threads0}/{max_threads}")
    record("fds_before_max", f"{fds0}/{max_fds}")
    blocked = [call for call in slow if call[1] > 0 or call[2] == 0]
    assert blocked == [], f"db_for_read calls of 20 ms or more that were not preemptions: {slow}"
    assert max_threads <= threads0, (threads0, max_threads)
    assert max_fds <= fds0 + 2, (fds0, max_fds)


def test_standby_stopped(healthy: LocalCluster, record_property: Record) -> None:
    """A stopped standby (connections refused) leaves reads within the detection
    window, shows as down/connection_refused, and rejoins after RISE good probes."""
    assert "replica" in reads(200)
    start = time.monotonic()
    healthy.stop("standby")
    stop_took = time.monotonic() - start
    detected = seconds_until(replica_gets_no_reads, start)
    record_property("stop_call_s", round(stop_took, 3))
    record_property("detection_s", round(detected, 3))
    assert detected <= WINDOW + SLACK, detected

    wait_until(lambda: node("replica")["error_class"] == "connection_refused", WINDOW + SLACK)
    n = node("replica")
    assert n["state"] == "down"
    assert n["consecutive_failures"] >= 1
    assert "postgres" not in repr(n)

    check_reads_stay_fast_and_resources_flat(record_property)
    assert replica_gets_no_reads()

    start = time.monotonic()
    healthy.start("standby", wait_streaming=False)
    back = seconds_until(lambda: "replica" in reads(200), start)
    record_property("rejoin_s", round(back, 3))
    assert back >= (RISE - 1) * INTERVAL, back
    n = node("replica")
    assert n["state"] == "up"
    assert n["consecutive_successes"] >= RISE


def test_a_passive_fault_counts_the_node_down_once(healthy: LocalCluster) -> None:
    """Proves: one failure reported by the backend (one core call classifies and
    reports it) takes the node out of reads at once and counts it down once: the
    alias's down epoch grows by one (its older connections are closed once), not a
    second time for the state change the core logs for it; the node rejoins after
    RISE good probes."""
    from replica_router import faults

    wait_until(lambda: "replica" in reads(200), WINDOW + SLACK)
    before = faults.down_epoch.get("replica", 0)
    lost = OperationalError("server closed the connection unexpectedly")
    assert faults.report("replica", lost) == "connection_failure"
    assert replica_gets_no_reads()
    wait_until(lambda: faults.down_epoch.get("replica", 0) > before, WINDOW + SLACK)
    # Back after RISE good probes: by then every event of the fault was handled.
    wait_until(lambda: "replica" in reads(200), (RISE + 2) * INTERVAL + SLACK)
    assert faults.down_epoch.get("replica", 0) == before + 1
    assert node("replica")["passive_faults"] >= 1


def test_standby_sigstopped(healthy: LocalCluster, record_property: Record) -> None:
    """A frozen standby (SIGSTOP: TCP open, no answers) leaves reads within the
    detection window, probes time out, and reads never wait on it."""
    assert "replica" in reads(200)
    try:
        start = time.monotonic()
        healthy.sigstop("standby")
        detected = seconds_until(replica_gets_no_reads, start)
        record_property("detection_s", round(detected, 3))
        assert detected <= WINDOW + SLACK, detected

        wait_until(lambda: node("replica")["error_class"] == "timeout", WINDOW + SLACK)
        n = node("replica")
        assert n["state"] == "down"
        assert n["latency_ms"] is not None
        assert n["latency_ms"] < TIMEOUT * 1000 + 150, n["latency_ms"]

        check_reads_stay_fast_and_resources_flat(record_property)
        assert replica_gets_no_reads()
        assert node("replica")["state"] == "down"
    finally:
        healthy.sigcont("standby")
    wait_until(lambda: "replica" in reads(200), 10)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never reads or writes a byte.

    Accepted sockets are held open until :meth:`stop`. They count in this process's
    descriptors, so :meth:`other_fds` reports the process's count without them. The
    thread sleeps in ``accept()`` (GIL released), so it does not compete with the
    read path it is there to observe.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silent-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # timeout, or closed by stop()
                continue
            with self._lock:
                self._held.append(conn)

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._held)

    def other_fds(self) -> int:
        """Open descriptors of this process, minus the sockets this server holds.

        A connection accepted but not yet recorded counts once, within the slack.
        """
        with self._lock:
            return open_fds() - len(self._held)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES can lead to unexpected behavior")
def test_replica_that_accepts_and_never_answers(
    healthy: LocalCluster, silent_server: SilentServer, record_property: Record
) -> None:
    """A "replica" whose port accepts TCP and then stays silent: never read from, never
    up, every probe ends as a timeout at PROBE_TIMEOUT, and reads never wait on it."""
    from django.conf import settings

    databases = {alias: dict(db) for alias, db in settings.DATABASES.items()}
    databases["replica"]["PORT"] = str(silent_server.port)
    with override_settings(DATABASES=databases):
        seen_states: set[str] = set()
        routed: list[str] = []
        start = time.monotonic()
        while time.monotonic() - start < WINDOW + SLACK:
            routed += reads(200)
            seen_states.add(node("replica")["state"])
            time.sleep(0.01)
        assert "replica" not in routed
        wait_until(lambda: node("replica")["error_class"] == "timeout", WINDOW + SLACK)
        assert silent_server.accepted >= 1

        t0 = time.monotonic()
        before = node("replica")
        check_reads_stay_fast_and_resources_flat(record_property, fds=silent_server.other_fds)
        after = node("replica")
        elapsed = time.monotonic() - t0
        seen_states |= {before["state"], after["state"]}

        grown = after["probes"] - before["probes"]
        record_property("probes_in_window", f"{grown} in {elapsed:.2f}s")
        record_property("probe_latency_ms", after["latency_ms"])
        # One probe at a time, each ending at PROBE_TIMEOUT: no faster than the timeout
        # (10 ms for timer granularity), no slower than timeout + interval (with slack).
        assert grown <= (elapsed + 0.01) / TIMEOUT + 1, grown
        assert grown >= elapsed / (TIMEOUT + INTERVAL) - 2, grown
        assert after["failed_probes"] - before["failed_probes"] == grown
        assert TIMEOUT * 1000 * 0.9 <= after["latency_ms"] < TIMEOUT * 1000 + 150
        assert after["error_class"] == "timeout"
        assert after["reads_routed"] == 0
        assert seen_states <= {"unknown", "down"}, seen_states
        assert "replica" not in reads(2000)


def test_primary_stopped(healthy: LocalCluster, record_property: Record) -> None:
    """With the primary stopped, reads go to the live replica and succeed; writes still
    target the primary and fail."""
    start = time.monotonic()
    healthy.stop("primary")
    detected = seconds_until(lambda: set(reads(200)) == {"replica"}, start)
    record_property("detection_s", round(detected, 3))
    assert detected <= WINDOW + SLACK, detected

    connections.close_all()
    routed_before = node("replica")["reads_routed"]
    with replica_router.unit_of_work():
        for _ in range(200):
            list(ReplicationModel.objects.all())
    assert node("replica")["reads_routed"] - routed_before >= 200
    assert node("default")["state"] == "down"

    with replica_router.unit_of_work():
        assert router.db_for_write(ReplicationModel) == "default"
        with pytest.raises(OperationalError):
            ReplicationModel.objects.create(name="nowhere", count=1, average=1.0)


def test_cold_start_reads_go_to_the_primary(healthy: LocalCluster) -> None:
    """Before a replica's first probe has answered, reads go to the primary; once it
    has, the replica joins."""
    for _ in range(5):
        _runtime.reset()
        with replica_router.unit_of_work():
            first = router.db_for_read(ReplicationModel)
        assert first == "default"
    wait_until(lambda: "replica" in reads(200), 5)
