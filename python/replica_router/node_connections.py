"""The live Django connections of each alias, and what a node's failure does to them:
its down epoch grows (a connection opened before is stale and is closed before it is
used again), and when it freezes their sockets are shut down.

Shared by the request path (:mod:`replica_router.faults`, the database backend) and
the thread that turns the core's state-change events into actions
(:mod:`replica_router._runtime`); it imports neither, so neither imports the other
back through it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

__all__ = [
    "down_epoch",
    "interrupt",
    "note_down",
    "note_down_event",
    "note_reported",
    "register",
]

logger = logging.getLogger("replica_router")

#: Per alias, how many times its node went down; a connection opened before the
#: latest one is stale and is closed before it is used again.
down_epoch: dict[str, int] = {}
_epoch_lock = threading.Lock()

#: Django connection objects (one per thread and alias) per alias, for `interrupt`.
_by_alias: dict[str, weakref.WeakSet[Any]] = {}
_by_alias_lock = threading.Lock()


#: Django aliases whose down epoch real traffic bumped (``note_reported``), with when:
#: the core's down event that follows such a report is not counted again.
_reported: dict[str, float] = {}
#: How long a reported fault stands for the core's down event of it (the event comes
#: at once, or at the node's immediate re-probe: well within this).
REPORTED_WINDOW = 5.0


def note_down(alias: str) -> None:
    """The node went down: every connection opened to it before now is stale."""
    with _epoch_lock:
        down_epoch[alias] = down_epoch.get(alias, 0) + 1


def note_reported(alias: str) -> None:
    """Real traffic of ``alias`` failed on a node that was taking reads: its older
    connections are stale now, before the core's down event (a retry elsewhere must
    not reuse one). That event then counts nothing more (``note_down_event``)."""
    with _epoch_lock:
        down_epoch[alias] = down_epoch.get(alias, 0) + 1
        _reported[alias] = time.monotonic()


def note_down_event(node: str) -> None:
    """The core says node ``node`` went down (its name: the Django alias, or
    ``alias@host:port`` for a host of a multi-host alias): the alias's connections
    are stale, unless real traffic reported this very fault a moment ago."""
    alias = node.split("@", 1)[0]
    with _epoch_lock:
        reported = _reported.pop(alias, None)
        if reported is not None and time.monotonic() - reported < REPORTED_WINDOW:
            return
        down_epoch[alias] = down_epoch.get(alias, 0) + 1


def register(alias: str, connection: Any) -> None:
    """Remember a Django connection object of ``alias`` (weakly)."""
    with _by_alias_lock:
        conns = _by_alias.get(alias)
        if conns is None:
            conns = _by_alias[alias] = weakref.WeakSet()
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
    with _by_alias_lock:
        wrappers = list(_by_alias.get(alias, ()))
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
