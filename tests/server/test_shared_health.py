"""One prober per host (``SHARE_HEALTH``): gunicorn workers elect one prober and
follow its health through shared memory; a dead prober is replaced within an
interval; a corrupt, foreign or unreachable segment is never trusted.

The gunicorn tests serve the example project (``tests/gunicorn_pool.py``) with a
share directory of their own. They stop ``replica_router`` in this process first,
so that every ``replica_router probe`` backend on the servers is a worker's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gunicorn_pool import Pool, probe_backends, watch_workers
from tests.support import LocalCluster, wait_until

measure = logging.getLogger("tests.measure")
measure.setLevel(logging.INFO)

#: The workers' probing (slower than the suite's: many processes, a 2-core machine).
G_INTERVAL = 0.2
G_TIMEOUT = 0.5
G_WINDOW = 2 * G_INTERVAL + G_TIMEOUT
#: Extra time on top of protocol bounds: the machine is shared and slow.
SLACK = 2.0


@pytest.fixture
def share_dir(tmp_path: Path) -> Path:
    d = tmp_path / "share"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    return d


@pytest.fixture
def pool_factory(healthy: LocalCluster, tmp_path: Path, share_dir: Path) -> Iterator[Any]:
    from replica_router import _runtime

    # Only the workers probe: every probe backend on the servers is theirs.
    _runtime.reset()
    pools: list[Pool] = []

    def make(workers: int, share: bool = True) -> Pool:
        p = Pool(
            healthy,
            workers,
            tmp_path / f"g{len(pools)}",
            share=share,
            interval=G_INTERVAL,
            timeout=G_TIMEOUT,
            share_dir=share_dir,
        )
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.stop()
        for marker in ("panicked", "Traceback"):
            assert marker not in p.log(), p.log()[-3000:]


def wait_backends(cluster: LocalCluster, want: int, timeout: float = 15) -> dict[str, int]:
    """Waits until each node has ``want`` probe backends (closed ones take a moment to
    go); returns the counts seen last."""
    seen: dict[str, int] = {}

    def ok() -> bool:
        seen.update({n: probe_backends(cluster, n) for n in ("primary", "standby")})
        return set(seen.values()) == {want}

    try:
        wait_until(ok, timeout, interval=0.1)
    except AssertionError:
        pass
    return seen


def replica_out(data: dict[str, Any]) -> bool:
    node = {n["alias"]: n for n in data["nodes"]}["replica"]
    return node["state"] != "up" and data.get("routed") == ["default"]


def test_workers_share_one_prober(pool_factory: Any, healthy: LocalCluster) -> None:
    """gunicorn -w 4: one probe backend per node, every worker follows the same
    prober (one of them), and its snapshot is younger than an interval or two."""
    pool = pool_factory(4)
    seen = pool.wait_ready()
    probers = {n["prober_pid"] for d in seen.values() for n in d["nodes"]}
    assert len(probers) == 1 and probers <= set(seen), seen
    for d in seen.values():
        for n in d["nodes"]:
            assert n["shared"] is True, n
            assert n["snapshot_age"] is not None and n["snapshot_age"] < 2 * G_INTERVAL + SLACK
    counts = wait_backends(healthy, 1)
    measure.info("probe backends with 4 workers sharing: %s", counts)
    assert counts == {"primary": 1, "standby": 1}, counts


def test_share_health_false_probes_in_every_worker(
    pool_factory: Any, healthy: LocalCluster
) -> None:
    """``SHARE_HEALTH: False``: today's behaviour, one prober (and backend) per worker."""
    pool = pool_factory(3, share=False)
    seen = pool.wait_ready()
    for pid, d in seen.items():
        for n in d["nodes"]:
            assert n["shared"] is False and n["prober_pid"] == pid, n
    counts = wait_backends(healthy, 3)
    assert counts == {"primary": 3, "standby": 3}, counts


def test_stopped_standby_leaves_every_worker(pool_factory: Any, healthy: LocalCluster) -> None:
    """The standby stops: every worker's reads leave it within the detection window
    (plus the followers' poll and slack)."""
    pool = pool_factory(4)
    pool.wait_ready()
    healthy.stop("standby")
    times, last = watch_workers(pool, replica_out, timeout=G_WINDOW + 3 * SLACK)
    measure.info("stopped standby left reads of workers after %s", times)
    assert set(times) == pool.worker_pids(), (times, last)
    assert max(times.values()) < G_WINDOW + SLACK, times


def test_sigkill_of_the_prober_hands_over(pool_factory: Any, healthy: LocalCluster) -> None:
    """SIGKILL of the probing worker: another worker takes over within PROBE_INTERVAL
    + PROBE_TIMEOUT (+ slack), still one backend per node, and detection still works."""
    pool = pool_factory(4)
    seen = pool.wait_ready()
    leader = next(iter(seen.values()))["nodes"][0]["prober_pid"]
    os.kill(leader, signal.SIGKILL)
    killed = time.monotonic()

    def new_prober(data: dict[str, Any]) -> bool:
        n = data["nodes"][0]
        age = n["snapshot_age"]
        return n["prober_pid"] != leader and age is not None and age < G_INTERVAL + G_TIMEOUT

    took: float | None = None
    while time.monotonic() - killed < 10:
        data = pool.get()
        if data is not None and new_prober(data):
            took = time.monotonic() - killed
            break
        time.sleep(0.005)
    measure.info("takeover after SIGKILL of the prober: %s s", took)
    assert took is not None and took < G_INTERVAL + G_TIMEOUT + SLACK, took
    pool.wait_ready()
    assert wait_backends(healthy, 1) == {"primary": 1, "standby": 1}
    healthy.stop("standby")
    times, last = watch_workers(pool, replica_out, timeout=G_WINDOW + 3 * SLACK)
    assert set(times) == pool.worker_pids(), (times, last)
    assert max(times.values()) < G_WINDOW + SLACK, times


FOLLOWER = """
import json, os, sys, time
from replica_router import _core

s = _core.RouterSettings(json.loads(os.environ["RR_ROUTER"]), json.loads(os.environ["RR_DBS"]))
c = _core.Cluster(s)
c.start()
deadline = time.monotonic() + 10
events = []
while time.monotonic() < deadline:
    events += c.wait_events(0.05)
    st = c.status()
    if all(n["state"] == "up" for n in st):
        break
events += c.wait_events(0.3)
st = c.status()
reported = None
if os.environ.get("RR_REPORT"):
    node = int(os.environ["RR_REPORT_NODE"]) if os.environ.get("RR_REPORT_NODE") else None
    reported = {
        "was_in_reads": c.report_failure("replica", None, "connection refused", node)[1],
        "reads_right_after": sorted({c.read() for _ in range(200)}),
    }
    time.sleep(1.0)
print(json.dumps({"pid": os.getpid(), "status": st, "events": events, "reported": reported,
                  "reads": sorted({c.read() for _ in range(200)})}))
"""


def run_follower(
    cluster: LocalCluster,
    share_dir: Path,
    report: bool = False,
    dbs: dict[str, Any] | None = None,
    node: int | None = None,
) -> dict[str, Any]:
    """Runs ``FOLLOWER`` on ``dbs`` (default: ``default`` and ``replica`` on the
    cluster's two servers); ``report``: it reports a refused connection of
    ``replica`` (on node ``node``, default where ``replica`` connects now)."""
    from tests.support import ROUTER_SETTINGS

    if dbs is None:
        dbs = {"default": cluster.dsn("primary"), "replica": cluster.dsn("standby")}
    env = {
        **os.environ,
        "RR_ROUTER": json.dumps(ROUTER_SETTINGS),
        "RR_DBS": json.dumps(dbs),
        "REPLICA_ROUTER_SHARE_DIR": str(share_dir),
        "RR_REPORT": "1" if report else "",
        "RR_REPORT_NODE": "" if node is None else str(node),
    }
    out = subprocess.run(
        [sys.executable, "-c", FOLLOWER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


@pytest.fixture
def lead_here(healthy: LocalCluster, share_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process leads in ``share_dir``; returns the segment's path."""
    import replica_router
    from replica_router import _runtime

    monkeypatch.setenv("REPLICA_ROUTER_SHARE_DIR", str(share_dir))
    _runtime.reset()
    wait_until(lambda: all(n["state"] == "up" for n in replica_router.status()), 10)
    assert replica_router.status()[0]["shared"] is True
    (shm,) = share_dir.glob("*.shm")
    return shm


@pytest.mark.parametrize("damage", ["garbage", "mode"])
def test_corrupt_or_foreign_segment_is_ignored(
    lead_here: Path, healthy: LocalCluster, share_dir: Path, damage: str
) -> None:
    """A segment with garbage in it (while another process holds the lock), or with
    group/other permissions, is never trusted: a warning, and own probing."""
    from replica_router import _runtime

    _runtime.reset()  # this process stops leading; the files stay
    lock_path = lead_here.with_suffix(".lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'r+');"
            # The election byte only (byte 1 says "in use", held shared by users).
            " fcntl.lockf(f, fcntl.LOCK_EX, 1, 0); print('locked', flush=True); time.sleep(60)",
            str(lock_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        if damage == "garbage":
            size = lead_here.stat().st_size
            lead_here.write_bytes(os.urandom(size))
        else:
            lead_here.chmod(0o644)
        report = run_follower(healthy, share_dir)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    warnings = [e for e in report["events"] if e[0] == logging.WARNING and "shared health" in e[1]]
    assert warnings, report["events"]
    for n in report["status"]:
        assert n["shared"] is False and n["prober_pid"] == report["pid"], n
        assert n["state"] == "up", n
    assert report["reads"] == ["default", "replica"], report


def test_another_user_cannot_use_the_segment(lead_here: Path, healthy: LocalCluster) -> None:
    """A process of another OS user (a forked child that became ``nobody``) cannot
    open our segment (EACCES) and probes on its own; ours keeps leading."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    import pwd

    import replica_router
    from replica_router import _core, _runtime
    from tests.server.test_fork import run_in_child

    nobody = pwd.getpwnam("nobody")
    settings = _runtime.get_settings()

    def child(_: float) -> dict[str, Any]:
        # The inherited router restarted in this child (as root, following us): stop
        # it, so that the cluster below is the only one with this configuration.
        _runtime.reset()
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        try:
            os.close(os.open(lead_here, os.O_RDWR))
            opened = "ok"
        except OSError as e:
            opened = type(e).__name__
        c = _core.Cluster(settings)
        c.start()
        events: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(n["state"] != "up" for n in c.status()):
            events += c.wait_events(0.05)
        events += c.wait_events(0.2)
        st = c.status()
        c.close()
        return {"opened": opened, "pid": os.getpid(), "status": st, "events": events}

    report = run_in_child(child, timeout=30)
    assert report["opened"] == "PermissionError", report
    assert any("shared health is off" in e[1] for e in report["events"]), report["events"]
    for n in report["status"]:
        assert n["shared"] is False and n["prober_pid"] == report["pid"], n
        assert n["state"] == "up", n
    mine = replica_router.status()
    assert all(n["shared"] and n["prober_pid"] == os.getpid() for n in mine), mine


def test_follower_process_reads_the_leaders_health(
    lead_here: Path, healthy: LocalCluster, share_dir: Path
) -> None:
    """A second process with the same settings follows this one: same prober pid,
    every node up, reads on both nodes."""
    report = run_follower(healthy, share_dir)
    for n in report["status"]:
        assert n["shared"] is True and n["prober_pid"] == os.getpid(), n
        assert n["state"] == "up", n
    assert report["reads"] == ["default", "replica"], report


def test_passive_fault_in_a_follower_reaches_the_leader(
    lead_here: Path, healthy: LocalCluster, share_dir: Path
) -> None:
    """``report_failure`` in a follower takes the node out of its reads at once, and the
    leader (this process) applies it (passive fault counted, node re-probed)."""
    import replica_router

    before = {n["alias"]: n["passive_faults"] for n in replica_router.status()}
    report = run_follower(healthy, share_dir, report=True)
    assert report["reported"]["was_in_reads"] is True, report
    assert report["reported"]["reads_right_after"] == ["default"], report
    after = {n["alias"]: n["passive_faults"] for n in replica_router.status()}
    assert after["replica"] == before["replica"] + 1, (before, after)
    assert after["default"] == before["default"]
