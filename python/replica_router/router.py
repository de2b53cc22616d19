"""``ReadWriteRouter``: the class listed in ``DATABASE_ROUTERS``.

Python decides only what needs Django's state (transactions, the caller's context);
which node is healthy, lagging or eligible is the Rust core's business, and picking
one is a single call that does no I/O.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections
from django.db.models import Model

from replica_router import _runtime
from replica_router.context import current, note_write

__all__ = ["ReadWriteRouter"]

# Indices of the core's reason counters (``_core.REASONS``).
_TRANSACTION = 1
_PINNED = 2
_USE_PRIMARY = 3

_local = threading.local()


def _transaction_alias(aliases: tuple[str, ...]) -> str | None:
    """The cluster alias whose connection is inside a transaction in this thread.

    ``connections[alias]`` costs microseconds (asgiref's Local); a sync thread keeps
    the same connection objects for its lifetime, so they are looked up once per
    thread. Async code cannot run queries in its own thread, so a transaction is
    never open on the objects seen there.
    """
    conns = getattr(_local, "conns", None)
    if conns is None or conns[0] is not aliases:
        conns = _local.conns = (aliases, tuple((a, connections[a]) for a in aliases))
    for alias, conn in conns[1]:
        if conn.in_atomic_block or (not conn.autocommit and conn.connection is not None):
            return alias
    return None


class ReadWriteRouter:
    """Writes to the primary; reads to a healthy replica (or the primary, by weight)
    unless the caller must see its own writes.

    Add ``"replica_router.ReadWriteRouter"`` to ``DATABASE_ROUTERS``; configure with
    the optional ``REPLICA_ROUTER`` setting.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        cluster = _runtime.cluster or _runtime.get_cluster()
        st = current()
        if st is not None:
            if st.primary_depth:
                return cluster.primary_read(_USE_PRIMARY)
            if st.is_pinned():
                return cluster.primary_read(_PINNED)
        settings = _runtime.settings
        if settings is not None:
            in_tx = _transaction_alias(settings.aliases)
            if in_tx is not None:
                if in_tx == settings.primary:
                    return cluster.primary_read(_TRANSACTION)
                return in_tx
        if hints:
            instance = hints.get("instance")
            if instance is not None:
                db = getattr(getattr(instance, "_state", None), "db", None)
                if db is not None:
                    hinted = cluster.hinted_read(db)
                    if hinted is not None:
                        return hinted
        if st is not None and st.min_lsn is not None:
            return cluster.pick_read_min_lsn(st.min_lsn)
        return cluster.pick_read()

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        cluster = _runtime.cluster or _runtime.get_cluster()
        note_write()
        return cluster.write()

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        aliases = _runtime.get_settings().aliases
        if obj1._state.db in aliases and obj2._state.db in aliases:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        settings = _runtime.get_settings()
        if db == settings.primary:
            return True
        if db in settings.replicas:
            return False
        return None
