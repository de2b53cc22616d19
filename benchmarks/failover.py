#!/usr/bin/env python
"""Writes through a switchover and a failover: ``python benchmarks/failover.py`` (``make failover``).

A 3-node Patroni 4.1 + etcd cluster on loopback (``tests/patronicluster.py``, one for the
whole run; node1 leads at the start of every run). gunicorn (``gthread``, 2 workers x 4
threads) serves the DJReplica example with the settings of one setup
(``benchmarks/failover_settings.py``); ``benchmarks/failover_load.py`` sends 8 keep-alive
clients' requests, a quarter of them writes (each a new row), for ``BEFORE + AFTER``
seconds. ``BEFORE`` seconds in, the event:

* ``switchover``: ``POST /switchover`` to Patroni's REST API, node1 -> node2;
* ``failover``: SIGKILL of node1's Patroni and postmaster, then its leader key deleted
  in etcd (the replicas elect at once instead of after the ttl).

Setups (``--setups``): ``ours-static`` (this router + its backend, ``default`` = node1,
``replica`` and ``replica2`` = the others, today's aliases), ``ours-multihost`` (libpq
multi-host aliases: ``default`` with ``target_session_attrs=read-write``, ``replica`` with
``prefer-standby``), ``haproxy-fast-ours`` / ``haproxy-fast-tutorial`` (HAProxy with
Patroni's checks at ``inter 1s fall 2 rise 1``, this router or the tutorial's),
``haproxy-doc-ours`` / ``haproxy-doc-tutorial`` (Patroni's documented ``inter 3s fall 3
rise 2``), ``tutorial-multihost`` (the tutorial's router on multi-host aliases),
``ours-static-patroni`` / ``ours-multihost-patroni`` (this router with ``PATRONI_URLS``:
writes only to the node Patroni calls leader).

Per run: requests, failed reads, failed writes, write outage (event until writes succeed
and keep succeeding), Patroni's promotion time (event until the new leader answers ``GET
/primary`` 200) and acknowledged writes (201) missing on the final primary. Prints a
Markdown table; ``--json PATH`` writes the raw numbers; records and logs stay in
``--logs``.

    python benchmarks/failover.py --events failover --setups ours-static --conn-max-age 0
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
EXAMPLE = ROOT / "example_project"
sys.path[:0] = [str(ROOT), str(BENCH), str(EXAMPLE)]

from failover_report import Result, summarize, table  # noqa: E402
from faults import _terminate, get, gunicorn, kill_group  # noqa: E402

from tests.haproxybed import CHECKS, HAProxy  # noqa: E402
from tests.patronicluster import NAMES, PatroniCluster  # noqa: E402

BEFORE, AFTER, WARMUP = 3.0, 15.0, 2.0
WORKERS, THREADS, CLIENTS, WRITE_SHARE = 2, 4, 8, 0.25
BACKEND = "replica_router.backends.postgresql"
DJANGO = "django.db.backends.postgresql"

#: name -> (label, router, engine, aliases: "static" | "multihost" | HAProxy check key)
SETUPS: dict[str, tuple[str, str, str, str]] = {
    "ours-static": ("this router, today's aliases", "ours", BACKEND, "static"),
    "ours-multihost": ("this router, multi-host aliases", "ours", BACKEND, "multihost"),
    "haproxy-fast-ours": ("HAProxy inter 1s fall 2 rise 1 + this router", "ours", BACKEND, "fast"),
    "haproxy-fast-tutorial": (
        "HAProxy inter 1s fall 2 rise 1 + tutorial router", "tutorial", DJANGO, "fast"
    ),
    "haproxy-doc-ours": (
        "HAProxy inter 3s fall 3 rise 2 + this router", "ours", BACKEND, "documented"
    ),
    "haproxy-doc-tutorial": (
        "HAProxy inter 3s fall 3 rise 2 + tutorial router", "tutorial", DJANGO, "documented"
    ),
    "tutorial-multihost": ("tutorial router, multi-host aliases", "tutorial", DJANGO, "multihost"),
    "ours-static-patroni": (
        "this router, today's aliases, PATRONI_URLS", "ours", BACKEND, "static"
    ),
    "ours-multihost-patroni": (
        "this router, multi-host aliases, PATRONI_URLS", "ours", BACKEND, "multihost"
    ),
}  # fmt: skip
#: Setups whose router also polls Patroni (``PATRONI_URLS``: every node's REST API).
PATRONI_SETUPS = {"ours-static-patroni", "ours-multihost-patroni"}
EVENTS = ("switchover", "failover")


def databases(
    bed: PatroniCluster, setup: str, cma: int, proxy: HAProxy | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``DATABASES`` and ``REPLICA_ROUTER`` changes of one setup."""
    _, _, engine, aliases = SETUPS[setup]
    replica_settings: dict[str, Any] = {"WEIGHT": 2}
    if aliases == "static":
        dbs: dict[str, dict[str, Any]] = {
            "default": bed.dsn("node1"),
            "replica": bed.dsn("node2"),
            "replica2": bed.dsn("node3"),
        }
        router: dict[str, Any] = {
            "REPLICAS": {"replica": replica_settings, "replica2": replica_settings}
        }
    elif aliases == "multihost":
        dbs = {
            "default": bed.multi_host_dsn("read-write"),
            "replica": bed.multi_host_dsn("prefer-standby"),
        }
        router = {"REPLICAS": {"replica": replica_settings}}
    else:
        if proxy is None:
            raise RuntimeError(f"{setup} needs HAProxy")
        dbs = {
            "default": {**bed.dsn("node1"), "PORT": str(proxy.primary_port)},
            "replica": {**bed.dsn("node1"), "PORT": str(proxy.replicas_port)},
        }
        router = {"REPLICAS": {"replica": replica_settings}}
    if setup in PATRONI_SETUPS:
        router["PATRONI_URLS"] = [bed.rest_url(n) for n in NAMES]
    for entry in dbs.values():
        entry["ENGINE"] = engine
        entry["CONN_MAX_AGE"] = cma
    return dbs, router


def django_env(setup: str, dbs: dict[str, Any], router: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJREPLICA_", "PG", "RR_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="failover_settings",
        DJREPLICA_ROUTER=SETUPS[setup][1],
        DJREPLICA_DEBUG="0",
        RR_FAILOVER_DATABASES=json.dumps(dbs),
        RR_FAILOVER_REPLICA_ROUTER=json.dumps(router),
        PYTHONPATH=os.pathsep.join([str(EXAMPLE), str(BENCH)]),
    )
    if os.environ.get("REPLICA_ROUTER_SHARE_DIR"):
        env["REPLICA_ROUTER_SHARE_DIR"] = os.environ["REPLICA_ROUTER_SHARE_DIR"]
    return env


def wait_router_up(port: int, env: dict[str, str], timeout: float = 30) -> None:
    """With this router, wait until (one worker's) router sees every node up and one primary."""
    if env["DJREPLICA_ROUTER"] != "ours":
        return
    deadline = time.monotonic() + timeout
    nodes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            status, body = get(port, "/status/")
            nodes = json.loads(body)["nodes"] if status == 200 else []
        except (OSError, ValueError):
            nodes = []
        if nodes and all(n.get("state") == "up" for n in nodes):
            return
        time.sleep(0.2)
    raise RuntimeError(f"replica_router did not see every node up within {timeout:g} s: {nodes}")


def load(port: int, seconds: float, run_id: int, out: Path) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, str(BENCH / "failover_load.py"), "--port", str(port),
        "--threads", str(CLIENTS), "--seconds", str(seconds), "--run-id", str(run_id),
        "--write-share", str(WRITE_SHARE), "--out", str(out),
    ]  # fmt: skip
    return subprocess.Popen(args, start_new_session=True)


def fire(bed: PatroniCluster, event: str, res: Result) -> threading.Thread:
    """Start the event (the REST call blocks, so it runs in a thread) and record when."""
    errors: list[BaseException] = []

    def act() -> None:
        try:
            if event == "switchover":
                bed.switchover("node2", "node1")
            else:
                bed.failover("node1")
        except BaseException as exc:  # reported in the result, the run goes on
            errors.append(exc)
            res.notes.append(f"event failed: {exc}")

    res.event_at, res.event_wall = time.monotonic(), time.time()
    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def acked_missing(bed: PatroniCluster, res: Result, acked: list[str]) -> None:
    """Which acknowledged writes of this run the final primary lacks."""
    deadline = time.monotonic() + 60
    leader = bed.leader()
    while leader is None and time.monotonic() < deadline:
        time.sleep(0.2)
        leader = bed.leader()
    if leader is None:
        res.notes.append("no leader at the end: acknowledged writes not checked")
        return
    res.final_primary = leader
    rows = bed.sql(
        leader, f"SELECT name FROM router_replicationmodel WHERE count = {res.run_id}"
    ).split()
    missing = sorted(set(acked) - set(rows))
    res.acked_missing = len(missing)
    res.missing_names = missing[:20]


def run_one(
    bed: PatroniCluster, event: str, cma: int, setup: str, run_id: int, logs: Path
) -> Result:
    name = f"{event}.cma{cma}.{setup}"
    res = Result(event, cma, setup, run_id)
    res.log, res.records = str(logs / f"{name}.log"), str(logs / f"{name}.tsv")
    bed.restore("node1")
    checks = SETUPS[setup][3]
    proxy = HAProxy(bed, CHECKS[checks]) if checks in CHECKS else None
    try:
        if proxy is not None:
            proxy.start()
        dbs, router = databases(bed, setup, cma, proxy)
        env = django_env(setup, dbs, router)
        with gunicorn(env, Path(res.log)) as port:
            wait_router_up(port, env)
            warm = load(port, WARMUP, 0, logs / f"{name}.warmup.tsv")
            try:
                warm.wait(WARMUP + 60)
            finally:
                kill_group(warm, grace=1)
            loadgen = load(port, BEFORE + AFTER, run_id, Path(res.records))
            try:
                t0 = time.monotonic()
                time.sleep(BEFORE)
                thread = fire(bed, event, res)
                try:
                    res.new_primary, res.promotion_s = bed.wait_new_primary(
                        "node1", res.event_at, timeout=BEFORE + AFTER
                    )
                except Exception as exc:
                    res.notes.append(str(exc))
                thread.join(60)
                loadgen.wait(BEFORE + AFTER + 90)
            finally:
                kill_group(loadgen, grace=1)
    finally:
        if proxy is not None:
            proxy.stop()
    acked = summarize(res, Path(res.records), Path(res.log), t0)
    acked_missing(bed, res, acked)
    return res


def resummarize(path: Path) -> int:
    """Print the table of an earlier run from its records and logs (``--from-json``)."""
    saved = json.loads(path.read_text())
    results = []
    for raw in saved["results"]:
        res = Result(**{k: v for k, v in raw.items() if k in Result.__dataclass_fields__})
        if not res.run_error:
            summarize(res, Path(res.records), Path(res.log), 0.0)
        results.append(res)
    print(f"(from {path}; the run took {saved['elapsed_s'] / 60:.1f} min)\n")
    print(table(results, {k: v[0] for k, v in SETUPS.items()}))
    return 0


def _names(raw: str, known: Any) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=lambda s: _names(s, EVENTS), default=list(EVENTS),
                        help=f"comma-separated, of: {', '.join(EVENTS)} (default: both)")  # fmt: skip
    parser.add_argument("--setups", type=lambda s: _names(s, SETUPS), default=list(SETUPS),
                        help=f"comma-separated, of: {', '.join(SETUPS)} (default: all)")  # fmt: skip
    parser.add_argument(
        "--conn-max-age",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 60],
        help="comma-separated CONN_MAX_AGE values (default: 0,60)",
    )
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    parser.add_argument("--logs", type=Path, help="directory for records and gunicorn logs")
    parser.add_argument(
        "--from-json", type=Path, help="no run: summarize the records of an earlier --json again"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        return resummarize(args.from_json)
    signal.signal(signal.SIGTERM, _terminate)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="rr-failover-", dir="/tmp"))
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[Result] = []
    with PatroniCluster() as bed:
        dbs, router = databases(bed, "ours-static", 0, None)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=EXAMPLE, env=django_env("ours-static", dbs, router), check=True,
        )  # fmt: skip
        run_id = 0
        for event in args.events:
            for cma in args.conn_max_age:
                for setup in args.setups:
                    run_id += 1
                    try:
                        res = run_one(bed, event, cma, setup, run_id, logs)
                    except Exception as exc:  # one setup that cannot run spoils no other
                        res = Result(event, cma, setup, run_id, run_error=str(exc))
                    results.append(res)
                    print(res.line(), file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(
        f"\nWrites through a Patroni switchover and failover: 3 nodes (Patroni 4.1, etcd 3.4, "
        f"PostgreSQL, loopback), gunicorn gthread {WORKERS}x{THREADS}, {CLIENTS} keep-alive "
        f"clients, {WRITE_SHARE:.0%} writes (each a new row); event at {BEFORE:g} s, then "
        f"{AFTER:g} s. This router at the example's settings (PROBE_INTERVAL 1, PROBE_TIMEOUT 1, "
        f"FALL 2, RISE 2). Python {sys.version.split()[0]}; run took {elapsed / 60:.1f} min.\n"
    )
    print(table(results, {k: v[0] for k, v in SETUPS.items()}))
    print(f"\nrecords and gunicorn logs: {logs}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps({"elapsed_s": elapsed, "results": [asdict(r) for r in results]}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
