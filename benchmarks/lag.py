#!/usr/bin/env python
"""A lag spike on every standby under HTTP load: ``python benchmarks/lag.py`` (``make lag``).

One real primary + hot standby (``tests/pgcluster.py``). gunicorn serves the DJReplica
example like ``benchmarks/faults.py`` does (gthread, 2 workers x 4 threads, the
example's router settings: replica WEIGHT 2, PRIMARY_READ_WEIGHT 1, PROBE_INTERVAL 1,
FALL 2, RISE 2, health shared by the workers). A writer inserts a row into the
primary every 20 ms for the whole run (``date_created`` = the primary's clock).
``benchmarks/loadgen.py`` (8 keep-alive clients) sends ``GET /rows/?limit=1``: each
answer names the node that served it and the newest row that node had. After 5 s the
standby's replay is paused (``pg_wal_replay_pause()``) for 20 s, then resumed; the
load goes on 12 s more. A poller reads ``/status/`` every 100 ms for the standby's
state. Each setting runs in a fresh gunicorn:

* ``defaults``: no lag key set (MAX_LAG_SECONDS 5, MAX_LAG_BYTES 64 MiB,
  LAG_CEILING_SECONDS 10);
* ``ceiling-30``: ``LAG_CEILING_SECONDS`` 30 (the primary spared more, staler reads);
* ``no-ceiling``: ``LAG_CEILING_SECONDS`` None (every read to the primary at once);
* ``limits-off``: ``MAX_LAG_SECONDS`` and ``MAX_LAG_BYTES`` None (the old defaults).

Prints a Markdown table per phase (before, during the pause, after it): reads per
second, the primary's reads per second and share, the oldest data a standby served
(age of the newest row it had, at the end of each read) and how many of its reads
served data older than 5 s, failed reads; and when the standby left weighted reads
(first poll not ``up``) and was back (first poll ``up`` after the resume). ``--json PATH`` writes the numbers.

    python benchmarks/lag.py --runs defaults,no-ceiling
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import faults  # benchmarks/faults.py: gunicorn, environment, cluster restore
from faults import EXAMPLE, django_env, get, gunicorn, kill_group, restore
from pgcluster import LocalCluster

BEFORE, PAUSE, AFTER = 5.0, 20.0, 12.0
WRITE_EVERY = 0.02
PATH = "/rows/?limit=1"
#: Data older than this (the default MAX_LAG_SECONDS) counts as stale in the table.
STALE_S = 5.0

RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "defaults": ("defaults (limit 5 s, ceiling 10 s)", {}),
    "ceiling-30": ("LAG_CEILING_SECONDS 30", {"DJREPLICA_LAG_CEILING_SECONDS": "30"}),
    "no-ceiling": ("LAG_CEILING_SECONDS None", {"DJREPLICA_LAG_CEILING_SECONDS": "none"}),
    "limits-off": (
        "MAX_LAG_* None (old defaults)",
        {"DJREPLICA_MAX_LAG_SECONDS": "none", "DJREPLICA_MAX_LAG_BYTES": "none"},
    ),
}
PHASES = ("before", "during", "after")


@dataclass
class Phase:
    seconds: float = 0.0
    reads: int = 0
    primary: int = 0
    failed: int = 0
    oldest_standby_s: float | None = None
    #: Reads a standby served with data older than the default MAX_LAG_SECONDS.
    standby_over_5s: int = 0

    @property
    def rate(self) -> float:
        return self.reads / self.seconds if self.seconds else 0.0

    @property
    def primary_rate(self) -> float:
        return self.primary / self.seconds if self.seconds else 0.0


@dataclass
class Result:
    run: str
    phases: dict[str, Phase] = field(default_factory=dict)
    #: Seconds from the pause until the first poll saw the standby out of reads.
    left_after_s: float | None = None
    #: Seconds from the resume until the first poll saw it up again.
    back_after_s: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)
    rows_written: int = 0
    records: str = ""
    log: str = ""


class Writer(threading.Thread):
    """Inserts a row on the primary every ``WRITE_EVERY`` seconds until stopped."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(name="lag-writer", daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg

        d = self.cluster.dsn("primary")
        try:
            with psycopg.connect(
                host=d["HOST"],
                port=int(d["PORT"]),
                dbname=d["NAME"],
                user=d["USER"],
                password=d["PASSWORD"],
                autocommit=True,
            ) as conn:
                while not self.stop.wait(WRITE_EVERY):
                    conn.execute(
                        "INSERT INTO router_replicationmodel "
                        "(name, count, is_available, average, date_created) "
                        "VALUES ('lag', %s, true, 0, clock_timestamp())",
                        (self.rows,),
                    )
                    self.rows += 1
        except BaseException as exc:  # reported by the driver
            self.error = exc


class Poller(threading.Thread):
    """The standby's state as gunicorn's workers see it, every 100 ms."""

    def __init__(self, port: int) -> None:
        super().__init__(name="lag-poller", daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.states: list[tuple[float, str]] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                status, body = get(self.port, "/status/", timeout=2)
                nodes = json.loads(body)["nodes"] if status == 200 else []
            except (OSError, ValueError):
                continue
            for n in nodes:
                if n["alias"] == "replica":
                    self.states.append((time.monotonic(), str(n["state"])))


def run_one(cluster: LocalCluster, run: str, logs: Path) -> Result:
    res = Result(run, log=str(logs / f"{run}.log"), records=str(logs / f"{run}.tsv"))
    env = django_env(cluster, "backend", 0)
    env.update(RUNS[run][1])
    writer = Writer(cluster)
    writer.start()
    try:
        with gunicorn(env, Path(res.log)) as port:
            faults.wait_router_up(port, env)
            poller = Poller(port)
            poller.start()
            args = [
                sys.executable, str(faults.BENCH / "loadgen.py"), "--port", str(port),
                "--path", PATH, "--threads", str(faults.CLIENTS),
                "--seconds", str(BEFORE + PAUSE + AFTER), "--out", res.records,
                "--row-field", "date_created",
            ]  # fmt: skip
            loadgen = subprocess.Popen(args, start_new_session=True)
            try:
                start = time.monotonic()
                time.sleep(BEFORE)
                paused_at = time.monotonic()
                cluster.pause_replay()
                time.sleep(max(0.0, paused_at + PAUSE - time.monotonic()))
                resumed_at = time.monotonic()
                cluster.resume_replay()
                loadgen.wait(AFTER + 60)
            finally:
                kill_group(loadgen, grace=1)
                poller.stop.set()
                poller.join(5)
    finally:
        writer.stop.set()
        writer.join(10)
    if writer.error is not None:
        raise RuntimeError(f"the writer failed: {writer.error!r}")
    res.rows_written = writer.rows
    res.states = [(t - paused_at, s) for t, s in poller.states]
    res.left_after_s = next((t for t, s in res.states if t >= 0 and s != "up"), None)
    back = [t for t, s in res.states if t >= PAUSE and s == "up"]
    res.back_after_s = back[0] - (resumed_at - paused_at) if back else None
    summarize(res, Path(res.records), start, paused_at, resumed_at)
    return res


def summarize(res: Result, path: Path, start: float, paused: float, resumed: float) -> None:
    # loadgen's times are time.monotonic(); the rows' are wall clock.
    offset = time.time() - time.monotonic()
    bounds = {"before": (start, paused), "during": (paused, resumed), "after": (resumed, None)}
    ends = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        t, duration, outcome, db, created = [*line.split("\t"), ""][:5]
        ends.append((float(t) + float(duration), outcome, db, created))
    last = max((e[0] for e in ends), default=resumed)
    for name, (lo, upto) in bounds.items():
        hi = last + 1e-6 if upto is None else upto
        p = Phase(seconds=max(hi - lo, 1e-9))
        for end, outcome, db, created in ends:
            if not lo <= end < hi:
                continue
            if outcome != "200":
                p.failed += 1
                continue
            p.reads += 1
            if db == "default":
                p.primary += 1
            elif created:
                age = end + offset - datetime.fromisoformat(created).timestamp()
                p.oldest_standby_s = max(p.oldest_standby_s or 0.0, age)
                p.standby_over_5s += age > STALE_S
        res.phases[name] = p


def table(results: list[Result]) -> str:
    lines = [
        "| setting | phase | reads/s | primary reads/s | primary share | oldest data from "
        f"standby | standby reads > {STALE_S:g} s old | failed | standby left reads | "
        "standby back |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name in PHASES:
            p = r.phases[name]
            share = p.primary / p.reads if p.reads else 0.0
            oldest = "-" if p.oldest_standby_s is None else f"{p.oldest_standby_s:.2f} s"
            left = back = ""
            if name == "during":
                left = "never" if r.left_after_s is None else f"{r.left_after_s:.1f} s after pause"
            if name == "after":
                back = "-" if r.back_after_s is None else f"{r.back_after_s:.1f} s after resume"
            lines.append(
                f"| {RUNS[r.run][0]} | {name} | {p.rate:.0f} | {p.primary_rate:.0f} | "
                f"{share:.0%} | {oldest} | {p.standby_over_5s} | {p.failed} | {left} | {back} |"
            )
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs",
        type=lambda s: [n for n in s.split(",") if n],
        default=list(RUNS),
        help=f"comma-separated, of: {', '.join(RUNS)} (default: all)",
    )
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--logs", type=Path, help="directory for records and gunicorn logs")
    args = parser.parse_args(argv)
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    signal.signal(signal.SIGTERM, _terminate)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="rr-lag-", dir="/tmp"))
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[Result] = []
    with LocalCluster() as cluster:
        env = django_env(cluster, "backend", 0)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=EXAMPLE, env=env, check=True,
        )  # fmt: skip
        for run in args.runs:
            restore(cluster)
            cluster.resume_replay()
            cluster.wait_replayed()
            res = run_one(cluster, run, logs)
            results.append(res)
            print(f"{run}: done ({res.rows_written} rows written)", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(
        f"\nLag spike under HTTP load: gunicorn gthread {faults.WORKERS} workers x "
        f"{faults.THREADS} threads, {faults.CLIENTS} keep-alive clients, GET {PATH}; a row "
        f"written every {WRITE_EVERY * 1000:.0f} ms; standby replay paused at {BEFORE:g} s for "
        f"{PAUSE:g} s, then {AFTER:g} s more. Example settings: replica WEIGHT 2, "
        f"PRIMARY_READ_WEIGHT 1, PROBE_INTERVAL 1, FALL 2, RISE 2 "
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
