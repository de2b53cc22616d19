"""Configuration and tools of the Patroni bed (``tests/patronicluster.py``): where
Patroni and etcd are, Patroni's configuration of a node, and a small HTTP client for
Patroni's REST API and etcd's JSON gateway. Standard library only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.pgcluster import (
    HOST,
    REPLICATION_PASSWORD,
    REPLICATION_USER,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    ClusterError,
    _redact,
)

if TYPE_CHECKING:
    from tests.patronicluster import PatroniCluster

__all__ = ["NAMESPACE", "SCOPE", "find_etcd", "find_patroni", "http", "patroni_config", "psql"]

ROOT = Path(__file__).resolve().parent.parent
SCOPE = "rr"
NAMESPACE = "/service/"
#: Patroni's timing: the ttl is its floor, and the HA loop runs every second so that a
#: switchover takes what Patroni needs, not what the loop waits.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 1, 5


def find_patroni() -> str:
    """The ``patroni`` executable: ``$PATRONI``, else the project's ``.venv-patroni``."""
    path = os.environ.get("PATRONI") or str(ROOT / ".venv-patroni" / "bin" / "patroni")
    if not os.access(path, os.X_OK):
        raise ClusterError(
            f"Patroni not found at {path}: run `make patroni` (a venv with "
            "patroni[etcd3,psycopg3] 4.1) or set PATRONI to the executable"
        )
    return path


def find_etcd() -> str:
    """The ``etcd`` server binary (Debian package ``etcd-server``)."""
    path = os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(path, os.X_OK):
        raise ClusterError(
            "etcd not found: run `make patroni` (Debian: apt-get install etcd-server)"
        )
    return path


def http(method: str, url: str, body: object = None, timeout: float = 2) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON or text). Raises OSError when
    nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def patroni_config(bed: PatroniCluster, name: str) -> dict[str, Any]:
    """Patroni's configuration of node ``name`` of ``bed`` (written as JSON, which is YAML)."""
    auth_md5 = f"host all all {HOST}/32 md5"
    return {
        "scope": SCOPE,
        "namespace": NAMESPACE,
        "name": name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"{HOST}:{bed.rest_ports[name]}",
            "connect_address": f"{HOST}:{bed.rest_ports[name]}",
        },
        "etcd3": {"hosts": [f"{HOST}:{bed.etcd_port}"]},
        "bootstrap": {
            "dcs": {
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "maximum_lag_on_failover": 16 * 1024 * 1024,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {"max_connections": 200, "wal_keep_size": "256MB"},
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth-host": "md5"}, {"auth-local": "trust"}],
        },
        "postgresql": {
            "listen": f"{HOST}:{bed.pg_ports[name]}",
            "connect_address": f"{HOST}:{bed.pg_ports[name]}",
            "data_dir": bed.data_dir(name),
            "bin_dir": bed.pg_bin,
            "pgpass": os.path.join(bed.node_dir(name), "pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
                "replication": {
                    "username": REPLICATION_USER,
                    "password": REPLICATION_PASSWORD,
                },
            },
            "parameters": {
                "unix_socket_directories": bed.node_dir(name),
                "fsync": "off",
                "max_connections": 200,
            },
            "pg_hba": [
                "local all all trust",
                f"host replication {REPLICATION_USER} {HOST}/32 md5",
                auth_md5,
            ],
        },
    }


def psql(pg_bin: str, port: int, query: str, timeout: float, what: str) -> str:
    """``query`` on 127.0.0.1:``port`` as the superuser with psql (password through the
    environment, query through stdin); stdout stripped, rows unaligned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=SUPERUSER_PASSWORD, PGCONNECT_TIMEOUT="3", PGSSLMODE="disable")
    args = [os.path.join(pg_bin, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", HOST, "-p", str(port), "-U", SUPERUSER, "-d", "postgres", "-f", "-"]  # fmt: skip
    try:
        proc = subprocess.run(
            args, input=query, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what} timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed: {_redact(proc.stderr.strip())}")
    return proc.stdout.strip()
