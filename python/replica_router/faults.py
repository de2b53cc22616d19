"""Faults on the request path: what the database backend reports to the core, which
reads may run again elsewhere. The connections of each alias (down epochs, interrupts
of a frozen node) live in :mod:`replica_router.node_connections`, re-exported here
for the backend.

The rules that say whether a failure is a node fault live in the Rust core (the
same rules as for probes): ``report`` hands the failure's SQLSTATE and message to
``Cluster.report_failure``, which classifies it and reports a node fault in one
call. This module only takes what it needs out of a driver's exception (psycopg 3
or psycopg2). A node that goes down is counted once: here, at once, when real
traffic found it failing while it took reads (so that no retry reuses a connection
to it), else by the state-change event the core emits for it (see
:mod:`replica_router._runtime` and ``node_connections.note_down_event``).
"""

from __future__ import annotations

import re

from replica_router import _core, _runtime
from replica_router.node_connections import (
    down_epoch,
    interrupt,
    note_down,
    note_reported,
    register,
)

__all__ = [
    "down_epoch",
    "interrupt",
    "is_read_only",
    "node_fault",
    "note_down",
    "register",
    "report",
]

#: Statements that only read. Anything else (or a read that takes locks, calls a
#: sequence, or writes through ``SELECT ... INTO``) is never run a second time.
_READ = re.compile(r"^\s*(?:\(\s*)*(?:SELECT|WITH|VALUES|SHOW|TABLE|EXPLAIN)\b", re.IGNORECASE)
_NOT_READ = re.compile(
    r"\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|FOR\s+(?:NO\s+KEY\s+)?UPDATE|FOR\s+(?:KEY\s+)?SHARE"
    r"|NEXTVAL|SETVAL|PG_ADVISORY\w*|ANALYZE|COPY|CALL|CREATE|ALTER|DROP|TRUNCATE|LOCK"
    r"|NOTIFY|LISTEN|SET_CONFIG|LO_\w+|DBLINK\w*)\b",
    re.IGNORECASE,
)


def is_read_only(sql: str) -> bool:
    """Whether ``sql`` surely only reads (so running it again cannot write twice)."""
    return bool(_READ.match(sql)) and not _NOT_READ.search(sql)


def node_fault(exc: BaseException) -> str | None:
    """The fault kind when ``exc`` (a Django ``DatabaseError`` or a driver error) says
    the node failed, or refused this process's login (a configuration error, which the
    core keeps as this process's own: ``report`` never takes the node out for other
    processes); ``None`` for application errors. Classifies only: nothing is
    reported."""
    failure = _failure(exc)
    return None if failure is None else _core.classify_failure(*failure)


def _failure(exc: BaseException) -> tuple[str | None, str] | None:
    """The SQLSTATE (if any) and message of a failure that may be a node's; ``None``
    for one that never is."""
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
    return sqlstate, str(cause)


def _is_driver_operational(err: BaseException) -> bool:
    # psycopg and psycopg2 both name it so (AdminShutdown etc. are subclasses).
    return any(c.__name__ == "OperationalError" for c in type(err).__mro__)


def report(
    alias: str, exc: BaseException, *, node: int | None = None, connecting: bool = False
) -> str | None:
    """Tell the core that a connection or query of ``alias`` failed with ``exc`` (no
    I/O, no waiting): one core call classifies it and, for a node fault, takes the
    node out of reads (re-probing every node at once on the primary). Returns the
    fault kind, ``None`` when ``exc`` is not a node fault. ``node``: the node the
    connection went to, when known (else where the alias connects now);
    ``connecting``: ``exc`` is a connect's failure (a timeout then interrupts no
    open connection)."""
    failure = _failure(exc)
    if failure is None:
        return None
    # Not built here: a fault before the first route has no cluster to tell.
    cluster = _runtime.cluster
    if cluster is None:
        return _core.classify_failure(*failure)
    kind, was_in_reads = cluster.report_failure(alias, *failure, node, connecting=connecting)
    if was_in_reads:
        # Stale now, not a beat later with the core's down event: a read retried
        # elsewhere (or the next request) must not reuse a connection to this server,
        # whichever alias opened it (after a switchover, or with multi-host aliases,
        # two aliases can reach one server).
        for same in _aliases_on_server(alias, node):
            note_reported(same)
    return kind


def _aliases_on_server(alias: str, node: int | None) -> set[str]:
    """``alias`` and every alias with a node at the same host and port as ``node``."""
    settings = _runtime.settings
    if node is None or settings is None:
        return {alias}
    nodes = settings.nodes
    if not 0 <= node < len(nodes):
        return {alias}
    host, port = nodes[node]["host"], nodes[node]["port"]
    return {alias} | {n["alias"] for n in nodes if n["host"] == host and n["port"] == port}
