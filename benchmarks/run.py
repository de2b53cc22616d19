"""Router benchmarks, side by side in one run: ``python benchmarks/run.py``.

1. Cost of ``django.db.router``'s ``db_for_read(Model)``, ``db_for_read(Model,
   instance=obj)`` (an object loaded from the replica: related lookups,
   ``refresh_from_db()``) and ``db_for_write(Model)`` through Django's dispatch with
   each router installed, against a real primary + hot standby (both up). Routers
   are measured in interleaved rounds and the median round is kept, so machine noise
   hits all of them alike; the ratio to django-multidb-router is the number to read.
2. A query on a persistent connection to the primary through this project's backend
   (``replica_router.backends.postgresql``) and through Django's PostgreSQL backend:
   ``SELECT 1`` through a cursor, and a one-row ORM read; interleaved rounds, medians.
3. A blackholed replica (accepts TCP, never answers): the latency of "requests" that
   each open a fresh connection and run one read (Django's default CONN_MAX_AGE=0),
   with the tutorial's router (checks the node with ``cursor()`` on every read), the
   Django docs' example router, django-multidb-router, and ours.

3. Our router alone with that blackholed replica, its probes hanging until
   PROBE_TIMEOUT: the cost of each ``db_for_read`` call (median, 99th percentile,
   max), and how long a plain ``manage.py check`` takes (it probes the replica once,
   bounded by PROBE_TIMEOUT). The tests assert that reads never wait on the node;
   how fast they are is this table's job.

Prints its tables. Needs PostgreSQL's server binaries (see ``make bench``).
"""

from __future__ import annotations

import argparse
import contextvars
import itertools
import os
import random
import socket
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The cluster tool (tests/pgcluster.py) and the example's `router` app.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "example_project")]

from pgcluster import LocalCluster  # noqa: E402

CONNECT_TIMEOUT = 1


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=2)
        for c in held:
            c.close()
        sock.close()


# --- the peers, as their documentation/tutorials write them (no project code copied) ---


class DocsExampleRouter:
    """The Django documentation's primary/replica example: random replica for reads."""

    replicas = ("replica",)

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return random.choice(self.replicas)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"


class CursorCheckRouter:
    """The tutorial's approach: pick at random, check the node with cursor() per read."""

    nodes = ("replica", "default")

    def db_for_read(self, model: Any, **hints: Any) -> str:
        from django.db import connections
        from django.db.utils import OperationalError

        choice = random.choice(self.nodes)
        try:
            connections[choice].cursor()
        except OperationalError:
            choice = next(n for n in self.nodes if n != choice)
        return choice

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"


def configure(cluster: LocalCluster, dead_port: int) -> None:
    import django
    from django.conf import settings

    opts = {"connect_timeout": CONNECT_TIMEOUT}
    ours = "replica_router.backends.postgresql"
    settings.configure(
        DATABASES={
            "default": {**cluster.dsn("primary"), "ENGINE": ours, "OPTIONS": opts},
            "replica": {**cluster.dsn("standby"), "ENGINE": ours, "OPTIONS": opts},
            "dead": {**cluster.dsn("standby"), "PORT": str(dead_port), "OPTIONS": opts},
            # The primary again, through Django's own backend: the backend's baseline.
            "django": {**cluster.dsn("primary"), "OPTIONS": opts},
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "router"],
        REPLICA_ROUTER={
            "REPLICAS": {"replica": {"WEIGHT": 1}},
            "PROBE_INTERVAL": 0.2,
            "PROBE_TIMEOUT": 0.5,
        },
        REPLICA_DATABASES=["replica"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()


OURS = "replica_router.ReadWriteRouter"
MULTIDB = "django-multidb-router ReplicaRouter"
#: The calls measured per router, as the table's columns: db_for_read(Model),
#: db_for_read(Model, instance=obj), db_for_write(Model).
CALLS = ("read", "read, instance=", "write")


#: How router calls are timed: ``cpu`` (default), the calling thread's CPU time, which
#: time slices lost to other processes on a busy machine do not inflate; ``wall``.
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def _timed(fn: Callable[[], object], calls: int, clock: str) -> float:
    """ns per call of ``fn``, in a fresh copy of the current context: a write pins
    the context it runs in (read-your-writes), which must not leak into other rows."""
    timer = timeit.Timer(fn, timer=CLOCKS[clock])
    t: float = contextvars.copy_context().run(timer.timeit, calls)
    return t / calls * 1e9


def dispatch_costs(rounds: int, calls: int, clock: str) -> dict[str, list[float]]:
    """Median ns per call, per router, for each of ``CALLS``."""
    from django.db.utils import ConnectionRouter
    from router.models import ReplicationModel
    from tutorial_router import CursorCheckRouter as TutorialRouter

    import replica_router

    routers: dict[str, ConnectionRouter] = {
        "no router (Django's floor)": ConnectionRouter([]),
        "Django docs example (random.choice)": ConnectionRouter([DocsExampleRouter()]),
        "tutorial router (cursor() check per read)": ConnectionRouter([TutorialRouter()]),
        MULTIDB: ConnectionRouter(["multidb.ReplicaRouter"]),
        "django-multidb-router PinningReplicaRouter": ConnectionRouter(
            ["multidb.PinningReplicaRouter"]
        ),
        OURS: ConnectionRouter([OURS]),
    }
    # An object as Django leaves it after loading it from the replica.
    obj = ReplicationModel(pk=1, name="x", count=1, average=1.0)
    obj._state.db, obj._state.adding = "replica", False
    # Warm up: the cluster's first probes must have answered (both nodes up).
    routers[OURS].db_for_read(ReplicationModel)
    deadline = time.monotonic() + 10
    while {n["state"] for n in replica_router.status()} != {"up"}:
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster not up: {replica_router.status()}")
        time.sleep(0.05)
    samples: dict[str, list[list[float]]] = {name: [[] for _ in CALLS] for name in routers}
    for _ in range(rounds):
        order = list(routers.items())
        random.shuffle(order)
        for name, r in order:
            fns: tuple[Callable[[], object], ...] = (
                lambda r=r: r.db_for_read(ReplicationModel),
                lambda r=r: r.db_for_read(ReplicationModel, instance=obj),
                lambda r=r: r.db_for_write(ReplicationModel),
            )
            for i, fn in enumerate(fns):
                samples[name][i].append(_timed(fn, calls, clock))
    return {name: [statistics.median(v) for v in cols] for name, cols in samples.items()}


def backend_costs(rounds: int, queries: int) -> dict[str, list[float]]:
    """Median us per query on a persistent connection to the primary, by backend:
    ``SELECT 1`` through a cursor, and a one-row ORM read."""
    from django.db import connections
    from router.models import ReplicationModel

    pk = ReplicationModel.objects.using("default").create(name="b", count=1, average=1.0).pk

    def select_one(alias: str) -> Callable[[], object]:
        def run() -> object:
            with connections[alias].cursor() as c:
                c.execute("SELECT 1")
                return c.fetchone()

        return run

    def orm_read(alias: str) -> Callable[[], object]:
        manager = ReplicationModel.objects.using(alias)
        return lambda: manager.get(pk=pk)

    backends = {
        "replica_router.backends.postgresql": "default",
        "django.db.backends.postgresql": "django",
    }
    samples: dict[str, list[list[float]]] = {name: [[], []] for name in backends}
    for alias in backends.values():  # connect, and warm up
        for make in (select_one, orm_read):
            timeit.timeit(make(alias), number=50)
    for _ in range(rounds):
        order = list(backends.items())
        random.shuffle(order)
        for name, alias in order:
            for i, make in enumerate((select_one, orm_read)):
                t = timeit.timeit(make(alias), number=queries)
                samples[name][i].append(t / queries * 1e6)
    connections.close_all()
    return {name: [statistics.median(v) for v in cols] for name, cols in samples.items()}


def dead_replica(requests: int) -> list[tuple[str, list[float], int]]:
    """Per-request latency with a blackholed replica (ms), and failed requests."""
    from django.db import connections
    from django.db.utils import ConnectionRouter, OperationalError
    from router.models import ReplicationModel

    from replica_router import _runtime

    docs = DocsExampleRouter()
    docs.replicas = ("dead",)
    cursor = CursorCheckRouter()
    cursor.nodes = ("dead", "default")
    import multidb

    results = []
    cases: list[tuple[str, Callable[[], ConnectionRouter]]] = [
        ("tutorial router (cursor() check per read)", lambda: ConnectionRouter([cursor])),
        ("Django docs example (random.choice)", lambda: ConnectionRouter([docs])),
        (
            "django-multidb-router ReplicaRouter",
            lambda: ConnectionRouter(["multidb.ReplicaRouter"]),
        ),
        (
            "replica_router.ReadWriteRouter",
            lambda: ConnectionRouter(["replica_router.ReadWriteRouter"]),
        ),
    ]
    from django.conf import settings

    for name, make in cases:
        multidb.replicas = itertools.cycle(["dead"])
        settings.REPLICA_ROUTER = {
            "REPLICAS": {"dead": {"WEIGHT": 1}},
            "PROBE_INTERVAL": 0.2,
            "PROBE_TIMEOUT": 0.5,
        }
        _runtime.reset()
        r = make()
        if name.startswith("replica_router"):
            r.db_for_read(ReplicationModel)
            time.sleep(2 * 0.2 + 0.5 + 0.3)  # the replica dies before the requests start
        latencies: list[float] = []
        failed = 0
        for _ in range(requests):
            connections.close_all()
            start = time.perf_counter()
            try:
                alias = r.db_for_read(ReplicationModel)
                list(ReplicationModel.objects.using(alias).all()[:1])
            except OperationalError:
                failed += 1
            latencies.append((time.perf_counter() - start) * 1000)
        connections.close_all()
        results.append((name, latencies, failed))
    _runtime.reset()
    return results


def during_fault(calls: int) -> list[tuple[str, str]]:
    """Our router with the blackholed replica taken out: read cost, and ``check``."""
    from django.conf import settings
    from django.core import checks
    from django.db.utils import ConnectionRouter
    from router.models import ReplicationModel

    import replica_router
    from replica_router import _runtime

    interval, timeout = 0.2, 0.5
    settings.REPLICA_ROUTER = {
        "REPLICAS": {"dead": {"WEIGHT": 1}},
        "PROBE_INTERVAL": interval,
        "PROBE_TIMEOUT": timeout,
    }
    _runtime.reset()
    r = ConnectionRouter(["replica_router.ReadWriteRouter"])
    r.db_for_read(ReplicationModel)
    time.sleep(2 * interval + timeout + 0.3)  # FALL probes timed out: the node is down
    dead = next(n for n in replica_router.status() if n["alias"] == "dead")
    perf = time.perf_counter_ns
    timings: list[int] = []
    with replica_router.unit_of_work():
        for _ in range(calls):
            t0 = perf()
            r.db_for_read(ReplicationModel)
            timings.append(perf() - t0)
    timings.sort()
    # The check as a fresh process runs it: with no prober of this configuration
    # alive, it probes the blackholed replica itself (else it reads the shared health).
    _runtime.reset()
    started = time.perf_counter()
    messages = [m for m in checks.run_checks() if (m.id or "").startswith("replica_router.")]
    check_s = time.perf_counter() - started
    _runtime.reset()
    return [
        ("replica state while measured", f"{dead['state']} ({dead['error_class']})"),
        ("db_for_read median", f"{statistics.median(timings) / 1000:.2f} us"),
        ("db_for_read 99th percentile", f"{timings[int(len(timings) * 0.99)] / 1000:.2f} us"),
        ("db_for_read max", f"{timings[-1] / 1e6:.2f} ms"),
        (
            f"plain check (bound: PROBE_TIMEOUT {timeout} s + 1 s)",
            f"{check_s:.2f} s, {', '.join(m.id or '' for m in messages) or 'no message'}",
        ),
    ]


def print_dispatch(costs: dict[str, list[float]], rounds: int, calls: int, clock: str) -> None:
    base = costs[MULTIDB]
    print(
        f"\nThrough django.db.router: ns per call ({clock} time), median of {rounds} interleaved rounds "
        f"x {calls} calls (Python {sys.version.split()[0]}); x: ratio to {MULTIDB}\n"
    )
    print(
        "read: db_for_read(Model); read, instance=: db_for_read(Model, instance=obj) for an "
        "object loaded from the replica; write: db_for_write(Model)\n"
    )
    head = " | ".join(f"{c:>15} | {'x':>6}" for c in CALLS)
    print(f"| {'router':<44} | {head} |")
    print("|" + "-" * 46 + "|" + "|".join(["-" * 17 + "|" + "-" * 8] * len(CALLS)) + "|")
    for name, cols in costs.items():
        cells = " | ".join(
            f"{ns:>15.0f} | {ns / b:>5.2f}x" for ns, b in zip(cols, base, strict=True)
        )
        print(f"| {name:<44} | {cells} |")


def print_backend(costs: dict[str, list[float]], rounds: int, queries: int) -> None:
    ours, django_ = (
        costs["replica_router.backends.postgresql"],
        costs["django.db.backends.postgresql"],
    )
    print(
        f"\nA query on a persistent connection to the primary: us per query, median of "
        f"{rounds} interleaved rounds x {queries} queries\n"
    )
    print(f"| {'backend':<36} | {'SELECT 1 (cursor)':>18} | {'one-row ORM read':>18} |")
    print(f"|{'-' * 38}|{'-' * 20}|{'-' * 20}|")
    for name, cols in costs.items():
        print(f"| {name:<36} | {cols[0]:>18.1f} | {cols[1]:>18.1f} |")
    ratio = [o / d for o, d in zip(ours, django_, strict=True)]
    print(f"| {'ratio (this backend / Django)':<36} | {ratio[0]:>17.3f}x | {ratio[1]:>17.3f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median kept)")
    parser.add_argument("--calls", type=int, default=50_000, help="calls per router per round")
    parser.add_argument("--queries", type=int, default=2_000, help="queries per backend per round")
    parser.add_argument(
        "--requests", type=int, default=10, help="requests per router, dead replica"
    )
    parser.add_argument(
        "--fault-calls", type=int, default=20_000, help="db_for_read calls timed one by one"
    )
    parser.add_argument("--only", choices=("router", "backend", "dead"), help="run one part only")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="router calls: the thread's CPU time (default) or wall time",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "false")
    with LocalCluster() as cluster, silent_server() as dead_port:
        configure(cluster, dead_port)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        cluster.wait_replayed()
        if args.only in (None, "router"):
            costs = dispatch_costs(args.rounds, args.calls, args.clock)
            print_dispatch(costs, args.rounds, args.calls, args.clock)
        if args.only in (None, "backend"):
            print_backend(backend_costs(args.rounds, args.queries), args.rounds, args.queries)
        if args.only not in (None, "dead"):
            return 0
        dead = dead_replica(args.requests)
        print(
            f"\nA blackholed replica (accepts TCP, never answers), connect_timeout={CONNECT_TIMEOUT}s: "
            f"{args.requests} requests, each a fresh connection + one read\n"
        )
        print(f"| {'router':<44} | {'p50 ms':>8} | {'max ms':>8} | {'failed':>6} |")
        print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
        for name, lat, failed in dead:
            print(
                f"| {name:<44} | {statistics.median(lat):>8.1f} | {max(lat):>8.1f} | "
                f"{failed:>3}/{len(lat):<2} |"
            )

        fault = during_fault(args.fault_calls)
        print(
            f"\nreplica_router.ReadWriteRouter with that replica blackholed and taken out: "
            f"{args.fault_calls} db_for_read calls timed one by one\n"
        )
        print(f"| {'measure':<44} | {'value':<28} |")
        print(f"|{'-' * 46}|{'-' * 30}|")
        for name, value in fault:
            print(f"| {name:<44} | {value:<28} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
