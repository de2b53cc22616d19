"""Instructions per routing call, which a busy machine does not change:
``python benchmarks/instructions.py`` (needs valgrind: Debian package ``valgrind``).

Runs itself under ``valgrind --tool=callgrind`` against a real primary + hot standby
(both up throughout: probes get generous bounds, since valgrind runs one thread at a
time) and counts, for Django's dispatch with no router, with django-multidb-router's
``ReplicaRouter`` and with ``ReadWriteRouter``, the instructions of ``--calls`` calls
of ``db_for_read(Model)`` and of ``db_for_read(Model, instance=obj)`` (the loop's
share included, the same for every row). Each segment starts with ``os.getppid()``,
on which callgrind dumps its counts (``--dump-before``), and only the main thread's
counts are read. Prints one table.
"""

from __future__ import annotations

import argparse
import contextvars
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "example_project")]

ROUTERS = ("no router (Django's floor)", "django-multidb-router ReplicaRouter", "ReadWriteRouter")
KINDS = ("read", "read, instance=")


def child(calls: int) -> None:
    """Under callgrind: one segment per (router, kind), each opened by os.getppid()."""
    import django
    from django.conf import settings
    from pgcluster import LocalCluster

    with LocalCluster() as cluster:
        settings.configure(
            DATABASES={"default": cluster.dsn("primary"), "replica": cluster.dsn("standby")},
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "router"],
            REPLICA_ROUTER={
                "REPLICAS": {"replica": {"WEIGHT": 1}},
                "PROBE_INTERVAL": 1.0,
                "PROBE_TIMEOUT": 5.0,
            },
            REPLICA_DATABASES=["replica"],
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
        from django.db.utils import ConnectionRouter
        from router.models import ReplicationModel as M

        import replica_router

        routers = [
            ConnectionRouter([]),
            ConnectionRouter(["multidb.ReplicaRouter"]),
            ConnectionRouter(["replica_router.ReadWriteRouter"]),
        ]
        routers[2].db_for_read(M)
        deadline = time.monotonic() + 120
        while {n["state"] for n in replica_router.status()} != {"up"}:
            if time.monotonic() > deadline:
                raise SystemExit(f"cluster not up: {replica_router.status()}")
            time.sleep(0.05)
        obj = M(pk=1, name="x", count=1, average=1.0)
        obj._state.db, obj._state.adding = "replica", False

        def segments() -> None:
            for r in routers:
                for _ in range(3):  # warm up
                    r.db_for_read(M)
                    r.db_for_read(M, instance=obj)
                os.getppid()
                for _ in range(calls):
                    r.db_for_read(M)
                os.getppid()
                for _ in range(calls):
                    r.db_for_read(M, instance=obj)
            os.getppid()

        contextvars.copy_context().run(segments)
        states = {n["state"] for n in replica_router.status()}
        if states != {"up"}:
            raise SystemExit(f"a node left reads while measured: {replica_router.status()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per row and kind")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.calls)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--fair-sched=yes",
            "--separate-threads=yes",
            "--dump-before=os_getppid",
            f"--callgrind-out-file={out}.%p",
            sys.executable,
            __file__,
            "--child",
            "--calls",
            str(args.calls),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Dump k of the main thread (thread 1): `cg.<pid>.<k>-01`; dump 1 is the set-up.
        dumps: dict[int, int] = {}
        for f in Path(tmp).iterdir():
            m = re.fullmatch(r"cg\.\d+\.(\d+)-01", f.name)
            if m:
                total = re.search(r"^summary: (\d+)$", f.read_text(), re.M)
                if total:
                    dumps[int(m.group(1))] = int(total.group(1))
    per_call = [dumps[k] / args.calls for k in range(2, 2 + len(ROUTERS) * len(KINDS))]
    rows = {name: per_call[i * 2 : i * 2 + 2] for i, name in enumerate(ROUTERS)}
    base = rows[ROUTERS[1]]
    print(
        f"\nInstructions per call through django.db.router (callgrind, {args.calls} calls per "
        f"cell, the loop's share included; Python {sys.version.split()[0]}); x: ratio to "
        f"{ROUTERS[1]}\n"
    )
    print(f"| {'router':<38} | {KINDS[0]:>9} | {'x':>6} | {KINDS[1]:>16} | {'x':>6} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 8}|{'-' * 18}|{'-' * 8}|")
    for name, (plain, hinted) in rows.items():
        print(
            f"| {name:<38} | {plain:>9,.0f} | {plain / base[0]:>5.2f}x | {hinted:>16,.0f} | "
            f"{hinted / base[1]:>5.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
