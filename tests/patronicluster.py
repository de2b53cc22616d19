"""patronicluster: a throwaway 3-node Patroni + etcd cluster on loopback.

The bed for issue 14 (writes follow the primary): ``make test-patroni`` (``tests/patroni``)
and ``make failover`` (``benchmarks/failover.py``). It uses the building blocks of
``tests/pgcluster.py`` (binaries, free ports, the unprivileged user) and adds:

* one etcd (Debian's ``etcd-server`` 3.4) on a free client and peer port, data in the
  base directory; Patroni talks to it with its ``etcd3`` DCS;
* three Patroni 4.1 nodes (``node1`` .. ``node3``; PyPI ``patroni[etcd3,psycopg3]`` in
  its own venv, ``$PATRONI`` or ``.venv-patroni/bin/patroni``), each with a PostgreSQL
  port and a REST port. ``node1`` bootstraps and leads; the others are basebackups
  that stream from it. Asynchronous replication, ``use_pg_rewind``, ``fsync = off``.

Events, as a Patroni user sees them:

* :meth:`PatroniCluster.switchover` asks the REST API to hand leadership over;
* :meth:`PatroniCluster.failover` SIGKILLs the leader's Patroni and postmaster and then
  deletes the leader key in etcd (the replicas elect at once, not after the ttl);
* :meth:`PatroniCluster.wait_new_primary` measures Patroni's promotion time: from the
  event until a new leader answers ``GET /primary`` with 200.

Servers run as the ``postgres`` user when root. Everything started is stopped by
:meth:`down` (also at interpreter exit). Standard library only.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, final

from tests.patroniconf import NAMESPACE, SCOPE, find_etcd, find_patroni, http, patroni_config, psql
from tests.pgcluster import (
    HOST,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    ClusterError,
    _children,
    _free_ports,
    _proc_stat,
    _redact,
    _signal,
    _unprivileged_user,
    find_pg_bin,
)

__all__ = ["NAMES", "PatroniCluster"]

logger = logging.getLogger("pgcluster.patroni")

NAMES = ("node1", "node2", "node3")


@final  # owns OS processes and directories
class PatroniCluster:
    """etcd + three Patroni-managed PostgreSQL nodes on 127.0.0.1 (see the module doc)."""

    def __init__(self, base_dir: str | None = None) -> None:
        self.pg_bin = find_pg_bin()
        self.patroni = find_patroni()
        self.etcd = find_etcd()
        ports = iter(_free_ports(2 + 2 * len(NAMES)))
        self.etcd_port, self.etcd_peer_port = next(ports), next(ports)
        #: PostgreSQL and REST port of each node.
        self.pg_ports = {n: next(ports) for n in NAMES}
        self.rest_ports = {n: next(ports) for n in NAMES}
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="rrp-", dir="/tmp")
        self._run_as = _unprivileged_user()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ pieces

    def node_dir(self, name: str) -> str:
        """The directory of ``name`` (config, Unix socket, log; data in ``data``)."""
        return os.path.join(self.base_dir, name)

    def data_dir(self, name: str) -> str:
        """The data directory of ``name``."""
        return os.path.join(self.node_dir(name), "data")

    def log_file(self, name: str) -> str:
        """Patroni's (and its PostgreSQL's) log of ``name``, or etcd's for ``etcd``."""
        return os.path.join(self.base_dir, f"{name}.log")

    def rest_url(self, name: str, path: str = "") -> str:
        """Patroni's REST API of ``name``."""
        return f"http://{HOST}:{self.rest_ports[name]}{path}"

    def dsn(self, name: str) -> dict[str, str]:
        """A Django ``DATABASES`` entry for one node."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": SUPERUSER,
            "PASSWORD": SUPERUSER_PASSWORD,
            "HOST": HOST,
            "PORT": str(self.pg_ports[name]),
        }

    def multi_host_dsn(self, target_session_attrs: str) -> dict[str, Any]:
        """A libpq multi-host ``DATABASES`` entry over all nodes."""
        return {
            **self.dsn(NAMES[0]),
            "HOST": ",".join(HOST for _ in NAMES),
            "PORT": ",".join(str(self.pg_ports[n]) for n in NAMES),
            "OPTIONS": {"target_session_attrs": target_session_attrs},
        }

    def _spawn(self, what: str, args: list[str]) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PATRONI"))}
        env.update(HOME=self.base_dir, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        run_as = self._run_as
        with open(self.log_file(what), "ab") as log:
            proc = subprocess.Popen(
                args,
                cwd=self.base_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else [],
            )
        self._procs[what] = proc
        return proc

    def _chown_tree(self, path: str) -> None:
        if self._run_as is None:
            return
        for root, dirs, files in os.walk(path):
            for entry in [root, *(os.path.join(root, d) for d in dirs)]:
                os.chown(entry, self._run_as.uid, self._run_as.gid)
            for f in files:
                os.chown(os.path.join(root, f), self._run_as.uid, self._run_as.gid)

    # --------------------------------------------------------------- lifecycle

    def up(self, timeout: float = 90) -> None:
        """Start etcd, then ``node1`` (it bootstraps and leads), then the replicas;
        return once both replicas stream from it. Stops everything on failure."""
        _LIVE.add(self)
        try:
            os.makedirs(self.base_dir, exist_ok=True)
            os.chmod(self.base_dir, 0o755)
            for name in NAMES:
                os.makedirs(self.node_dir(name), mode=0o700, exist_ok=True)
                Path(self.node_dir(name), "patroni.yml").write_text(
                    json.dumps(patroni_config(self, name), indent=1)
                )
            self._chown_tree(self.base_dir)
            self._start_etcd()
            self.start_node(NAMES[0])
            self._wait(lambda: self._primary_status(NAMES[0]) == 200, timeout, "node1 leads")
            for name in NAMES[1:]:
                self.start_node(name)
            self.wait_healthy(NAMES[0], timeout)
        except BaseException:
            logger.error(
                "Patroni cluster failed to start; logs in %s\n%s", self.base_dir, self.logs()
            )
            self.down(keep=bool(os.environ.get("RR_KEEP_FAILED_BED")))
            raise

    def _start_etcd(self) -> None:
        peer = f"http://{HOST}:{self.etcd_peer_port}"
        client = f"http://{HOST}:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                self.etcd, "--name", "etcd", "--data-dir", os.path.join(self.base_dir, "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"etcd={peer}", "--initial-cluster-state", "new",
            ],
        )  # fmt: skip
        self._wait(lambda: self._etcd_ok(), 30, "etcd answers")

    def _etcd_ok(self) -> bool:
        with contextlib.suppress(OSError):
            return http("GET", f"http://{HOST}:{self.etcd_port}/health")[0] == 200
        return False

    def start_node(self, name: str) -> None:
        """Start ``name``'s Patroni (it starts, bootstraps or rejoins its PostgreSQL)."""
        self._spawn(name, [self.patroni, os.path.join(self.node_dir(name), "patroni.yml")])

    def down(self, keep: bool = False) -> None:
        """Stop every node and etcd (also half-started ones) and delete the base dir."""
        for name in NAMES:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is None:
                _signal(proc.pid, signal.SIGTERM)  # Patroni stops its PostgreSQL on SIGTERM
        for name in NAMES:
            proc = self._procs.pop(name, None)
            if proc is not None:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    _signal(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            self.kill_postmaster(name)
        etcd = self._procs.pop("etcd", None)
        if etcd is not None:
            etcd.terminate()
            try:
                etcd.wait(10)
            except subprocess.TimeoutExpired:
                etcd.kill()
                etcd.wait(5)
        _LIVE.discard(self)
        if not keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PatroniCluster:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # ------------------------------------------------------------------ state

    def postmaster_pid(self, name: str) -> int | None:
        """PID of ``name``'s postmaster if it is alive, else None."""
        try:
            pid = int(Path(self.data_dir(name), "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        stat = _proc_stat(pid)
        return None if stat is None or stat[0] in ("Z", "X") else pid

    def kill_postmaster(self, name: str) -> None:
        """SIGKILL ``name``'s postmaster and its children (a crash, never graceful)."""
        pid = self.postmaster_pid(name)
        if pid is not None:
            children = _children(pid)
            _signal(pid, signal.SIGKILL)
            for child in children:
                _signal(child, signal.SIGKILL)

    def _primary_status(self, name: str) -> int | None:
        try:
            return http("GET", self.rest_url(name, "/primary"), timeout=1)[0]
        except OSError:
            return None

    def leader(self) -> str | None:
        """The node whose Patroni answers ``GET /primary`` with 200, if one does."""
        return next((n for n in NAMES if self._primary_status(n) == 200), None)

    def members(self) -> dict[str, dict[str, Any]]:
        """Patroni's ``/cluster`` view (role, state, timeline, lag) by member name."""
        for name in NAMES:
            with contextlib.suppress(OSError):
                status, body = http("GET", self.rest_url(name, "/cluster"), timeout=1)
                if status == 200 and isinstance(body, dict):
                    return {m["name"]: m for m in body.get("members", [])}
        return {}

    def healthy(self, leader: str) -> bool:
        """``leader`` leads and runs; every other node is a streaming replica."""
        if self._primary_status(leader) != 200:
            return False
        members = self.members()
        if set(members) != set(NAMES):
            return False
        return all(
            m["role"] in ("leader", "primary") and m["state"] == "running"
            if n == leader
            else m["role"] == "replica" and m["state"] == "streaming"
            for n, m in members.items()
        )

    def wait_healthy(self, leader: str, timeout: float = 60) -> None:
        """Wait until :meth:`healthy`; raise with Patroni's view and logs otherwise."""
        self._wait(lambda: self.healthy(leader), timeout, f"{leader} leads, others stream")

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise ClusterError(f"not within {timeout:g} s: {what}; members: {self.members()}")
            time.sleep(0.1)

    def logs(self, lines: int = 20) -> str:
        """The last lines of every log of the bed (passwords redacted)."""
        parts = []
        for what in ("etcd", *NAMES):
            with contextlib.suppress(OSError):
                text = Path(self.log_file(what)).read_text(errors="replace").splitlines()
                parts.append(f"--- {what} ---\n" + _redact("\n".join(text[-lines:])))
        return "\n".join(parts)

    def sql(self, name: str, query: str, timeout: float = 10) -> str:
        """``query`` on ``name`` as the superuser (psql, unaligned); stdout stripped."""
        return psql(self.pg_bin, self.pg_ports[name], query, timeout, what=f"query on {name}")

    # ----------------------------------------------------------------- events

    def switchover(self, candidate: str, leader: str | None = None) -> tuple[int, str]:
        """Ask Patroni to hand leadership to ``candidate`` (blocks until it answers)."""
        leader = leader or self.leader()
        if leader is None:
            raise ClusterError("switchover: no leader")
        status, body = http(
            "POST",
            self.rest_url(leader, "/switchover"),
            {"leader": leader, "candidate": candidate},
            timeout=60,
        )
        if status != 200:
            raise ClusterError(f"switchover {leader} -> {candidate}: {status} {body}")
        return status, str(body)

    def failover(self, leader: str) -> None:
        """Crash ``leader``: SIGKILL its Patroni and postmaster, then delete the leader key
        (the replicas see it go and elect at once, as after the ttl)."""
        proc = self._procs.get(leader)
        if proc is not None:
            _signal(proc.pid, signal.SIGKILL)
        self.kill_postmaster(leader)
        key = base64.b64encode(f"{NAMESPACE}{SCOPE}/leader".encode()).decode()
        http("POST", f"http://{HOST}:{self.etcd_port}/v3/kv/deleterange", {"key": key})
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def wait_new_primary(self, old: str, since: float, timeout: float = 60) -> tuple[str, float]:
        """Poll every other node's ``GET /primary``; return the first to answer 200 and
        the seconds from ``since`` (a ``time.monotonic()``) until it did."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            for name in NAMES:
                if name != old and self._primary_status(name) == 200:
                    return name, time.monotonic() - since
            time.sleep(0.01)
        raise ClusterError(f"no new primary within {timeout:g} s of the event; {self.members()}")

    def rejoin(self, name: str, timeout: float = 60) -> None:
        """Start ``name``'s Patroni again if it is not running (after :meth:`failover`)
        and wait until ``name`` streams from the leader as a replica."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            self.kill_postmaster(name)
            self.start_node(name)
        self._wait(lambda: self.members().get(name, {}).get("state") == "streaming",
                   timeout, f"{name} streams")  # fmt: skip

    def restore(self, leader: str = NAMES[0], timeout: float = 90) -> None:
        """Every node running, ``leader`` leading (a switchover back if needed), the
        others streaming. A crashed node's Patroni is started again (it rewinds)."""
        for name in NAMES:
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                self.kill_postmaster(name)
                self.start_node(name)
        self._wait(
            lambda: self.leader() is not None and len(self.members()) == 3, timeout, "a leader"
        )
        current = self.leader()
        if current != leader:
            self._wait(lambda: self.members().get(leader, {}).get("state") == "streaming",
                       timeout, f"{leader} streams before the switchover back")  # fmt: skip
            self.switchover(leader, current)
        self.wait_healthy(leader, timeout)


_LIVE: set[PatroniCluster] = set()


@atexit.register
def _down_leftovers() -> None:
    """Stop beds a crashed test or benchmark left running."""
    for bed in list(_LIVE):
        with contextlib.suppress(Exception):
            bed.down()
