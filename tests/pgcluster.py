#!/usr/bin/env python
"""pgcluster: a throwaway PostgreSQL primary + hot standby on loopback.

The test suite's real servers (``tests/conftest.py`` starts one such cluster per
run, and tests that promote a standby make their own), and the ones behind
``make demo`` (``example_project/demo.py``), ``make bench`` and ``make soak``
(``benchmarks/``). It is also a command-line tool for trying the router by hand.

This reproduces the replication setup of the DJReplica tutorial with PostgreSQL's
own binaries instead of Docker containers:

* the primary is created with ``initdb`` (superuser ``postgres``), with
  ``wal_level = replica`` and ``max_wal_senders`` so that a standby may attach;
* a ``replica`` role with ``REPLICATION LOGIN`` and a ``pg_hba.conf`` entry let
  the standby connect for replication;
* a physical slot ``standby_replication_slot`` keeps the WAL the standby needs;
* the standby is a ``pg_basebackup`` of the primary, turned into a hot standby by
  a ``standby.signal`` file plus ``primary_conninfo``, ``primary_slot_name`` and
  ``hot_standby = on``.

Use it from Python::

    with LocalCluster() as cluster:
        cluster.sql("primary", "CREATE TABLE t (x int)")
        cluster.wait_replayed()
        cluster.sql("standby", "SELECT count(*) FROM t")

or from a shell, from the repository root (``python tests/pgcluster.py --help``
explains each subcommand)::

    python tests/pgcluster.py up --base-dir /tmp/rr > /tmp/rr.env   # prints exports
    python tests/pgcluster.py stop standby --base-dir /tmp/rr
    python tests/pgcluster.py down --base-dir /tmp/rr

It needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``, ``postgres``,
``pg_basebackup``, ``psql``): ``$PG_BIN``, else the newest
``/usr/lib/postgresql/*/bin``, else ``PATH``. Run as root, the servers run as an
unprivileged user (``postgres``, else ``nobody``). The clusters are for tests and
demos only: ``fsync = off``, well-known passwords, 127.0.0.1 only.

Only the standard library is used, so the tool runs before anything is built.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, final

__all__ = [
    "NODES",
    "ClusterError",
    "LocalCluster",
    "Node",
    "PgBinariesNotFound",
    "find_pg_bin",
    "main",
]

logger = logging.getLogger("pgcluster")

Node = Literal["primary", "standby"]
NODES: tuple[Node, ...] = ("primary", "standby")

HOST = "127.0.0.1"
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = (
    "postgres"  # the tutorial's credentials; loopback-only test cluster
)
REPLICATION_USER = "replica"
REPLICATION_PASSWORD = "replica"
SLOT_NAME = "standby_replication_slot"
STANDBY_APPLICATION_NAME = "standby"
STATE_FILE = "cluster.json"

# Server binaries that must be present; psql is used for the admin queries.
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "psql")

# Linux limits sun_path to 108 bytes including the NUL; the server adds
# "/.s.PGSQL.<port>.lock" to the socket directory.
_MAX_SOCKET_PATH = 107

_PASSWORD_PATTERNS = (
    re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)"),
    re.compile(r"(?i)(password\s+)('(?:[^']|'')*')"),
)


class ClusterError(RuntimeError):
    """Raised when the local cluster cannot be created, started, queried or stopped."""


class PgBinariesNotFound(ClusterError):
    """Raised when the PostgreSQL server binaries cannot be located."""


def _redact(text: str) -> str:
    """Hide anything that looks like a password before it reaches a log or an error."""
    for pattern in _PASSWORD_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


def _version_key(path: Path) -> tuple[int, ...]:
    parts = path.parent.name.split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def find_pg_bin(pg_bin: str | None = None) -> str:
    """Return the directory holding PostgreSQL's server binaries.

    Looks, in order, at the ``pg_bin`` argument, the ``PG_BIN`` environment
    variable, the newest ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu
    layout) and finally the directory of ``pg_ctl`` found on ``PATH``.
    Raises :class:`PgBinariesNotFound` naming what to install otherwise.
    """
    candidates: list[tuple[str, str]] = []
    if pg_bin:
        candidates.append(("pg_bin argument", pg_bin))
    elif os.environ.get("PG_BIN"):
        candidates.append(("PG_BIN", os.environ["PG_BIN"]))
    else:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True
        )
        candidates.extend(("/usr/lib/postgresql", str(v)) for v in versions)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(("PATH", str(Path(on_path).resolve().parent)))

    problems: list[str] = []
    for origin, directory in candidates:
        missing = [
            b
            for b in REQUIRED_BINARIES
            if not os.access(os.path.join(directory, b), os.X_OK)
        ]
        if not missing:
            return directory
        problems.append(f"{directory} (from {origin}) lacks {', '.join(missing)}")

    detail = "; ".join(problems) if problems else "none found"
    raise PgBinariesNotFound(
        f"PostgreSQL server binaries ({', '.join(REQUIRED_BINARIES)}) not found: {detail}. "
        "Install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql) "
        "or set the PG_BIN environment variable to the directory that holds them."
    )


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free loopback ports."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # Keep each socket bound until all are chosen so the kernel never
            # hands out the same port twice.
            held.append(s)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if port != 5432:  # never collide with a system PostgreSQL
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, ppid) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (every PostgreSQL process is a child of the postmaster)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[1] == pid:
            found.append(int(entry))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _unprivileged_user() -> _RunAs | None:
    """The user to run server binaries as: None to keep the current user.

    PostgreSQL refuses to run as root, so root hands the servers to the
    ``postgres`` system user, or ``nobody`` when there is none.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(entry.pw_uid, entry.pw_gid, name)
    raise ClusterError(
        "running as root, but neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as"
    )


@final  # owns OS processes and directories; compose rather than subclass
class LocalCluster:
    """A PostgreSQL primary and a streaming hot standby on 127.0.0.1.

    ``base_dir`` holds both data directories, their logs, the Unix sockets and
    ``cluster.json`` (ports, for the CLI). It defaults to a fresh short
    directory under /tmp, which :meth:`down` removes. Ports default to free
    loopback ports. ``pg_bin`` defaults to :func:`find_pg_bin`.
    """

    def __init__(
        self,
        base_dir: str | None = None,
        primary_port: int | None = None,
        standby_port: int | None = None,
        pg_bin: str | None = None,
    ) -> None:
        self.pg_bin: str = find_pg_bin(pg_bin)
        if primary_port is None or standby_port is None:
            free = iter(_free_ports(2))
            primary_port = primary_port if primary_port is not None else next(free)
            standby_port = standby_port if standby_port is not None else next(free)
            if primary_port == standby_port:
                standby_port = next(p for p in _free_ports(2) if p != primary_port)
        if primary_port == standby_port:
            raise ClusterError(
                f"primary and standby need different ports, both are {primary_port}"
            )
        self.primary_port: int = primary_port
        self.standby_port: int = standby_port
        self._created_base_dir = base_dir is None
        self.base_dir: str = (
            tempfile.mkdtemp(prefix="rr-", dir="/tmp")
            if base_dir is None
            else os.path.abspath(base_dir)
        )
        self._run_as = _unprivileged_user()
        self._promoted = False

    # ------------------------------------------------------------------ paths

    def port(self, node: Node) -> int:
        """The TCP port of ``node``."""
        return (
            self.primary_port if _check_node(node) == "primary" else self.standby_port
        )

    def data_dir(self, node: Node) -> str:
        """The data directory of ``node``."""
        return os.path.join(self.base_dir, _check_node(node))

    def log_file(self, node: Node) -> str:
        """The server log of ``node``."""
        return os.path.join(self.base_dir, f"{_check_node(node)}.log")

    def _bin(self, name: str) -> str:
        return os.path.join(self.pg_bin, name)

    # ------------------------------------------------------------ persistence

    def _save_state(self) -> None:
        state = {
            "primary_port": self.primary_port,
            "standby_port": self.standby_port,
            "pg_bin": self.pg_bin,
            "promoted": self._promoted,
        }
        path = os.path.join(self.base_dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, base_dir: str) -> LocalCluster:
        """Reattach to a cluster created earlier (e.g. by the CLI's ``up``) in ``base_dir``.

        The returned object is not stopped at interpreter exit: whoever made it
        decides when to call :meth:`down`.
        """
        path = os.path.join(base_dir, STATE_FILE)
        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except FileNotFoundError:
            raise ClusterError(
                f"no cluster in {base_dir} ({STATE_FILE} is missing)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot read {path}: {exc}") from None
        cluster = cls(
            base_dir=base_dir,
            primary_port=int(state["primary_port"]),
            standby_port=int(state["standby_port"]),
            pg_bin=state.get("pg_bin") or None,
        )
        cluster._promoted = bool(state.get("promoted", False))
        return cluster

    # ------------------------------------------------------- process helpers

    def _server_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # Drop the caller's PG* variables: PGDATA, PGPORT or PGSERVICE from the
        # surrounding shell must not redirect our binaries to another server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["HOME"] = self.base_dir
        env["LC_ALL"] = "C"  # predictable messages and no locale surprises in initdb
        if extra:
            env.update(extra)
        return env

    def _run_server_bin(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        what: str,
    ) -> str:
        """Run a server binary (as the unprivileged user when root); return its output."""
        run_as = self._run_as
        logger.debug("running %s", " ".join(args))
        try:
            proc = subprocess.run(
                list(args),
                cwd=self.base_dir,
                env=self._server_env(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                # Shed root's supplementary groups along with its uid.
                extra_groups=None if run_as is None else [],
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"{what}: {os.path.basename(args[0])} timed out after {timeout:g}s"
            ) from None
        if proc.returncode != 0:
            output = _redact((proc.stderr + proc.stdout).strip())
            raise ClusterError(
                f"{what}: {os.path.basename(args[0])} exited with {proc.returncode}: {output}"
            )
        return proc.stdout

    def _chown(self, path: str) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    def _write_owned(
        self, path: str, text: str, *, append: bool = False, mode: int = 0o600
    ) -> None:
        with open(path, "a" if append else "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, mode)
        self._chown(path)

    def postmaster_pid(self, node: Node) -> int | None:
        """PID of ``node``'s postmaster if it is alive, else None."""
        pid_file = os.path.join(self.data_dir(node), "postmaster.pid")
        try:
            first_line = Path(pid_file).read_text().split("\n", 1)[0].strip()
            pid = int(first_line)
        except (OSError, ValueError):
            return None
        stat = _proc_stat(pid)
        # A zombie (state Z) is dead even though /proc still lists it: some
        # container init processes never reap orphans.
        if stat is None or stat[0] in ("Z", "X"):
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        # A stale pid file whose PID got reused by something else.
        if "postgres" not in comm and "postmaster" not in comm:
            return None
        return pid

    def is_running(self, node: Node) -> bool:
        """True when ``node``'s postmaster process exists (even if SIGSTOPped)."""
        return self.postmaster_pid(node) is not None

    def is_frozen(self, node: Node) -> bool:
        """True when ``node``'s postmaster is stopped by SIGSTOP."""
        pid = self.postmaster_pid(node)
        if pid is None:
            return False
        stat = _proc_stat(pid)
        return stat is not None and stat[0] == "T"

    def log_tail(self, node: Node, lines: int = 25) -> str:
        """The last ``lines`` lines of ``node``'s server log, passwords redacted."""
        try:
            text = Path(self.log_file(node)).read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_file(node)})"
        return _redact("\n".join(text.splitlines()[-lines:]))

    def _logs_for_error(self, nodes: Sequence[Node] = NODES) -> str:
        parts = [
            f"--- {n} log ({self.log_file(n)}) ---\n{self.log_tail(n)}" for n in nodes
        ]
        return "\n".join(parts)

    # ------------------------------------------------------------------- SQL

    def sql(self, node: Node, query: str, timeout: float = 10) -> str:
        """Run ``query`` on ``node`` as the superuser with psql; return stdout stripped.

        The query goes through stdin and the password through PGPASSWORD, so
        neither shows up in the process list. Rows come back unaligned
        (``|``-separated), one per line, without headers.
        """
        args = [
            self._bin("psql"),
            "-X", "-A", "-t", "-q",
            "-v", "ON_ERROR_STOP=1",
            "-h", HOST,
            "-p", str(self.port(node)),
            "-U", SUPERUSER,
            "-d", "postgres",
            "-f", "-",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGPASSWORD=SUPERUSER_PASSWORD,
            PGCONNECT_TIMEOUT=str(max(1, int(timeout))),
            PGAPPNAME="pgcluster",
            PGSSLMODE="disable",
        )
        try:
            proc = subprocess.run(
                args,
                input=query,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"query on {node} (port {self.port(node)}) timed out after {timeout:g}s"
            ) from None
        if proc.returncode != 0:
            raise ClusterError(
                f"query on {node} (port {self.port(node)}) failed: {_redact(proc.stderr.strip())}"
            )
        return proc.stdout.strip()

    def dsn(self, node: Node) -> dict[str, str]:
        """Django ``DATABASES`` entry for ``node``."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": SUPERUSER,
            "PASSWORD": SUPERUSER_PASSWORD,
            "HOST": HOST,
            "PORT": str(self.port(node)),
        }

    def env_vars(self) -> dict[str, str]:
        """The environment variables that point the DJReplica example at this cluster."""
        return {
            "DJREPLICA_DB_HOST": HOST,
            "DJREPLICA_PRIMARY_PORT": str(self.primary_port),
            "DJREPLICA_REPLICA_PORT": str(self.standby_port),
        }

    # ------------------------------------------------------------- lifecycle

    def _prepare_base_dir(self) -> None:
        os.makedirs(self.base_dir, exist_ok=True)
        if os.listdir(self.base_dir):
            raise ClusterError(
                f"{self.base_dir} is not empty; use a fresh directory, or LocalCluster.load() for an existing cluster"
            )
        socket_path = os.path.join(
            self.base_dir, f".s.PGSQL.{max(self.primary_port, self.standby_port)}.lock"
        )
        if len(socket_path) > _MAX_SOCKET_PATH:
            raise ClusterError(
                f"base dir {self.base_dir} is too long for a Unix socket path "
                f"({len(socket_path)} > {_MAX_SOCKET_PATH} bytes); use a short one such as /tmp/rr-demo"
            )
        for port in (self.primary_port, self.standby_port):
            if not _port_is_free(port):
                raise ClusterError(f"port {port} on {HOST} is already in use")
        os.chmod(self.base_dir, 0o700)
        self._chown(self.base_dir)
        if self._run_as is not None:
            # Every parent must be searchable by the server's user; a root-only
            # home directory is the usual culprit.
            try:
                self._run_server_bin(
                    ["test", "-w", self.base_dir, "-a", "-x", self.base_dir],
                    timeout=10,
                    what="checking the base dir",
                )
            except ClusterError:
                raise ClusterError(
                    f"{self.base_dir} is not reachable by user {self._run_as.name!r}, which runs "
                    "PostgreSQL because we are root; pick a directory under /tmp"
                ) from None

    def _common_conf(self, port: int) -> str:
        return f"""
# ---- added by pgcluster.py: a throwaway test/demo cluster, never real data ----
listen_addresses = '{HOST}'
port = {port}
unix_socket_directories = '{self.base_dir}'
max_connections = 100
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 5
hot_standby = on
logging_collector = off
# Durability traded for speed: a test/demo cluster only, never for data you keep.
fsync = off
full_page_writes = off
# synchronous_commit stays on: then pg_current_wal_lsn() covers every
# committed transaction, which wait_replayed() relies on.
"""

    def up(self, timeout: float = 60) -> None:
        """Create, configure and start the primary and the standby.

        Returns once the standby is streaming from the primary. On failure the
        servers started so far are stopped and the error carries the tail of
        both server logs.
        """
        started = time.monotonic()
        try:
            self._prepare_base_dir()
        except BaseException:
            # Only a directory we made ourselves is ours to delete: a refused
            # base dir may hold someone else's cluster.
            if self._created_base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            raise
        _LIVE.add(self)
        try:
            self._save_state()
            self._init_primary()
            self._start_node("primary", timeout)
            self._setup_replication_on_primary()
            self._make_standby(timeout)
            self._start_node("standby", timeout)
            self._wait_streaming(timeout)
        except BaseException:
            logger.error("cluster in %s failed to come up; stopping it", self.base_dir)
            self._stop_all_immediate()
            if self._created_base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            _LIVE.discard(self)
            raise
        logger.info(
            "cluster up in %.1fs: primary 127.0.0.1:%d, standby 127.0.0.1:%d (%s)",
            time.monotonic() - started,
            self.primary_port,
            self.standby_port,
            self.base_dir,
        )

    def _init_primary(self) -> None:
        data = self.data_dir("primary")
        pwfile = os.path.join(self.base_dir, "pwfile")
        self._write_owned(pwfile, SUPERUSER_PASSWORD + "\n")
        try:
            self._run_server_bin(
                [
                    self._bin("initdb"),
                    "-D",
                    data,
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",  # throwaway cluster: skip the fsync of every file
                    "--no-instructions",
                ],
                timeout=120,
                what="initdb of the primary",
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        conf = os.path.join(data, "postgresql.conf")
        self._write_owned(conf, self._common_conf(self.primary_port), append=True)
        # Replace the generated rules: only loopback, only what the cluster needs.
        hba = (
            "# written by pgcluster.py\n"
            "# TYPE  DATABASE     USER      ADDRESS        METHOD\n"
            "local   all          all                      trust\n"
            "local   replication  all                      trust\n"
            f"host    replication  {REPLICATION_USER}   {HOST}/32   scram-sha-256\n"
            f"host    all          all       {HOST}/32   scram-sha-256\n"
        )
        self._write_owned(os.path.join(data, "pg_hba.conf"), hba)
        os.chmod(data, 0o700)

    def _setup_replication_on_primary(self) -> None:
        self.sql(
            "primary",
            f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD '{REPLICATION_PASSWORD}';\n"
            f"SELECT slot_name FROM pg_create_physical_replication_slot('{SLOT_NAME}');\n",
        )

    def _make_standby(self, timeout: float) -> None:
        data = self.data_dir("standby")
        self._run_server_bin(
            [
                self._bin("pg_basebackup"),
                "-h",
                HOST,
                "-p",
                str(self.primary_port),
                "-U",
                REPLICATION_USER,
                "-D",
                data,
                "--checkpoint=fast",
                "-X",
                "stream",
                "-S",
                SLOT_NAME,  # WAL streamed during the copy is held by the slot too
                "--no-sync",
                "-w",
            ],
            env={"PGPASSWORD": REPLICATION_PASSWORD},
            timeout=max(timeout, 60),
            what="pg_basebackup of the primary",
        )
        conninfo = (
            f"host={HOST} port={self.primary_port} user={REPLICATION_USER} "
            f"password={REPLICATION_PASSWORD} application_name={STANDBY_APPLICATION_NAME}"
        )
        standby_conf = f"""
# ---- standby settings added by pgcluster.py ----
port = {self.standby_port}
primary_conninfo = '{conninfo}'
primary_slot_name = '{SLOT_NAME}'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
# Reconnect soon after the primary restarts (default 5s) so tests need not wait.
wal_retrieve_retry_interval = 500ms
"""
        self._write_owned(
            os.path.join(data, "postgresql.conf"), standby_conf, append=True
        )
        # Its mere presence starts the server in standby mode; content is ignored.
        self._write_owned(os.path.join(data, "standby.signal"), "")
        os.chmod(data, 0o700)

    def _start_node(self, node: Node, timeout: float) -> None:
        try:
            self._run_server_bin(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    self.data_dir(node),
                    "-l",
                    self.log_file(node),
                    "-w",
                    "-t",
                    str(int(timeout)),
                ],
                timeout=timeout + 10,
                what=f"starting the {node}",
            )
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n{self._logs_for_error([node])}") from None

    def _streaming(self) -> bool:
        receiver = self.sql(
            "standby", "SELECT status FROM pg_stat_wal_receiver", timeout=5
        )
        if receiver != "streaming":
            return False
        senders = self.sql(
            "primary",
            f"SELECT count(*) FROM pg_stat_replication WHERE application_name = '{STANDBY_APPLICATION_NAME}'",
            timeout=5,
        )
        return senders not in ("", "0")

    def _wait_streaming(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "standby not streaming yet"
        while True:
            try:
                if self._streaming():
                    return
            except ClusterError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"standby did not start streaming from the primary within {timeout:g}s "
                    f"(last: {last_error})\n{self._logs_for_error()}"
                )
            time.sleep(0.05)

    def wait_streaming(self, timeout: float = 30) -> None:
        """Block until the standby streams from the primary, or raise ClusterError."""
        self._wait_streaming(timeout)

    def start(
        self, node: Node, wait_streaming: bool = True, timeout: float = 30
    ) -> None:
        """Start ``node`` and wait until it accepts connections.

        For the standby, also wait until it streams from the primary (unless
        ``wait_streaming`` is False or it has been promoted).
        """
        node = _check_node(node)
        if self.is_running(node):
            logger.info("%s already running", node)
        else:
            self._start_node(node, timeout)
            logger.info("%s started on port %d", node, self.port(node))
        if node == "standby" and wait_streaming and not self._promoted:
            self._wait_streaming(timeout)

    def stop(self, node: Node, mode: str = "fast") -> None:
        """Stop ``node`` with ``pg_ctl stop -m mode`` (smart, fast or immediate); no-op if stopped."""
        node = _check_node(node)
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, not {mode!r}")
        if not self.is_running(node):
            logger.info("%s is not running", node)
            return
        # A frozen server would never act on the shutdown signal.
        self.sigcont(node)
        self._run_server_bin(
            [
                self._bin("pg_ctl"),
                "stop",
                "-D",
                self.data_dir(node),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
            ],
            timeout=70,
            what=f"stopping the {node}",
        )
        logger.info("%s stopped (%s)", node, mode)

    def _stop_all_immediate(self) -> None:
        """Stop every node that runs, whatever state it is in; never raises."""
        # Standby first: otherwise its WAL receiver retries against a dead primary.
        for node in ("standby", "primary"):
            pid = self.postmaster_pid(node)
            if pid is None:
                continue
            try:
                self.sigcont(node)
                self._run_server_bin(
                    [
                        self._bin("pg_ctl"),
                        "stop",
                        "-D",
                        self.data_dir(node),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "30",
                    ],
                    timeout=40,
                    what=f"stopping the {node}",
                )
            except Exception as exc:
                logger.warning(
                    "pg_ctl could not stop the %s (%s); killing PID %d", node, exc, pid
                )
                for child in _children(pid):
                    _signal(child, signal.SIGKILL)
                _signal(pid, signal.SIGKILL)

    def down(self, keep: bool = False) -> None:
        """Stop both nodes immediately and remove the base dir (unless ``keep``).

        Safe to call any number of times and on nodes that are already stopped
        or frozen by :meth:`sigstop`.
        """
        self._stop_all_immediate()
        _LIVE.discard(self)
        if not keep and os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)
            logger.info("cluster in %s removed", self.base_dir)

    def detach(self) -> None:
        """Leave the cluster running when this process exits (the CLI's ``up`` does this)."""
        _LIVE.discard(self)

    def __enter__(self) -> LocalCluster:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def __repr__(self) -> str:
        return (
            f"LocalCluster(base_dir={self.base_dir!r}, primary_port={self.primary_port}, "
            f"standby_port={self.standby_port})"
        )

    # ---------------------------------------------------------- fault tools

    def sigstop(self, node: Node) -> None:
        """Freeze ``node``: SIGSTOP its postmaster and every child process.

        A frozen postmaster leaves new connections hanging in the kernel's
        accept queue; freezing the backends makes open connections hang too,
        like a host that stopped answering without closing anything.
        """
        pid = self._require_pid(node)
        # The postmaster first, so that it forks no new child after we list them.
        _signal(pid, signal.SIGSTOP)
        for child in _children(pid):
            _signal(child, signal.SIGSTOP)
        logger.info("%s frozen (SIGSTOP to postmaster %d and its children)", node, pid)

    def sigcont(self, node: Node) -> None:
        """Undo :meth:`sigstop` (harmless on a node that is not frozen)."""
        pid = self.postmaster_pid(node)
        if pid is None:
            return
        for child in _children(pid):
            _signal(child, signal.SIGCONT)
        _signal(pid, signal.SIGCONT)

    def _require_pid(self, node: Node) -> int:
        pid = self.postmaster_pid(node)
        if pid is None:
            raise ClusterError(f"{node} is not running")
        return pid

    def pause_replay(self) -> None:
        """Pause WAL replay on the standby (``pg_wal_replay_pause()``).

        The standby keeps receiving WAL but applies no further record, so it
        lags on demand. (Its pause state may read 'pause requested' until the
        next record arrives; that record is not applied either.)
        """
        self.sql("standby", "SELECT pg_wal_replay_pause()")
        logger.info("standby replay paused")

    def resume_replay(self) -> None:
        """Resume WAL replay on the standby (``pg_wal_replay_resume()``)."""
        self.sql("standby", "SELECT pg_wal_replay_resume()")
        logger.info("standby replay resumed")

    def stop_streaming(self) -> None:
        """Stop the standby's WAL receiver: ``primary_conninfo`` emptied and reloaded
        (``ALTER SYSTEM``, so ``postgresql.conf`` keeps the real value). The standby
        keeps answering and replaying what it has, and receives nothing more."""
        self.sql(
            "standby", "ALTER SYSTEM SET primary_conninfo = '';\nSELECT pg_reload_conf();"
        )
        logger.info("standby WAL receiver stopped (primary_conninfo emptied)")

    def resume_streaming(self) -> None:
        """Undo :meth:`stop_streaming` (``ALTER SYSTEM RESET``, reload)."""
        self.sql(
            "standby", "ALTER SYSTEM RESET primary_conninfo;\nSELECT pg_reload_conf();"
        )
        logger.info("standby primary_conninfo restored")

    def promote(self, timeout: int = 60) -> None:
        """Promote the standby to a primary (``pg_promote()``), waiting until it is done."""
        result = self.sql(
            "standby", f"SELECT pg_promote(true, {int(timeout)})", timeout=timeout + 5
        )
        if result != "t":
            raise ClusterError(
                f"pg_promote() did not finish within {timeout}s\n{self._logs_for_error(['standby'])}"
            )
        self._promoted = True
        with contextlib.suppress(OSError):
            self._save_state()
        logger.info("standby promoted")

    @property
    def promoted(self) -> bool:
        """True once :meth:`promote` has turned the standby into a primary."""
        return self._promoted

    def wait_replayed(self, timeout: float = 10) -> None:
        """Wait until the standby has replayed everything the primary had written when called."""
        target = self.sql("primary", "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while True:
            done = self.sql(
                "standby", f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
            )
            if done == "t":
                return
            if time.monotonic() >= deadline:
                replayed = self.sql("standby", "SELECT pg_last_wal_replay_lsn()")
                raise ClusterError(
                    f"standby has replayed up to {replayed or 'nothing'}, not {target}, after {timeout:g}s"
                )
            time.sleep(0.02)

    def status(self) -> dict[str, dict[str, object]]:
        """A snapshot of both nodes, for humans: process state, role and replication facts."""
        report: dict[str, dict[str, object]] = {}
        for node in NODES:
            info: dict[str, object] = {
                "port": self.port(node),
                "data_dir": self.data_dir(node),
            }
            pid = self.postmaster_pid(node)
            info["process"] = (
                "stopped"
                if pid is None
                else ("frozen" if self.is_frozen(node) else "running")
            )
            info["pid"] = pid
            if pid is not None and info["process"] == "running":
                try:
                    info["in_recovery"] = (
                        self.sql(node, "SELECT pg_is_in_recovery()", timeout=3) == "t"
                    )
                    if info["in_recovery"]:
                        info["wal_receiver"] = self.sql(
                            node,
                            "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')",
                            timeout=3,
                        )
                        info["replay_lsn"] = self.sql(
                            node, "SELECT pg_last_wal_replay_lsn()", timeout=3
                        )
                    else:
                        info["current_lsn"] = self.sql(
                            node, "SELECT pg_current_wal_lsn()", timeout=3
                        )
                        info["replication"] = self.sql(
                            node,
                            "SELECT application_name || ' ' || state || ' replay=' || coalesce(replay_lsn::text, '-') "
                            "FROM pg_stat_replication",
                            timeout=3,
                        ).splitlines()
                except ClusterError as exc:
                    info["error"] = str(exc)
            report[node] = info
        return report


def _check_node(node: str) -> Node:
    if node == "primary":
        return "primary"
    if node == "standby":
        return "standby"
    raise ValueError(f"node must be 'primary' or 'standby', not {node!r}")


# Clusters brought up by this process and not yet downed or detached.
_LIVE: set[LocalCluster] = set()


@atexit.register
def _down_leftovers() -> None:
    """Stop clusters a crashed test or script left running (belt and braces)."""
    for cluster in list(_LIVE):
        logger.warning("stopping cluster left running in %s at exit", cluster.base_dir)
        with contextlib.suppress(Exception):
            cluster.down()


# -------------------------------------------------------------------- CLI


_DESCRIPTION = """\
Run a local PostgreSQL primary + streaming hot standby (the DJReplica tutorial's
setup) on 127.0.0.1, with PostgreSQL's own binaries (no Docker). Throwaway
clusters for tests and demos: fsync is off and the passwords are well known.

`up` creates a cluster and leaves it running; every other subcommand acts on the
cluster in --base-dir (its ports are kept in <base-dir>/cluster.json)."""

_EPILOG = """\
subcommands in detail:
  up             initdb a primary (superuser postgres/postgres, wal_level replica,
                 a `replica` replication role and slot), pg_basebackup it into a
                 hot standby, start both and wait until the standby streams.
                 Prints the ports and log files as comments, then `export` lines
                 (DJREPLICA_DB_HOST, DJREPLICA_PRIMARY_PORT, DJREPLICA_REPLICA_PORT)
                 that point the example project (example_project/) at it.
  down           stop both nodes (immediate shutdown) and delete --base-dir;
                 --keep leaves the data directories and logs in place.
  stop NODE      pg_ctl stop a node (--mode smart|fast|immediate, default fast):
                 new connections to it are refused.
  start NODE     start a stopped node and wait until it accepts connections (the
                 standby reconnects to the primary and streams again).
  sigstop NODE   freeze a node's processes with SIGSTOP: the kernel still accepts
                 TCP connections, nothing answers (a hung server).
  sigcont NODE   unfreeze a node frozen by sigstop.
  pause-replay   pg_wal_replay_pause() on the standby: it keeps receiving WAL but
                 stops applying it, so it lags behind the primary's writes.
  resume-replay  pg_wal_replay_resume() on the standby.
  promote        pg_promote() the standby: it leaves recovery and becomes a second
                 primary (the cluster is then no longer a primary + standby).
  status         both nodes: process (running/frozen/stopped), pid, role, LSNs,
                 WAL receiver and replication state. Exit 1 unless both run and
                 the standby streams.

NODE is `primary` or `standby`. A subcommand that fails exits 1 with an error
message (passwords redacted).

examples, from the repository root:
  python tests/pgcluster.py up --base-dir /tmp/rr > /tmp/rr.env && . /tmp/rr.env
  python tests/pgcluster.py sigstop standby --base-dir /tmp/rr
  python tests/pgcluster.py status --base-dir /tmp/rr
  python tests/pgcluster.py down --base-dir /tmp/rr
"""


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgcluster.py",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every command run"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    up = sub.add_parser(
        "up",
        help="create and start a cluster, leave it running; print its settings",
        description="Create a primary + hot standby, start both, wait until the "
        "standby streams, and print `export` lines for the DJReplica example.",
    )
    up.add_argument(
        "--base-dir",
        help="empty or new directory (short path); default: a fresh /tmp/rr-* dir",
    )
    up.add_argument("--primary-port", type=int, help="default: a free port")
    up.add_argument("--standby-port", type=int, help="default: a free port")
    up.add_argument(
        "--pg-bin", help="PostgreSQL bin dir (default: $PG_BIN or the newest installed)"
    )

    down = sub.add_parser(
        "down",
        help="stop both nodes and delete the base dir",
        description="Stop both nodes and delete --base-dir (nothing to do if it "
        "does not exist).",
    )
    down.add_argument("--base-dir", required=True)
    down.add_argument(
        "--keep", action="store_true", help="keep the data directories and logs"
    )

    for name, help_text in (
        ("stop", "stop a node (pg_ctl stop, -m fast by default): connections refused"),
        ("start", "start a stopped node and wait until it is ready"),
        ("sigstop", "freeze a node with SIGSTOP (TCP accepted, nothing answers)"),
        ("sigcont", "unfreeze a node frozen by sigstop"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=_sentence(help_text))
        cmd.add_argument("node", choices=NODES)
        cmd.add_argument("--base-dir", required=True)
        if name == "stop":
            cmd.add_argument(
                "--mode", choices=("smart", "fast", "immediate"), default="fast"
            )

    for name, help_text in (
        ("pause-replay", "pause WAL replay on the standby (it lags behind writes)"),
        ("resume-replay", "resume WAL replay on the standby"),
        ("promote", "promote the standby to a second primary (pg_promote)"),
        ("status", "show both nodes; exit 1 unless both run and the standby streams"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=_sentence(help_text))
        cmd.add_argument("--base-dir", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="pgcluster: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _dispatch(args)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Output piped into `head`: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        cluster = LocalCluster(
            args.base_dir, args.primary_port, args.standby_port, args.pg_bin
        )
        cluster.up()
        cluster.detach()
        print(f"# base dir: {cluster.base_dir}")
        for node in NODES:
            print(
                f"# {node}: {HOST}:{cluster.port(node)}  log: {cluster.log_file(node)}"
            )
        for key, value in cluster.env_vars().items():
            print(f"export {key}={value}")
        print(f"# stop with: python {sys.argv[0]} down --base-dir {cluster.base_dir}")
        return 0

    if args.command == "down" and not os.path.exists(args.base_dir):
        print(f"# nothing to do: {args.base_dir} does not exist")
        return 0
    cluster = LocalCluster.load(args.base_dir)
    if args.command == "down":
        cluster.down(keep=args.keep)
    elif args.command == "stop":
        cluster.stop(args.node, mode=args.mode)
    elif args.command == "start":
        cluster.start(args.node)
    elif args.command == "sigstop":
        cluster.sigstop(args.node)
    elif args.command == "sigcont":
        cluster.sigcont(args.node)
    elif args.command == "pause-replay":
        cluster.pause_replay()
    elif args.command == "resume-replay":
        cluster.resume_replay()
    elif args.command == "promote":
        cluster.promote()
    elif args.command == "status":
        return _print_status(cluster)
    return 0


def _print_status(cluster: LocalCluster) -> int:
    healthy = True
    report = cluster.status()
    for node, info in report.items():
        print(f"{node}:")
        for key, value in info.items():
            print(f"  {key}: {value}")
        if info["process"] != "running" or "error" in info:
            healthy = False
    standby = report["standby"]
    if standby.get("in_recovery") and standby.get("wal_receiver") != "streaming":
        healthy = False
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
