"""gunicorn serving the example project against a LocalCluster, for shared-health
tests and ``benchmarks/shared_health.py``.

Each worker builds its router at boot (``post_worker_init``), so every worker takes
part in the election at once. ``status/`` answers with the worker's pid, its view of
each node and (``?reads=N``) where N reads were routed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
#: The application_name of probe connections (src/probe.rs).
PROBE_APP = "replica_router probe"

CONFIG = """
def post_worker_init(worker):
    from replica_router import _runtime

    _runtime.get_cluster()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def probe_backends(cluster: Any, node: str) -> int:
    """Probe connections open on ``node`` (by their application_name)."""
    out = cluster.sql(
        node, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{PROBE_APP}'"
    )
    return int(out.strip())


class Pool:
    """``gunicorn -w N`` (sync workers) on the example project; stop() always."""

    def __init__(
        self,
        cluster: Any,
        workers: int,
        workdir: Path,
        *,
        share: bool = True,
        interval: float = 0.2,
        timeout: float = 0.5,
        share_dir: Path | None = None,
    ) -> None:
        self.workers = workers
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "gunicorn_conf.py"
        config.write_text(CONFIG)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DJREPLICA_", "PYTEST_")) and k != "PYTHONPATH"
        }
        env.update(cluster.env_vars())
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "DJReplica.settings",
                "DJREPLICA_PROBE_INTERVAL": str(interval),
                "DJREPLICA_PROBE_TIMEOUT": str(timeout),
                "DJREPLICA_SHARE_HEALTH": "1" if share else "0",
                "DJREPLICA_LOG_LEVEL": "INFO",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        if share_dir is not None:
            env["REPLICA_ROUTER_SHARE_DIR"] = str(share_dir)
        self.log_path = workdir / "gunicorn.log"
        self._log = self.log_path.open("wb")
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.proc = subprocess.Popen(
            [
                str(gunicorn),
                "-w",
                str(workers),
                "-k",
                "sync",
                "-b",
                f"127.0.0.1:{self.port}",
                "-c",
                str(config),
                "--chdir",
                str(EXAMPLE),
                "--graceful-timeout",
                "3",
                "--timeout",
                "60",
                "DJReplica.wsgi:application",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def get(self, reads: int = 0, timeout: float = 5) -> dict[str, Any] | None:
        """One worker's ``status/`` answer (whichever worker takes it), or None."""
        query = f"?reads={reads}" if reads else ""
        url = f"http://127.0.0.1:{self.port}/status/{query}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except (OSError, ValueError):
            return None

    def worker_pids(self) -> set[int]:
        """The master's live worker processes."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return set()
        return {int(p) for p in text.split()}

    def wait_ready(self, timeout: float = 60) -> dict[int, dict[str, Any]]:
        """Waits until every worker answered with all nodes up and one prober; returns
        the latest answer of each worker."""
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.get()
            if data is not None:
                seen[data["pid"]] = data
                live = self.worker_pids()
                seen = {p: d for p, d in seen.items() if p in live}
                if len(seen) >= self.workers and all(
                    all(n["state"] == "up" for n in d["nodes"]) for d in seen.values()
                ):
                    return seen
            time.sleep(0.02)
        raise AssertionError(f"workers not ready: {seen}\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def watch_workers(
    pool: Pool, done: Callable[[dict[str, Any]], bool], timeout: float, reads: int = 20
) -> tuple[dict[int, float], dict[int, dict[str, Any]]]:
    """Polls ``status/`` (from several threads, so that every worker is asked often)
    until every live worker's answer satisfies ``done``; returns per worker the
    seconds until an answer of it first did, and the answers seen last."""
    start = time.monotonic()
    first: dict[int, float] = {}
    last: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def poll() -> None:
        while not finished.is_set() and time.monotonic() - start < timeout:
            data = pool.get(reads=reads)
            if data is None:
                time.sleep(0.01)
                continue
            at = time.monotonic() - start
            with lock:
                last[data["pid"]] = data
                if data["pid"] not in first and done(data):
                    first[data["pid"]] = at

    threads = [threading.Thread(target=poll) for _ in range(min(pool.workers, 6))]
    for t in threads:
        t.start()
    while time.monotonic() - start < timeout:
        live = pool.worker_pids()
        with lock:
            if live and live <= set(first):
                break
        time.sleep(0.01)
    finished.set()
    for t in threads:
        t.join()
    live = pool.worker_pids()
    return {p: t for p, t in first.items() if p in live}, last
