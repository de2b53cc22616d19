"""What the test suites share: the session's router settings, the session cluster,
and the helpers that real-server tests poll and measure with.

Nothing here starts a server. ``tests/conftest.py`` starts the session cluster (only
when real-server tests were asked for) and hands it over with :func:`set_cluster`;
the fixtures that use it live in ``tests/server/conftest.py``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.pgcluster import NODES, LocalCluster, Node

__all__ = [
    "BACKEND",
    "FALL",
    "INTERVAL",
    "RISE",
    "ROOT",
    "ROUTER_SETTINGS",
    "TIMEOUT",
    "UNRELATED_DB",
    "WINDOW",
    "LocalCluster",
    "databases_override",
    "dead_port",
    "drop_test_databases",
    "existing_test_databases",
    "offline_databases",
    "open_fds",
    "restore",
    "router_settings",
    "session_cluster",
    "set_cluster",
    "states",
    "thread_count",
    "wait_all_up",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
# The example project's `router` app (ReplicationModel) is installed in every run.
if str(ROOT / "example_project") not in sys.path:
    sys.path.insert(0, str(ROOT / "example_project"))

# Probe fast so that detection windows are short: FALL x INTERVAL + TIMEOUT = 0.5 s.
INTERVAL = 0.1
TIMEOUT = 0.3
FALL = 2
RISE = 2
WINDOW = FALL * INTERVAL + TIMEOUT

#: A database of the project's that is not part of the cluster (issue: a good
#: neighbour). It lives on the primary's server but is no standby of anything.
UNRELATED_DB = "unrelated"
BACKEND = "replica_router.backends.postgresql"

ROUTER_SETTINGS: dict[str, Any] = {
    # Explicit: with the unrelated alias there are two other PostgreSQL aliases, and
    # the router never guesses which of them is a standby.
    "REPLICAS": ["replica"],
    "PROBE_INTERVAL": INTERVAL,
    "PROBE_TIMEOUT": TIMEOUT,
    "FALL": FALL,
    "RISE": RISE,
}

_cluster: LocalCluster | None = None


def set_cluster(cluster: LocalCluster | None) -> None:
    """Hand the session cluster over (``None``: there is none, or no longer)."""
    global _cluster
    _cluster = cluster


def session_cluster() -> LocalCluster:
    """The session's primary + standby; fails clearly when the run started none."""
    if _cluster is None:
        raise RuntimeError(
            "no PostgreSQL cluster in this run: tests/conftest.py starts one only when "
            "a path outside tests/fast is given (e.g. `pytest tests/server`)"
        )
    return _cluster


def databases(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    """The session's ``DATABASES`` on ``cluster``: ``default`` and ``replica`` (the
    router's backend) and ``other``, a database outside the cluster."""
    return {
        # The cluster's aliases use the router's backend (passive health, read
        # retry, bounded connections), as the quickstart recommends.
        "default": {**cluster.dsn("primary"), "ENGINE": BACKEND},
        "replica": {**cluster.dsn("standby"), "ENGINE": BACKEND},
        "other": {
            **cluster.dsn("primary"),
            "NAME": UNRELATED_DB,
            "OPTIONS": {"connect_timeout": 2},
        },
    }


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it
    is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_databases() -> dict[str, dict[str, Any]]:
    """The session's three aliases, shaped as on the real cluster, on loopback ports
    where nothing listens: probes and connections are refused at once."""
    dsn = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "postgres",
    }
    return {
        "default": {**dsn, "ENGINE": BACKEND, "PORT": str(dead_port())},
        "replica": {**dsn, "ENGINE": BACKEND, "PORT": str(dead_port())},
        "other": {
            **dsn,
            "NAME": UNRELATED_DB,
            "PORT": str(dead_port()),
            "OPTIONS": {"connect_timeout": 2},
        },
    }


@contextmanager
def databases_override(databases: dict[str, dict[str, Any]], **extra: Any) -> Iterator[None]:
    """``override_settings(DATABASES=...)`` without Django's warning that overriding
    DATABASES is unusual (the router re-reads it on ``setting_changed``)."""
    from django.test import override_settings

    override = override_settings(DATABASES=databases, **extra)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES", UserWarning)
        override.enable()
    try:
        yield
    finally:
        override.disable()


def router_settings(**changes: Any) -> Any:
    """``override_settings`` of the session's ``REPLICA_ROUTER`` with ``changes``."""
    from django.test import override_settings

    return override_settings(REPLICA_ROUTER={**ROUTER_SETTINGS, **changes})


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> float:
    """Polls until ``predicate()`` is truthy; returns the seconds it took. Fails on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.2f}s: {predicate}")
        time.sleep(interval)


def states() -> dict[str, str]:
    """Each node's state as the router sees it, by alias."""
    import replica_router

    return {n["alias"]: n["state"] for n in replica_router.status()}


def wait_all_up(timeout: float = 10) -> None:
    """Waits until the router sees every node up."""
    wait_until(lambda: set(states().values()) == {"up"}, timeout)


def restore(cluster: LocalCluster) -> None:
    """Put the session cluster back to primary + streaming standby."""
    for node in NODES:
        if cluster.is_frozen(node):
            cluster.sigcont(node)
    for node in NODES:
        if not cluster.is_running(node):
            cluster.start(node, wait_streaming=False)
    for undo in (cluster.resume_replay, cluster.resume_streaming):
        try:
            undo()
        except Exception:
            pass
    cluster.wait_streaming()


def open_fds() -> int:
    """File descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    """Threads of this process."""
    return len(os.listdir("/proc/self/task"))


def existing_test_databases(cluster: LocalCluster, node: Node = "primary") -> list[str]:
    """Names of test databases (``test_*``) that exist on ``node``."""
    out = cluster.sql(
        node, r"SELECT datname FROM pg_database WHERE datname LIKE 'test\_%' ORDER BY 1"
    )
    return out.split()


def drop_test_databases(cluster: LocalCluster) -> None:
    """Drop leftover test databases (even with sessions still attached to them)."""
    for name in existing_test_databases(cluster):
        cluster.sql("primary", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
