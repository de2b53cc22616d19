"""``ReadWriteRouter``: the class listed in ``DATABASE_ROUTERS``.

A read is decided in one native call (``_core.db_for_read``, which Django's dispatch
calls with no Python frame in between) from the caller's routing state
(``use_primary``, pins, read-your-writes token), whether this thread's cluster
connection is inside a transaction, an ``instance`` hint, and the published health
snapshot. It does no I/O and takes no lock a probe can hold.

The router has an opinion only about its own cluster: an object loaded from an alias
outside it gets ``None`` from every method, so Django keeps it on its own database.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from replica_router import _core, _runtime

__all__ = ["ReadWriteRouter"]


class ReadWriteRouter:
    """Writes to the primary; reads to a healthy replica (or the primary, by weight)
    unless the caller must see its own writes.

    Add ``"replica_router.ReadWriteRouter"`` to ``DATABASE_ROUTERS``; configure with
    the optional ``REPLICA_ROUTER`` setting.

    ``db_for_read`` and ``db_for_write`` are native: a read (or a write, which also
    pins the caller's reads to the primary) in one call into the core, the
    ``instance`` hint included. An object of a database outside the cluster gets
    ``None`` from both. The cluster is built from the settings on first use.
    """

    # No instance ``__dict__``: Django looks the methods up on every call, and an
    # instance dict is one more lookup that always misses.
    __slots__ = ()

    # Static: Django's lookup returns the native functions as they are, with no bound
    # method to allocate per call (they need no ``self``).
    db_for_read = staticmethod(_core.db_for_read)
    db_for_write = staticmethod(_core.db_for_write)

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
