"""Shared health (one prober per host) under gunicorn, and its read-path cost.

For 1, 4 and 16 sync workers serving the example project against a local primary +
standby (PROBE_INTERVAL 0.2 s, PROBE_TIMEOUT 0.5 s, FALL 2): probe backends per
node with SHARE_HEALTH on and off; the time until every worker's reads leave a
stopped and a frozen (SIGSTOP) standby; the time until another worker publishes
after SIGKILL of the probing one. Then ``db_for_read`` through Django's router in
this process, as a follower of a shared prober and with SHARE_HEALTH False,
interleaved. Prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "example_project")]
sys.path.insert(0, str(ROOT))

from pgcluster import LocalCluster  # noqa: E402

from tests.gunicorn_pool import Pool, probe_backends, watch_workers  # noqa: E402

INTERVAL = 0.2
TIMEOUT = 0.5
WINDOW = 2 * INTERVAL + TIMEOUT


def settle_backends(cluster: LocalCluster, want: int, timeout: float = 10) -> dict[str, int]:
    """Probe backends per node once they stop changing (closed ones take a moment)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        seen = {n: probe_backends(cluster, n) for n in ("primary", "standby")}
        if set(seen.values()) == {want}:
            break
        time.sleep(0.1)
    return seen


def replica_out(data: dict[str, Any]) -> bool:
    node = {n["alias"]: n for n in data["nodes"]}["replica"]
    return bool(node["state"] != "up" and data.get("routed") == ["default"])


def detection(pool: Pool, cluster: LocalCluster, how: str) -> tuple[float, float, int]:
    """Breaks the standby (``stop`` or ``freeze``); returns (median, max) seconds
    until a worker's reads left it, over the workers, and how many saw it."""
    if how == "stop":
        cluster.stop("standby")
    else:
        cluster.sigstop("standby")
    try:
        times, _ = watch_workers(pool, replica_out, timeout=WINDOW + 10)
    finally:
        if how == "stop":
            cluster.start("standby", wait_streaming=False)
        else:
            cluster.sigcont("standby")
        cluster.wait_streaming()
    pool.wait_ready()
    values = list(times.values()) or [float("nan")]
    return statistics.median(values), max(values), len(times)


def takeover(pool: Pool) -> float:
    """SIGKILL of the probing worker; seconds until another one has published."""
    leader = next(iter(pool.wait_ready().values()))["nodes"][0]["prober_pid"]
    os.kill(leader, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 15:
        data = pool.get()
        if data is not None:
            n = data["nodes"][0]
            age = n["snapshot_age"]
            if n["prober_pid"] != leader and age is not None and age < INTERVAL + TIMEOUT:
                return time.monotonic() - killed
        time.sleep(0.005)
    return float("nan")


def gunicorn_rows(cluster: LocalCluster, counts: list[int], work: Path) -> list[list[str]]:
    rows = []
    for n in counts:
        share_dir = work / f"share{n}"
        share_dir.mkdir(mode=0o700)
        pool = Pool(
            cluster, n, work / f"on{n}", interval=INTERVAL, timeout=TIMEOUT, share_dir=share_dir
        )
        try:
            pool.wait_ready(timeout=120)
            shared = settle_backends(cluster, 1)
            stop = detection(pool, cluster, "stop")
            freeze = detection(pool, cluster, "freeze")
            took = takeover(pool)
        finally:
            pool.stop()
        off = Pool(cluster, n, work / f"off{n}", share=False, interval=INTERVAL, timeout=TIMEOUT)
        try:
            off.wait_ready(timeout=120)
            alone = settle_backends(cluster, n)
        finally:
            off.stop()
        settle_backends(cluster, 0)
        rows.append(
            [
                str(n),
                f"{shared['primary']} / {shared['standby']}",
                f"{alone['primary']} / {alone['standby']}",
                f"{stop[0]:.2f} / {stop[1]:.2f} ({stop[2]}/{n})",
                f"{freeze[0]:.2f} / {freeze[1]:.2f} ({freeze[2]}/{n})",
                f"{took:.2f}",
            ]
        )
        print(f"  {n} workers done", file=sys.stderr, flush=True)
    return rows


LEADER = """
import json, os, sys, time
from replica_router import _core
c = _core.Cluster(_core.RouterSettings(json.loads(sys.argv[1]), json.loads(sys.argv[2])))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.close()
"""


def read_costs(cluster: LocalCluster, rounds: int, calls: int, work: Path) -> list[list[str]]:
    """``db_for_read`` through Django's router here: following a shared prober (a
    leader in another process) vs probing alone (SHARE_HEALTH False)."""
    import django
    from django.conf import settings

    share_dir = work / "share-bench"
    share_dir.mkdir(mode=0o700)
    os.environ["REPLICA_ROUTER_SHARE_DIR"] = str(share_dir)
    router = {"REPLICAS": ["replica"], "PROBE_INTERVAL": INTERVAL, "PROBE_TIMEOUT": TIMEOUT}
    dbs = {"default": cluster.dsn("primary"), "replica": cluster.dsn("standby")}
    settings.configure(
        DATABASES=dbs,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "router"],
        REPLICA_ROUTER=router,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()
    from django.db.utils import ConnectionRouter
    from router.models import ReplicationModel

    import replica_router
    from replica_router import _runtime

    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, json.dumps(router), json.dumps(dbs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert leader.stdout is not None and leader.stdout.readline().strip() == "ready"
        modes = {
            "shared (follower)": {**router, "SHARE_HEALTH": True},
            "SHARE_HEALTH False": {**router, "SHARE_HEALTH": False},
        }
        r = ConnectionRouter(["replica_router.ReadWriteRouter"])
        samples: dict[str, list[float]] = {m: [] for m in modes}
        probers: dict[str, set[int]] = {m: set() for m in modes}
        for _ in range(rounds):
            for mode, conf in modes.items():
                settings.REPLICA_ROUTER = conf
                _runtime.reset()
                r.db_for_read(ReplicationModel)
                deadline = time.monotonic() + 10
                while {n["state"] for n in replica_router.status()} != {"up"}:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"not up: {replica_router.status()}")
                    time.sleep(0.02)
                probers[mode].add(replica_router.status()[0]["prober_pid"])
                t = timeit.timeit(lambda: r.db_for_read(ReplicationModel), number=calls)
                samples[mode].append(t / calls * 1e9)
        _runtime.reset()
        # The core's read alone, both clusters alive at once: same configuration, so
        # the one with SHARE_HEALTH False probes on its own.
        from replica_router import _core

        core = {
            "Cluster.read(), shared (follower)": _core.Cluster(
                _core.RouterSettings(modes["shared (follower)"], dbs)
            ),
            "Cluster.read(), SHARE_HEALTH False": _core.Cluster(
                _core.RouterSettings(modes["SHARE_HEALTH False"], dbs)
            ),
        }
        for name, c in core.items():
            c.start()
            samples[name] = []
            probers[name] = set()
        deadline = time.monotonic() + 10
        while any(n["state"] != "up" for c in core.values() for n in c.status()):
            if time.monotonic() > deadline:
                raise SystemExit("not up")
            time.sleep(0.02)
        for name, c in core.items():
            probers[name].add(c.status()[0]["prober_pid"])
        for _ in range(rounds * 3):
            for name, c in core.items():
                samples[name].append(timeit.timeit(c.read, number=calls * 4) / (calls * 4) * 1e9)
        for c in core.values():
            c.close()
    finally:
        if leader.stdin is not None:
            leader.stdin.close()
        leader.wait(timeout=10)
        if leader.stdout is not None:
            leader.stdout.close()
    me = os.getpid()
    return [
        [
            mode,
            f"{statistics.median(v):.0f}",
            "another process"
            if probers[mode] == {leader.pid}
            else "this process"
            if probers[mode] == {me}
            else str(sorted(probers[mode])),
        ]
        for mode, v in samples.items()
    ]


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16", help="gunicorn worker counts")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--calls", type=int, default=50_000, help="db_for_read calls per round")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    with LocalCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        rows = gunicorn_rows(cluster, counts, work)
        costs = read_costs(cluster, args.rounds, args.calls, work)
    print(
        f"\ngunicorn sync workers, PROBE_INTERVAL {INTERVAL} s, PROBE_TIMEOUT {TIMEOUT} s, "
        f"FALL 2 (window {WINDOW:.1f} s); times in s, median / max over workers "
        "(seen by HTTP polling)\n"
    )
    head = [
        "workers",
        "probe backends/node (primary / standby), shared",
        "same, SHARE_HEALTH False",
        "stopped standby left reads",
        "frozen standby left reads",
        "takeover after SIGKILL",
    ]
    print(table(head, rows))
    print(
        f"\ndb_for_read through django.db.router, median of {args.rounds} interleaved rounds "
        f"x {args.calls} calls; the core's Cluster.read() alone: {3 * args.rounds} rounds x "
        f"{4 * args.calls} calls (Python {sys.version.split()[0]})\n"
    )
    print(table(["mode", "ns/call", "prober"], costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
