"""Faults on the request path: what the database backend reports to the core, which
reads may run again elsewhere, and the connections to interrupt when a node freezes.

The rules that say whether a failure is a node fault live in the Rust core
(``_core.classify_failure``, the same rules as for probes); this module only takes
what it needs out of a driver's exception (psycopg 3 or psycopg2).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import weakref
from typing import Any

from replica_router import _core

__all__ = [
    "down_epoch",
    "interrupt",
    "is_read_only",
    "node_fault",
    "note_down",
    "register",
    "report",
]

logger = logging.getLogger("replica_router")

#: Statements that only read. Anything else (or a read that takes locks, calls a
#: sequence, or writes through ``SELECT ... INTO``) is never run a second time.
_READ = re.compile(r"^\s*(?:\(\s*)*(?:SELECT|WITH|VALUES|SHOW|TABLE|EXPLAIN)\b", re.IGNORECASE)
_NOT_READ = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|FOR\s+(?:NO\s+KEY\s+)?UPDATE|FOR\s+(?:KEY\s+)?SHARE"
    r"|NEXTVAL|SETVAL|PG_ADVISORY\w*|ANALYZE|COPY|CALL|CREATE|ALTER|DROP|TRUNCATE|LOCK"
    r"|NOTIFY|LISTEN|SET_CONFIG|LO_\w+|DBLINK\w*)\b",
    re.IGNORECASE,
)

#: Per alias, how many times its node went down; a connection opened before the
#: latest one is stale and is closed before it is used again.
down_epoch: dict[str, int] = {}
_epoch_lock = threading.Lock()

#: Django connection objects (one per thread and alias) per alias, for `interrupt`.
_connections: dict[str, weakref.WeakSet[Any]] = {}
_connections_lock = threading.Lock()


def is_read_only(sql: str) -> bool:
    """Whether ``sql`` surely only reads (so running it again cannot write twice)."""
    return bool(_READ.match(sql)) and not _NOT_READ.search(sql)


def node_fault(exc: BaseException) -> str | None:
    """The fault kind when ``exc`` (a Django ``DatabaseError`` or a driver error) says
    the node failed; ``None`` for application and configuration errors."""
    from django.db import OperationalError

    from replica_router.roles import PrimaryUnavailable

    if isinstance(exc, PrimaryUnavailable):
        return None  # the router's own verdict, not something a node did
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if not isinstance(exc, OperationalError) and not _is_driver_operational(cause):
        # Only OperationalError means "the connection or server failed"; an
        # IntegrityError, ProgrammingError... never takes a node out.
        return None
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return _core.classify_failure(sqlstate, str(cause))


def _is_driver_operational(err: BaseException) -> bool:
    # psycopg and psycopg2 both name it so (AdminShutdown etc. are subclasses).
    return any(c.__name__ == "OperationalError" for c in type(err).__mro__)


def note_down(alias: str) -> None:
    """The node went down: every connection opened to it before now is stale."""
    with _epoch_lock:
        down_epoch[alias] = down_epoch.get(alias, 0) + 1


def report(alias: str, kind: str, exc: BaseException, *, node: int | None = None) -> bool:
    """Tell the core that ``alias`` failed under real traffic (no I/O, no waiting);
    ``node``: the node the connection went to, when known (else where the alias
    connects now). Returns whether the node was taking reads until now."""
    from replica_router import _runtime

    cluster = _runtime.cluster
    if cluster is None:
        return False
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    was_in_reads = cluster.report_fault(alias, kind, str(cause), node)
    if was_in_reads:
        note_down(alias)
    return was_in_reads


def register(alias: str, connection: Any) -> None:
    """Remember a Django connection object of ``alias`` (weakly)."""
    with _connections_lock:
        conns = _connections.get(alias)
        if conns is None:
            conns = _connections[alias] = weakref.WeakSet()
        try:
            conns.add(connection)
        except TypeError:  # a driver object without weak references: not tracked
            pass


def interrupt(alias: str, *, primary: bool) -> int:
    """Shut down the sockets of the live connections to ``alias``: queries waiting
    on a frozen node then fail at once (and reads are retried elsewhere). Returns how
    many were interrupted. Shutting a socket down, unlike closing its descriptor,
    leaves the descriptor to its owner, so a driver never sees a reused number.

    On the primary, a connection inside a transaction is left alone: a write is never
    failed on the prober's word alone (it fails, as with Django, if the node does)."""
    with _connections_lock:
        wrappers = list(_connections.get(alias, ()))
    done = 0
    for wrapper in wrappers:
        conn = getattr(wrapper, "connection", None)
        if conn is None or _closed(conn):
            continue
        if primary and (wrapper.in_atomic_block or not getattr(wrapper, "autocommit", True)):
            continue
        try:
            fd = conn.fileno()
        except Exception:  # closed meanwhile
            continue
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            with socket.socket(fileno=dup) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            done += 1
        except OSError:
            pass
    if done:
        logger.warning("interrupted %d connection(s) to %r, which stopped answering", done, alias)
    return done


def _closed(conn: Any) -> bool:
    closed = getattr(conn, "closed", False)
    return bool(closed)
