"""Where a read decision's time goes: ``python benchmarks/read_steps.py``.

Against a real primary + hot standby (both up), measures in interleaved rounds
(medians, ns per call) each layer of ``django.db.router.db_for_read(Model)`` and of
the hinted ``db_for_read(Model, instance=obj)`` through ``ReadWriteRouter``:

* Django's dispatch with no router (the floor), with a router whose method is a
  Python function returning a constant (dispatch + a Python frame), and with
  django-multidb-router's ``ReplicaRouter`` (the reference of ``run.py``);
* ``ReadWriteRouter().db_for_read`` called directly (no dispatch), and for an object
  of a database outside the cluster (the hint read and the rule applied, no
  decision);
* the core's read decision alone, built up one step at a time: the pick only (a
  ``Cluster`` with no routing state and no transaction check), plus the context
  variable, plus the ``atomic()`` check (the router's own cluster);
* ``ContextVar.get`` from Python, for scale.

The differences between rows are the cost of each step. Timed by the thread's CPU
time (``time.thread_time``), which other processes on a busy machine do not
inflate. Prints one table.
"""

from __future__ import annotations

import argparse
import contextvars
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "example_project")]

from pgcluster import LocalCluster  # noqa: E402


class ConstantRouter:
    """A router that does nothing: what Django's dispatch plus one Python frame cost."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "replica"


def configure(cluster: LocalCluster) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": cluster.dsn("primary"), "replica": cluster.dsn("standby")},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "router"],
        REPLICA_ROUTER={"REPLICAS": {"replica": {"WEIGHT": 1}}, "PROBE_INTERVAL": 0.2},
        REPLICA_DATABASES=["replica"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def steps(rounds: int, calls: int) -> list[tuple[str, float]]:
    from django.db.utils import ConnectionRouter
    from router.models import ReplicationModel

    import replica_router
    from replica_router import _core, _runtime, context

    ours = ConnectionRouter(["replica_router.ReadWriteRouter"])
    ours.db_for_read(ReplicationModel)  # builds the cluster
    s = _runtime.get_settings()
    cluster = _runtime.get_cluster()
    pick_only = _core.Cluster(s)
    with_state = _core.Cluster(s, state_getter=context.current)
    for c in (pick_only, with_state):
        c.start()
    deadline = time.monotonic() + 10
    while any(n["state"] != "up" for c in (cluster, pick_only, with_state) for n in c.status()):
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster not up: {replica_router.status()}")
        time.sleep(0.05)
    obj = ReplicationModel(pk=1, name="x", count=1, average=1.0)
    obj._state.db, obj._state.adding = "replica", False
    other = ReplicationModel(pk=1, name="x", count=1, average=1.0)
    other._state.db, other._state.adding = "other", False
    floor, constant = ConnectionRouter([]), ConnectionRouter([ConstantRouter()])
    multidb = ConnectionRouter(["multidb.ReplicaRouter"])
    direct = replica_router.ReadWriteRouter()
    m = ReplicationModel
    cases: dict[str, Callable[[], object]] = {
        "dispatch, no router": lambda: floor.db_for_read(m),
        "dispatch + constant Python router": lambda: constant.db_for_read(m),
        "dispatch + multidb ReplicaRouter": lambda: multidb.db_for_read(m),
        "dispatch + ReadWriteRouter": lambda: ours.db_for_read(m),
        "ReadWriteRouter().db_for_read(M), direct": lambda: direct.db_for_read(m),
        "core: pick only": pick_only.read,
        "core: + context variable": with_state.read,
        "core: + atomic() check (Cluster.read)": cluster.read,
        "ContextVar.get() from Python": context.current,
        "hinted: dispatch, no router": lambda: floor.db_for_read(m, instance=obj),
        "hinted: dispatch + constant Python router": lambda: constant.db_for_read(m, instance=obj),
        "hinted: dispatch + multidb ReplicaRouter": lambda: multidb.db_for_read(m, instance=obj),
        "hinted: dispatch + ReadWriteRouter": lambda: ours.db_for_read(m, instance=obj),
        "hinted: ReadWriteRouter, direct": lambda: direct.db_for_read(m, instance=obj),
        "hinted: core, Cluster.read_hinted('replica')": lambda: cluster.read_hinted("replica"),
        "hint only: another database's object, direct": lambda: direct.db_for_read(
            m, instance=other
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, fn in order:
            # In a fresh copy of the context, as `run.py` times its rows.
            timer = timeit.Timer(fn, timer=time.thread_time)
            t = contextvars.copy_context().run(timer.timeit, calls)
            samples[name].append(t / calls * 1e9)
    for c in (pick_only, with_state):
        c.close()
    return [(name, statistics.median(v)) for name, v in samples.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median kept)")
    parser.add_argument("--calls", type=int, default=50_000, help="calls per step per round")
    args = parser.parse_args(argv)
    with LocalCluster() as cluster:
        configure(cluster)
        rows = steps(args.rounds, args.calls)
    print(
        f"\nOne read decision, layer by layer: ns per call (CPU time), median of {args.rounds} "
        f"interleaved rounds x {args.calls} calls (Python {sys.version.split()[0]})\n"
    )
    print(f"| {'step':<48} | {'ns/call':>8} |")
    print(f"|{'-' * 50}|{'-' * 10}|")
    for name, ns in rows:
        print(f"| {name:<48} | {ns:>8.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
