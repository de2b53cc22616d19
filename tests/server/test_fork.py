"""Fork safety: a child never routes by the state it inherited, and probes on its own.

Threads do not survive ``fork()``: the parent's prober is gone in the child. These
tests fork after the router has been used (plain ``os.fork``, a ``multiprocessing``
pool with the fork start method, ``gunicorn --preload``) and check from inside each
child that its ``status()`` is fed by fresh probes of its own and that its reads
follow its own view of the cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import router
from django.test import override_settings
from router.models import ReplicationModel

import replica_router
from tests.support import INTERVAL, ROUTER_SETTINGS, WINDOW, LocalCluster, states, wait_all_up

#: Extra time allowed on top of the protocol bound: the machine is shared and slow.
SLACK = 1.0
#: A probe must be newer than this to count as live probing.
FRESH = 2 * INTERVAL + SLACK

measure = logging.getLogger("tests.measure")
measure.setLevel(logging.INFO)

# Python >= 3.12 warns when a process with threads forks; forking one is the point.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")


def ages() -> dict[str, float | None]:
    """``last_good_probe_age`` of every node."""
    return {n["alias"]: n["last_good_probe_age"] for n in replica_router.status()}


def wait_fresh(limit: float, timeout: float) -> tuple[float, dict[str, float | None]]:
    """Polls until every node's last good probe is younger than ``limit``; returns the
    seconds it took and the ages seen last (which may miss the mark on timeout)."""
    start = time.monotonic()
    while True:
        seen = ages()
        if all(a is not None and a < limit for a in seen.values()):
            return time.monotonic() - start, seen
        if time.monotonic() - start > timeout:
            return time.monotonic() - start, seen
        time.sleep(0.005)


def read_aliases(count: int = 200) -> list[str]:
    return [router.db_for_read(ReplicationModel) for _ in range(count)]


def run_in_child(body: Callable[[float], dict[str, Any]], timeout: float = 20) -> dict[str, Any]:
    """Forks; the child runs ``body(time of fork)`` and sends back its JSON result
    through a pipe, then leaves with ``os._exit`` (never returning into pytest)."""
    r, w = os.pipe()
    forked_at = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            try:
                result = body(forked_at)
                code = 0
            except BaseException as exc:
                result = {"error": repr(exc)}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"child {pid} did not report within {timeout}s")
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        os.close(r)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


def test_child_of_fork_probes_on_its_own_and_routes_normally(healthy: LocalCluster) -> None:
    """After ``os.fork()`` in a process that has routed reads, the child's ``status()``
    shows probes newer than two intervals for every node within two intervals (plus
    slack), and its reads are spread over both nodes as usual."""
    wait_all_up()
    assert set(read_aliases()) == {"default", "replica"}

    def child(forked_at: float) -> dict[str, Any]:
        _, seen = wait_fresh(2 * INTERVAL, timeout=5)
        return {
            "fresh_after": time.monotonic() - forked_at,
            "ages": seen,
            "states": states(),
            "aliases": sorted(set(read_aliases())),
            "pid": os.getpid(),
        }

    report = run_in_child(child)
    measure.info("os.fork child: %s", report)
    assert "error" not in report, report
    assert report["pid"] != os.getpid()
    assert report["fresh_after"] < FRESH, report
    assert all(a is not None and a < FRESH for a in report["ages"].values()), report
    assert report["states"] == {"default": "up", "replica": "up"}, report
    assert report["aliases"] == ["default", "replica"], report
    # The parent goes on probing as before.
    assert all(a is not None and a < FRESH for a in ages().values()), ages()


@pytest.fixture
def solo_probing(healthy: LocalCluster) -> Iterator[LocalCluster]:
    """``SHARE_HEALTH: False``: every process probes on its own (as before sharing)."""
    with override_settings(REPLICA_ROUTER={**ROUTER_SETTINGS, "SHARE_HEALTH": False}):
        wait_all_up()
        assert not any(n["shared"] for n in replica_router.status())
        yield healthy


def test_child_of_fork_does_not_trust_inherited_state(solo_probing: LocalCluster) -> None:
    """Without shared health: the standby is frozen right before the fork, while the
    parent still lists it as ``up`` (detection takes a window). The child must not read
    from it on that inherited word, neither right after the fork nor once its own
    probes call it down."""
    cluster = solo_probing
    wait_all_up()
    assert set(read_aliases()) == {"default", "replica"}

    def child(forked_at: float) -> dict[str, Any]:
        right_after = read_aliases()
        start = time.monotonic()
        while states()["replica"] != "down" and time.monotonic() - start < 10:
            right_after += read_aliases(20)
            time.sleep(0.01)
        down_after = time.monotonic() - forked_at
        return {
            "right_after": sorted(set(right_after)),
            "reads_before_down": len(right_after),
            "down_after": down_after,
            "states": states(),
            "after_down": sorted(set(read_aliases())),
            "primary_age": ages()["default"],
        }

    cluster.sigstop("standby")
    parent_state = states()["replica"]
    report = run_in_child(child)
    measure.info("parent saw replica %r at fork; child: %s", parent_state, report)
    assert parent_state == "up", "the scenario needs the parent to still trust the standby"
    assert "error" not in report, report
    assert report["right_after"] == ["default"], report
    assert report["states"]["replica"] == "down", report
    assert report["after_down"] == ["default"], report
    assert report["primary_age"] is not None and report["primary_age"] < FRESH, report


def test_child_of_fork_follows_the_parents_shared_prober(healthy: LocalCluster) -> None:
    """With shared health (the default), a forked child follows the parent's prober
    (the parent holds the lock: the child does not probe) and sees the frozen standby
    go down when the parent does, within the detection window."""
    cluster = healthy
    wait_all_up()
    assert all(n["shared"] and n["prober_pid"] == os.getpid() for n in replica_router.status())

    def child(forked_at: float) -> dict[str, Any]:
        start = time.monotonic()
        while states()["replica"] != "down" and time.monotonic() - start < 10:
            time.sleep(0.005)
        return {
            "down_after": time.monotonic() - forked_at,
            "probers": sorted({n["prober_pid"] for n in replica_router.status()}),
            "after_down": sorted(set(read_aliases())),
        }

    cluster.sigstop("standby")
    report = run_in_child(child)
    measure.info("shared-health child: %s", report)
    assert "error" not in report, report
    assert report["probers"] == [os.getpid()], report
    assert report["after_down"] == ["default"], report
    assert report["down_after"] < WINDOW + SLACK, report


#: Set before the pool forks, so that its workers inherit it.
_barrier: Any = None


def _pool_worker(forked_at: float) -> dict[str, Any]:
    """Runs in a pool worker: waits for its sibling (so each worker takes one task),
    then reports how fresh its own probes are."""
    _barrier.wait(timeout=10)
    _, seen = wait_fresh(2 * INTERVAL, timeout=5)
    return {
        "pid": os.getpid(),
        "ages": seen,
        "fresh_after_fork": time.monotonic() - forked_at,
        "states": states(),
        "aliases": sorted(set(read_aliases())),
    }


def test_multiprocessing_fork_pool_workers_probe_on_their_own(healthy: LocalCluster) -> None:
    """A ``multiprocessing`` pool with the fork start method: each of two workers
    reports probes newer than two intervals for every node."""
    global _barrier
    wait_all_up()
    assert set(read_aliases()) == {"default", "replica"}
    ctx = multiprocessing.get_context("fork")
    _barrier = ctx.Barrier(2)
    forked_at = time.monotonic()
    pool = ctx.Pool(2)
    try:
        results = pool.map_async(_pool_worker, [forked_at, forked_at], chunksize=1).get(timeout=30)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        _barrier = None
    measure.info("pool workers: %s", results)
    assert len({r["pid"] for r in results}) == 2, results
    for r in results:
        assert r["pid"] != os.getpid()
        assert all(a is not None and a < FRESH for a in r["ages"].values()), r
        assert r["states"] == {"default": "up", "replica": "up"}, r
        assert r["aliases"] == ["default", "replica"], r


APP = textwrap.dedent(
    """
    \"\"\"A tiny WSGI app: the master routes a read at import, then gunicorn forks.\"\"\"
    import json
    import os
    import time

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="gunicorn-fork-test",
        DATABASES=json.loads(os.environ["RR_TEST_DATABASES"]),
        DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
        REPLICA_ROUTER=json.loads(os.environ["RR_TEST_ROUTER"]),
        INSTALLED_APPS=["django.contrib.contenttypes", "replica_router"],
        LOGGING_CONFIG=None,
        USE_TZ=True,
    )
    django.setup()

    from django.contrib.contenttypes.models import ContentType
    from django.db import router

    import replica_router

    PRELOAD_PID = os.getpid()
    PRELOAD_ALIAS = router.db_for_read(ContentType)
    # Let the master's own probes answer first: workers inherit a used, live router.
    _deadline = time.monotonic() + 10
    while time.monotonic() < _deadline and any(
        n["state"] != "up" for n in replica_router.status()
    ):
        time.sleep(0.02)
    PRELOAD_STATES = {n["alias"]: n["state"] for n in replica_router.status()}


    def app(environ, start_response):
        aliases = sorted({router.db_for_read(ContentType) for _ in range(100)})
        body = json.dumps(
            {
                "pid": os.getpid(),
                "preload_pid": PRELOAD_PID,
                "preload_alias": PRELOAD_ALIAS,
                "preload_states": PRELOAD_STATES,
                "aliases": aliases,
                "status": replica_router.status(),
            }
        ).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def gunicorn_app(cluster: LocalCluster, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``gunicorn --preload -w 2`` serving the app above; yields (port, master pid).
    Always stopped: SIGTERM, then SIGKILL to its process group after a timeout."""
    (tmp_path / "rr_fork_app.py").write_text(APP)
    port = _free_port()
    dbs = {
        "default": {**cluster.dsn("primary"), "OPTIONS": {"connect_timeout": 2}},
        "replica": {**cluster.dsn("standby"), "OPTIONS": {"connect_timeout": 2}},
    }
    env = {
        **os.environ,
        "RR_TEST_DATABASES": json.dumps(dbs),
        "RR_TEST_ROUTER": json.dumps(ROUTER_SETTINGS),
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "--preload",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(tmp_path),
            "--graceful-timeout",
            "3",
            "rr_fork_app:app",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        yield port, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _get(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except OSError:
        return None


def test_gunicorn_preload_workers_probe_on_their_own(
    gunicorn_app: tuple[int, int], tmp_path: Path
) -> None:
    """``gunicorn --preload -w 2``: the master routed a read (and saw both nodes up)
    before forking; each worker then reports probes of its own newer than two intervals
    for every node, and routes reads to both nodes."""
    port, master = gunicorn_app
    latest: dict[int, dict[str, Any]] = {}
    first: dict[int, dict[str, Any]] = {}
    ready_at: float | None = None
    deadline = time.monotonic() + 30
    # Both workers seen, and at least a second after the first answer, so that the
    # latest answer of each worker is not from its very first instants.
    while time.monotonic() < deadline:
        data = _get(port)
        if data is None:
            time.sleep(0.1)
            continue
        if ready_at is None:
            ready_at = time.monotonic()
        first.setdefault(data["pid"], data)
        latest[data["pid"]] = data
        if len(latest) >= 2 and time.monotonic() - ready_at > 1.0:
            break
        time.sleep(0.02)
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert len(latest) == 2, (sorted(latest), log[-3000:])
    measure.info(
        "gunicorn workers: %s",
        {
            pid: {
                "first_ages": {n["alias"]: n["last_good_probe_age"] for n in first[pid]["status"]},
                "ages": {n["alias"]: n["last_good_probe_age"] for n in d["status"]},
                "probes": {n["alias"]: n["probes"] for n in d["status"]},
            }
            for pid, d in latest.items()
        },
    )
    for pid, data in latest.items():
        assert pid != master and data["preload_pid"] == master, (pid, master, data)
        assert data["preload_states"] == {"default": "up", "replica": "up"}, data
        assert data["preload_alias"] in ("default", "replica"), data
        for n in data["status"]:
            age = n["last_good_probe_age"]
            assert age is not None and age < FRESH, (pid, n)
            assert n["state"] == "up", (pid, n)
        assert data["aliases"] == ["default", "replica"], data
    for marker in ("panicked", "Traceback", "Fatal"):
        assert marker not in log, log[-3000:]
