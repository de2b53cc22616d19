"""HAProxy in front of a :class:`~tests.patronicluster.PatroniCluster`, as Patroni documents it.

Two TCP listeners on free loopback ports: ``primary`` sends connections to the node
whose Patroni answers ``OPTIONS /primary`` with 200, ``replicas`` round-robins over the
nodes that answer ``OPTIONS /replica`` with 200. The check timing is the caller's:
Patroni's documented ``inter 3s fall 3 rise 2`` or a faster ``inter 1s fall 2 rise 1``,
both with ``on-marked-down shutdown-sessions`` (a node marked down loses its sessions).
HAProxy (Debian package ``haproxy``) runs in the foreground, its admin socket in the
bed's directory; :meth:`HAProxy.stop` ends it. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import final

from tests.patronicluster import NAMES, PatroniCluster
from tests.pgcluster import HOST, ClusterError, _free_ports

__all__ = ["CHECKS", "HAProxy", "find_haproxy"]

#: The two check settings compared: a fast one and Patroni's documented one.
CHECKS = {
    "fast": "inter 1s fall 2 rise 1",
    "documented": "inter 3s fall 3 rise 2",
}


def find_haproxy() -> str:
    """The ``haproxy`` binary (``$HAPROXY``, ``PATH`` or Debian's /usr/sbin)."""
    path = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(path, os.X_OK):
        raise ClusterError(
            "haproxy not found: run `make patroni` (Debian: apt-get install haproxy)"
        )
    return path


@final  # owns a process
class HAProxy:
    """HAProxy with Patroni's REST checks; ``primary_port`` and ``replicas_port``."""

    def __init__(self, bed: PatroniCluster, checks: str) -> None:
        self.bed = bed
        self.checks = checks
        self.primary_port, self.replicas_port = _free_ports(2)
        self.dir = tempfile.mkdtemp(prefix="rrh-", dir="/tmp")
        self.socket = os.path.join(self.dir, "admin.sock")
        self.log = os.path.join(self.dir, "haproxy.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The configuration file's text (Patroni's example, on loopback)."""

        def listener(name: str, port: int, check: str) -> str:
            servers = "\n".join(
                f"    server {n} {HOST}:{self.bed.pg_ports[n]} maxconn 100 check port "
                f"{self.bed.rest_ports[n]}"
                for n in NAMES
            )
            return (
                f"listen {name}\n    bind {HOST}:{port}\n"
                f"    option httpchk OPTIONS {check}\n    http-check expect status 200\n"
                f"    default-server {self.checks} on-marked-down shutdown-sessions\n"
                f"{servers}\n"
            )

        return (
            f"global\n    maxconn 400\n    stats socket {self.socket} mode 600 level admin\n"
            "defaults\n    mode tcp\n    retries 2\n    timeout client 30m\n"
            "    timeout connect 4s\n    timeout server 30m\n    timeout check 5s\n"
            + listener("primary", self.primary_port, "/primary")
            + listener("replicas", self.replicas_port, "/replica")
        )

    def start(self, timeout: float = 30) -> None:
        """Start HAProxy; return once it routes to exactly the bed's leader and its
        two replicas."""
        cfg = Path(self.dir, "haproxy.cfg")
        cfg.write_text(self.config())
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [find_haproxy(), "-f", str(cfg), "-db"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise

    def servers_up(self) -> dict[str, set[str]]:
        """The servers HAProxy has UP, per listener (from its admin socket)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.socket)
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        up: dict[str, set[str]] = {"primary": set(), "replicas": set()}
        for line in b"".join(chunks).decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] in up and fields[1] in NAMES:
                if fields[17].startswith("UP"):
                    up[fields[0]].add(fields[1])
        return up

    def wait_settled(self, timeout: float) -> None:
        """Wait until HAProxy's view matches Patroni's: the leader alone behind
        ``primary``, the other two behind ``replicas``."""
        deadline = time.monotonic() + timeout
        seen: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ClusterError(f"haproxy exited ({self._proc.returncode}); see {self.log}")
            leader = self.bed.leader()
            with contextlib.suppress(OSError):
                seen = self.servers_up()
                if leader and seen == {
                    "primary": {leader},
                    "replicas": set(NAMES) - {leader},
                }:
                    return
            time.sleep(0.2)
        raise ClusterError(f"HAProxy did not settle within {timeout:g} s: {seen}")

    def stop(self) -> None:
        """Stop HAProxy and remove its directory."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
