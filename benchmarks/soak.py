#!/usr/bin/env python
"""Soak test: memory, threads and file descriptors stay flat while the standby flaps.

Brings up its own primary + hot standby (``tests/pgcluster.py``), configures
Django with ``replica_router`` probing every 0.2 s (timeout 0.5 s), keeps 8 threads
routing reads, and flaps the standby in a cycle for the whole run:

    stop -> start -> SIGSTOP -> SIGCONT -> pause replay (while the primary writes)
    -> resume replay

After each step it waits until the router reports the state that step should cause.
At the end it prints RSS, thread and fd counts at the start (after a warm-up cycle)
and at the end, the state changes logged, detection times, and reads per node.
Exits 1 if threads or fds grew, if RSS grew by more than 5 MB, if a routing thread
failed, or if a state change was never detected. The cluster is always torn down.

    python benchmarks/soak.py                # 10 minutes
    python benchmarks/soak.py --seconds 60   # a short run
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import os
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The cluster tool (tests/pgcluster.py).
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import LocalCluster  # noqa: E402

PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 0.5
MAX_LAG_BYTES = 64 * 1024
READERS = 8
RSS_LIMIT_KB = 5 * 1024
#: How long a step may take to show in status() before it counts as missed.
DETECT_TIMEOUT = 20.0
#: Time spent in each state before the next step, so reads see every state.
HOLD = 0.5

TRANSITION = re.compile(
    r'^(?:primary|replica) "(?P<alias>[^"]+)" is (?P<new>\w+) \(was (?P<old>\w+)\)'
)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def resources() -> dict[str, int]:
    gc.collect()
    return {"rss_kb": rss_kb(), "threads": thread_count(), "fds": fd_count()}


class TransitionCounter(logging.Handler):
    """Counts the state changes the router logs (logger ``replica_router``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lock_ = threading.Lock()
        self.transitions: collections.Counter[str] = collections.Counter()
        self.other: collections.Counter[int] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        m = TRANSITION.match(record.getMessage())
        with self.lock_:
            if m:
                self.transitions[f"{m['alias']}: {m['old']} -> {m['new']}"] += 1
            else:
                self.other[record.levelno] += 1


def configure_django(cluster: LocalCluster) -> TransitionCounter:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="soak-only-secret-key",
        DATABASES={
            "default": {**cluster.dsn("primary"), "OPTIONS": {"connect_timeout": 2}},
            "replica": {**cluster.dsn("standby"), "OPTIONS": {"connect_timeout": 2}},
        },
        DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
        REPLICA_ROUTER={
            "PROBE_INTERVAL": PROBE_INTERVAL,
            "PROBE_TIMEOUT": PROBE_TIMEOUT,
            "MAX_LAG_BYTES": MAX_LAG_BYTES,
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "replica_router"],
        LOGGING_CONFIG=None,
        USE_TZ=True,
    )
    django.setup()
    counter = TransitionCounter()
    logger = logging.getLogger("replica_router")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return counter


class Readers:
    """Threads calling ``db_for_read`` in a loop, with a short sleep between calls."""

    def __init__(self, count: int) -> None:
        from django.contrib.contenttypes.models import ContentType
        from django.db import router

        self.model = ContentType
        self.router = router
        self.stop = threading.Event()
        self.counts: list[collections.Counter[str]] = [collections.Counter() for _ in range(count)]
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=f"soak-reader-{i}", daemon=True)
            for i in range(count)
        ]

    def _run(self, idx: int) -> None:
        counts = self.counts[idx]
        db_for_read = self.router.db_for_read
        model = self.model
        try:
            while not self.stop.is_set():
                counts[db_for_read(model)] += 1
                time.sleep(0.001)
        except BaseException as exc:
            self.errors.append(repr(exc))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> list[str]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        return [t.name for t in self.threads if t.is_alive()]

    def totals(self) -> collections.Counter[str]:
        total: collections.Counter[str] = collections.Counter()
        for c in self.counts:
            total.update(c)
        return total


def replica_state() -> str:
    import replica_router

    return str(replica_router.status()[1]["state"])


def wait_state(
    expected: str, timeout: float, while_waiting: Callable[[], None] | None = None
) -> float | None:
    """Seconds until the replica's state is ``expected``, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if replica_state() == expected:
            return time.monotonic() - start
        if while_waiting is not None:
            while_waiting()
        time.sleep(0.02)
    return None


class Flapper:
    """Runs the fault cycle on the standby and records how long each step took to show."""

    def __init__(self, cluster: LocalCluster) -> None:
        from django.db import connections

        self.cluster = cluster
        self.connection = connections["default"]
        self.detect: dict[str, list[float]] = collections.defaultdict(list)
        self.missed: list[str] = []
        with self.connection.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS soak_wal (x int)")

    def _write_wal(self) -> None:
        # Some WAL on the primary, so that a paused standby falls behind.
        with self.connection.cursor() as cur:
            cur.execute("INSERT INTO soak_wal SELECT generate_series(1, 500)")
            cur.execute("DELETE FROM soak_wal")

    def step(
        self,
        name: str,
        action: Callable[[], None],
        expected: str,
        while_waiting: Callable[[], None] | None = None,
    ) -> None:
        action()
        took = wait_state(expected, DETECT_TIMEOUT, while_waiting)
        if took is None:
            self.missed.append(f"{name}: replica not {expected} within {DETECT_TIMEOUT:g}s")
        else:
            self.detect[name].append(took)
        time.sleep(HOLD)

    def cycle(self) -> None:
        c = self.cluster
        self.step("stop", lambda: c.stop("standby"), "down")
        self.step("start", lambda: c.start("standby"), "up")
        self.step("sigstop", lambda: c.sigstop("standby"), "down")
        self.step("sigcont", lambda: c.sigcont("standby"), "up")
        self.step("pause replay", c.pause_replay, "lagging", while_waiting=self._write_wal)
        self.step("resume replay", c.resume_replay, "up")
        # Whole again before the next cycle (or the final measurement).
        c.wait_streaming()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--minutes", type=float, default=10.0, help="run time (default 10)")
    group.add_argument("--seconds", type=float, help="run time in seconds (for short runs)")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def report(
    start: dict[str, int],
    end: dict[str, int],
    elapsed: float,
    cycles: int,
    counter: TransitionCounter,
    flapper: Flapper,
    reads: collections.Counter[str],
    status: list[dict[str, Any]],
) -> list[str]:
    """Prints the tables; returns the reasons to fail."""
    print(f"\nsoak: {elapsed:.0f} s, {cycles} flap cycles, {READERS} reader threads")
    print(f"\n{'':<18}{'start':>12}{'end':>12}{'growth':>12}")
    rows = (("RSS (kB)", "rss_kb"), ("threads", "threads"), ("fds", "fds"))
    for label, key in rows:
        print(f"{label:<18}{start[key]:>12}{end[key]:>12}{end[key] - start[key]:>+12}")

    print("\nstate changes logged")
    with counter.lock_:
        for name, n in sorted(counter.transitions.items()):
            print(f"  {name:<40}{n:>6}")
        others = dict(counter.other)
    if others:
        print(f"  other records by level: {others}")

    print("\ndetection after each step (s)        n      min   median      max")
    for name, values in flapper.detect.items():
        print(
            f"  {name:<32}{len(values):>5}{min(values):>9.3f}"
            f"{statistics.median(values):>9.3f}{max(values):>9.3f}"
        )

    print("\nreads per node        by threads    by the core (reads_routed, incl. warm-up)")
    for node in status:
        alias = node["alias"]
        print(f"  {alias:<20}{reads[alias]:>12}{node['reads_routed']:>14}")
    strays = {k: v for k, v in reads.items() if k not in {n["alias"] for n in status}}
    failures: list[str] = []
    if strays:
        failures.append(f"reads routed to aliases outside the cluster: {strays}")
    if end["threads"] > start["threads"]:
        failures.append(f"threads grew {start['threads']} -> {end['threads']}")
    if end["fds"] > start["fds"]:
        failures.append(f"fds grew {start['fds']} -> {end['fds']}")
    if end["rss_kb"] - start["rss_kb"] > RSS_LIMIT_KB:
        failures.append(f"RSS grew {end['rss_kb'] - start['rss_kb']} kB (> {RSS_LIMIT_KB} kB)")
    failures += [f"missed: {m}" for m in flapper.missed]
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    duration = args.seconds if args.seconds is not None else args.minutes * 60
    signal.signal(signal.SIGTERM, _terminate)

    cluster = LocalCluster()
    readers: Readers | None = None
    failures: list[str] = []
    try:
        print(f"soak: bringing up a primary + standby in {cluster.base_dir}", flush=True)
        cluster.up()
        counter = configure_django(cluster)
        import replica_router

        readers = Readers(READERS)
        readers.start()
        if wait_state("up", 20) is None:
            raise RuntimeError(
                f"the standby never came up in the router: {replica_router.status()}"
            )
        flapper = Flapper(cluster)

        print("soak: warm-up cycle", flush=True)
        flapper.cycle()
        wait_state("up", 20)
        time.sleep(1.0)
        start = resources()
        began = time.monotonic()
        reads_before = readers.totals()
        print(f"soak: flapping the standby for {duration:g} s", flush=True)
        cycles = 0
        while time.monotonic() - began < duration:
            flapper.cycle()
            cycles += 1
        elapsed = time.monotonic() - began
        wait_state("up", 20)
        time.sleep(1.0)
        end = resources()  # readers still running, as at the start
        reads = readers.totals() - reads_before
        status = replica_router.status()
        stuck = readers.join()
        errors, readers = readers.errors, None
        failures = report(start, end, elapsed, cycles, counter, flapper, reads, status)
        if stuck:
            failures.append(f"reader threads did not stop: {stuck}")
        failures += [f"reader thread failed: {e}" for e in errors[:10]]
    finally:
        if readers is not None:
            readers.join()
        try:
            from replica_router import _runtime

            _runtime.reset()
            from django.db import connections

            connections.close_all()
        except Exception as exc:
            print(f"soak: could not stop the router cleanly: {exc!r}", file=sys.stderr)
        cluster.down()
        print("soak: cluster torn down", flush=True)
    if failures:
        print("\nFAIL")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nOK: threads and fds flat, RSS growth within 5 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
