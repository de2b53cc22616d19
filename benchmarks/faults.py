#!/usr/bin/env python
"""Faults under HTTP load: ``python benchmarks/faults.py`` (``make faults``).

gunicorn (``gthread``, 2 workers x 4 threads) serves the DJReplica example
(``example_project/``, ``DJReplica.wsgi``) on a free 127.0.0.1 port, against a real
primary + hot standby (``tests/pgcluster.py``, one cluster for the whole
run). A second process (``benchmarks/loadgen.py``: 8 client threads, keep-alive)
sends ``GET /rows/?limit=1`` (one ORM read through the router) for 13 s and records
every request. 4 s into the load a fault is injected and it is lifted 6 s later:

* ``standby-crash``: ``pg_ctl stop -m immediate`` on the standby, started at lift;
* ``standby-restart``: the same, started again at once;
* ``standby-freeze``: SIGSTOP to the standby's processes, SIGCONT at lift;
* ``primary-crash``: ``pg_ctl stop -m immediate`` on the primary, started at lift.

Each fault runs for each ``CONN_MAX_AGE`` and each router setup (a fresh gunicorn
per run; the cluster is restored and checked between runs):

* ``backend``: ``replica_router.ReadWriteRouter`` with ``replica_router.backends.postgresql``;
* ``django``: ``replica_router.ReadWriteRouter`` with ``django.db.backends.postgresql``;
* ``tutorial``: the tutorial's router (``benchmarks/tutorial_router.py``), Django's backend;
* ``multidb``: django-multidb-router's ``multidb.ReplicaRouter``, Django's backend.

Prints a Markdown table: requests, failed requests (not 200, or no answer), requests
slower than 2 s, the slowest, and the share of throughput kept during the fault
(successful requests per second while the fault lasts / the rate in the 4 s before).
``--json PATH`` writes the raw numbers; the per-request records and gunicorn's logs
stay in ``--logs`` (a new directory under /tmp by default).

    python benchmarks/faults.py --faults standby-freeze --routers backend --conn-max-age 0
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
EXAMPLE = ROOT / "example_project"
sys.path[:0] = [str(ROOT / "tests"), str(EXAMPLE)]

from pgcluster import LocalCluster  # noqa: E402

#: Seconds of load before the fault, the fault's length, and the load after it.
BEFORE, DURING, AFTER = 4.0, 6.0, 3.0
#: Warm-up load before each measured run (connections, first probes).
WARMUP = 2.0
STALL = 2.0
WORKERS, THREADS, CLIENTS = 2, 4, 8
PATH = "/rows/?limit=1"

ROUTERS: dict[str, tuple[str, dict[str, str]]] = {
    "backend": (
        "this router + its backend",
        {"DJREPLICA_ROUTER": "ours", "DJREPLICA_ENGINE": "backend"},
    ),
    "django": (
        "this router, Django's backend",
        {"DJREPLICA_ROUTER": "ours", "DJREPLICA_ENGINE": "django"},
    ),
    "tutorial": (
        "tutorial router (cursor() check)",
        {"DJREPLICA_ROUTER": "tutorial", "DJREPLICA_ENGINE": "django"},
    ),
    "multidb": (
        "multidb ReplicaRouter",
        {"DJREPLICA_ROUTER": "multidb", "DJREPLICA_ENGINE": "django"},
    ),
}

Action = Callable[[LocalCluster], None]


def _standby_crash(c: LocalCluster) -> None:
    c.stop("standby", mode="immediate")


def _standby_back(c: LocalCluster) -> None:
    c.start("standby", wait_streaming=False)


def _standby_restart(c: LocalCluster) -> None:
    c.stop("standby", mode="immediate")
    c.start("standby", wait_streaming=False)


def _nothing(c: LocalCluster) -> None:
    pass


FAULTS: dict[str, tuple[str, Action, Action]] = {
    "standby-crash": ("standby crash", _standby_crash, _standby_back),
    "standby-restart": ("standby fast restart", _standby_restart, _nothing),
    "standby-freeze": (
        "standby SIGSTOP",
        lambda c: c.sigstop("standby"),
        lambda c: c.sigcont("standby"),
    ),
    "primary-crash": (
        "primary crash",
        lambda c: c.stop("primary", mode="immediate"),
        lambda c: c.start("primary"),
    ),
}


@dataclass
class Result:
    fault: str
    conn_max_age: int
    router: str
    requests: int = 0
    failed: int = 0
    stalled: int = 0
    max_s: float = 0.0
    rate_before: float = 0.0
    rate_during: float = 0.0
    kept: float = 0.0
    fault_at: float = 0.0  # time.monotonic(), as in the records
    fault_wall: float = 0.0  # time.time(), to compare with the logs
    fault_took: float = 0.0
    lift_at: float = 0.0
    lift_took: float = 0.0
    stale_keepalive_retries: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    served_during_fault: dict[str, int] = field(default_factory=dict)
    per_second: list[dict[str, int]] = field(default_factory=list)
    records: str = ""
    log: str = ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process started in its own session, and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # Workers may outlive their master: the whole group goes.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def django_env(cluster: LocalCluster, router: str, conn_max_age: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJREPLICA_", "PG"))}
    env.update(cluster.env_vars())
    env.update(ROUTERS[router][1])
    env["DJREPLICA_CONN_MAX_AGE"] = str(conn_max_age)
    env["DJREPLICA_DEBUG"] = "0"
    env["DJANGO_SETTINGS_MODULE"] = "DJReplica.settings"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLE), str(BENCH)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@functools.cache
def _has_control_socket() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return "--no-control-socket" in help_text


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path) -> Iterator[int]:
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", "DJReplica.wsgi",
        "--chdir", str(EXAMPLE),
        "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread",
        "--workers", str(WORKERS),
        "--threads", str(THREADS),
        "--graceful-timeout", "5",
        "--error-logfile", "-",
    ]  # fmt: skip
    if _has_control_socket():  # else every gunicorn of this user shares one socket path
        args.append("--no-control-socket")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode}); see {log}")
            with contextlib.suppress(OSError):
                if get(port, PATH)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer 200 within 60 s; see {log}")
            time.sleep(0.2)
        yield port
    finally:
        kill_group(proc, grace=10)


def wait_router_up(port: int, env: dict[str, str]) -> None:
    """With replica_router, wait until (one worker's) router sees both nodes up."""
    if env["DJREPLICA_ROUTER"] != "ours":
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            status, body = get(port, "/status/")
            nodes = json.loads(body)["nodes"] if status == 200 else []
            if nodes and all(n["state"] == "up" for n in nodes):
                return
        time.sleep(0.2)
    raise RuntimeError("replica_router did not see both nodes up within 20 s")


def load(port: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, str(BENCH / "loadgen.py"),
        "--port", str(port), "--path", PATH, "--threads", str(CLIENTS),
        "--seconds", str(seconds), "--out", str(out),
    ]  # fmt: skip
    return subprocess.Popen(args, start_new_session=True)


def restore(cluster: LocalCluster) -> None:
    """Both nodes running, the standby streaming, and both answering as they should."""
    for node in ("primary", "standby"):
        cluster.sigcont(node)
    cluster.start("primary")
    cluster.start("standby", wait_streaming=True, timeout=60)
    if cluster.sql("primary", "SELECT pg_is_in_recovery()") != "f":
        raise RuntimeError("the primary does not answer as a primary")
    if cluster.sql("standby", "SELECT pg_is_in_recovery()") != "t":
        raise RuntimeError("the standby does not answer as a standby")


def read_records(path: Path) -> tuple[list[tuple[float, float, str, str]], int]:
    records = []
    stale = 0
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            stale = int(line.rsplit(":", 1)[1])
            continue
        start, duration, outcome, detail = line.split("\t")
        records.append((float(start), float(duration), outcome, detail))
    return records, stale


def run_one(
    cluster: LocalCluster, fault: str, conn_max_age: int, router: str, logs: Path
) -> Result:
    name = f"{fault}.cma{conn_max_age}.{router}"
    res = Result(fault, conn_max_age, router)
    res.log = str(logs / f"{name}.log")
    res.records = str(logs / f"{name}.tsv")
    _, inject, lift = FAULTS[fault]
    env = django_env(cluster, router, conn_max_age)
    with gunicorn(env, Path(res.log)) as port:
        wait_router_up(port, env)
        warm = load(port, WARMUP, logs / f"{name}.warmup.tsv")
        try:
            warm.wait(WARMUP + 40)
        finally:
            kill_group(warm, grace=1)
        loadgen = load(port, BEFORE + DURING + AFTER, Path(res.records))
        try:
            t0 = time.monotonic()
            time.sleep(BEFORE)
            res.fault_at, res.fault_wall = time.monotonic(), time.time()
            inject(cluster)
            res.fault_took = time.monotonic() - res.fault_at
            time.sleep(max(0.0, res.fault_at + DURING - time.monotonic()))
            res.lift_at = time.monotonic()
            lift(cluster)
            res.lift_took = time.monotonic() - res.lift_at
            loadgen.wait(BEFORE + DURING + AFTER + 60)
        finally:
            kill_group(loadgen, grace=1)
    records, res.stale_keepalive_retries = read_records(Path(res.records))
    summarize(res, records, t0)
    return res


def summarize(res: Result, records: list[tuple[float, float, str, str]], t0: float) -> None:
    res.requests = len(records)
    res.failed = sum(1 for r in records if r[2] != "200")
    res.stalled = sum(1 for r in records if r[1] > STALL)
    res.max_s = max((r[1] for r in records), default=0.0)
    ends_ok = [r[0] + r[1] for r in records if r[2] == "200"]
    before_from = max(res.fault_at - BEFORE, min((r[0] for r in records), default=t0))
    before = sum(1 for e in ends_ok if before_from <= e < res.fault_at)
    during = sum(1 for e in ends_ok if res.fault_at <= e < res.lift_at)
    res.rate_before = before / max(res.fault_at - before_from, 1e-9)
    res.rate_during = during / max(res.lift_at - res.fault_at, 1e-9)
    res.kept = res.rate_during / res.rate_before if res.rate_before else 0.0
    res.outcomes = dict(Counter(r[2] if r[2] == "200" else f"{r[2]} {r[3]}" for r in records))
    res.served_during_fault = dict(
        Counter(r[3] for r in records if r[2] == "200" and res.fault_at <= r[0] < res.lift_at)
    )
    seconds: dict[int, Counter[str]] = {}
    for start, duration, outcome, _ in records:
        sec = int((start + duration - res.fault_at) // 1)
        seconds.setdefault(sec, Counter())["ok" if outcome == "200" else "failed"] += 1
    res.per_second = [
        {"second_from_fault": s, "ok": c["ok"], "failed": c["failed"]}
        for s, c in sorted(seconds.items())
    ]


def table(results: list[Result]) -> str:
    lines = [
        "| fault | CONN_MAX_AGE | router | requests | failed | stalled > 2 s | max s | throughput kept |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {FAULTS[r.fault][0]} | {r.conn_max_age} | {ROUTERS[r.router][0]} | {r.requests} | "
            f"{r.failed} | {r.stalled} | {r.max_s:.2f} | {r.kept:.0%} |"
        )
    return "\n".join(lines)


def _names(raw: str, known: dict[str, object]) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
    return names


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--faults",
        type=lambda s: _names(s, dict(FAULTS)),
        default=list(FAULTS),
        help=f"comma-separated, of: {', '.join(FAULTS)} (default: all)",
    )
    parser.add_argument(
        "--routers",
        type=lambda s: _names(s, dict(ROUTERS)),
        default=list(ROUTERS),
        help=f"comma-separated, of: {', '.join(ROUTERS)} (default: all)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 60],
        help="comma-separated CONN_MAX_AGE values (default: 0,60)",
    )
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--logs", type=Path, help="directory for records and gunicorn logs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="rr-faults-", dir="/tmp"))
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[Result] = []
    with LocalCluster() as cluster:
        env = django_env(cluster, "backend", 0)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=EXAMPLE, env=env, check=True,
        )  # fmt: skip
        subprocess.run(
            [
                sys.executable, "manage.py", "shell", "-c",
                "from router.models import ReplicationModel as M; "
                "M.objects.create(name='faults', count=1, average=1.0)",
            ],
            cwd=EXAMPLE, env=env, check=True,
        )  # fmt: skip
        cluster.wait_replayed()
        for fault in args.faults:
            for cma in args.conn_max_age:
                for router in args.routers:
                    restore(cluster)
                    res = run_one(cluster, fault, cma, router, logs)
                    results.append(res)
                    print(
                        f"{fault} CONN_MAX_AGE={cma} {router}: {res.requests} requests, "
                        f"{res.failed} failed, {res.stalled} stalled, max {res.max_s:.2f} s, "
                        f"kept {res.kept:.0%}",
                        file=sys.stderr,
                        flush=True,
                    )
    elapsed = time.monotonic() - started
    print(
        f"\nFaults under HTTP load: gunicorn gthread {WORKERS} workers x {THREADS} threads, "
        f"{CLIENTS} keep-alive clients, GET {PATH}; fault at {BEFORE:g} s for {DURING:g} s, "
        f"then {AFTER:g} s. Router settings as the example's: PROBE_INTERVAL 1, PROBE_TIMEOUT 1, "
        f"FALL 2, RISE 2, replica WEIGHT 2, PRIMARY_READ_WEIGHT 1 "
        f"(Python {sys.version.split()[0]}; run took {elapsed / 60:.1f} min)\n"
    )
    print(table(results))
    print(f"\nrecords and gunicorn logs: {logs}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps({"elapsed_s": elapsed, "results": [asdict(r) for r in results]}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
