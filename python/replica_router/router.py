"""``ReadWriteRouter``: the class listed in ``DATABASE_ROUTERS``.

A read is decided in one call into the Rust core (``Cluster.read``) from the caller's
routing state (``use_primary``, pins, read-your-writes token), whether this thread's
cluster connection is inside a transaction, an ``instance`` hint, and the published
health snapshot. It does no I/O and takes no lock a probe can hold.

The router has an opinion only about its own cluster: an object loaded from an alias
outside it gets ``None`` from every method, so Django keeps it on its own database.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from replica_router import _runtime
from replica_router.context import note_write

__all__ = ["ReadWriteRouter"]


def _instance_db(hints: dict[str, Any]) -> str | None:
    """The alias an ``instance`` hint was loaded from (None: no hint, or unsaved)."""
    instance = hints.get("instance")
    if instance is None:
        return None
    db = getattr(getattr(instance, "_state", None), "db", None)
    return db if isinstance(db, str) else None


class ReadWriteRouter:
    """Writes to the primary; reads to a healthy replica (or the primary, by weight)
    unless the caller must see its own writes.

    Add ``"replica_router.ReadWriteRouter"`` to ``DATABASE_ROUTERS``; configure with
    the optional ``REPLICA_ROUTER`` setting.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        # A Python frame that calls the core positionally: a builtin called with
        # Django's `**hints` costs more than this frame does.
        if hints:
            db = _instance_db(hints)
            if db is not None:
                return (_runtime.read_hinted or _runtime.get_read_hinted())(db)
        return (_runtime.read or _runtime.get_read())()

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        cluster = _runtime.cluster or _runtime.get_cluster()
        if hints:
            db = _instance_db(hints)
            if db is not None and db not in _runtime.get_settings().aliases:
                return None  # an object of another database stays there
        note_write()
        return cluster.write()

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        settings = _runtime.peek_settings()
        if settings is None:
            return None
        aliases = settings.aliases
        if obj1._state.db in aliases and obj2._state.db in aliases:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        # Django (6.1+ also from plain `manage.py check`) asks about every alias: answer
        # from the settings alone, and have no opinion while they are bad (the system
        # checks say why) rather than raise.
        settings = _runtime.peek_settings()
        if settings is None:
            return None
        if db == settings.primary:
            return True
        if db in settings.replicas:
            return False
        return None
