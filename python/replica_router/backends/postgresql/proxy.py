"""The backend's side of an alias that is a proxy or pooler endpoint (HAProxy,
PgBouncer; the core recognises one, docs/roles.md "Behind a proxy or pooler"): a new
connection through it may reach another server than the last one did, so a failed
connect or a standby reached there is worth one more connect through the same
endpoint, where without a proxy the core would pick another node."""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError

from replica_router import _runtime, faults, roles

__all__ = ["connect_for_write", "is_proxy"]


def is_proxy(alias: str) -> bool:
    """Whether ``alias`` is a proxy or pooler endpoint, as the core observed it."""
    try:
        return alias in roles.roles().get("proxies", ())
    except Exception:  # no cluster (bad settings): not one of ours to judge
        return False


def connect_for_write(db: Any, exc: DatabaseError) -> None:
    """Open the primary alias's connection for a write that runs again (nothing ran
    yet; ``exc`` is why). ``db`` is the backend's ``DatabaseWrapper`` (not imported:
    that module imports this one). Without a proxy the core's choice is the primary
    now. Through a proxy, which may still send a new connection to a standby (or a
    dead server) for a moment after its checks moved, the connection is first checked
    to reach a primary (one round trip, on this path only); if it does not, or its
    connect fails, the next connect through the proxy is tried, each waiting for a
    probe that says the endpoint reaches a primary, until ``PRIMARY_WAIT_TIMEOUT``."""
    if not is_proxy(db.alias):
        db.ensure_connection()
        return
    deadline = time.monotonic() + _runtime.get_settings().primary_wait_timeout
    last = exc
    while True:
        node = db._rr_next_node
        try:
            db.ensure_connection()
            node = db._rr_node
            with db.wrap_database_errors:
                cursor = db.create_cursor()
                try:
                    cursor.execute("SELECT pg_is_in_recovery()")
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            if row is not None and not row[0]:
                return
        except DatabaseError as again:
            if isinstance(again, roles.PrimaryUnavailable) or faults.node_fault(again) is None:
                raise
            last = again
        if time.monotonic() >= deadline:
            raise last
        db._rr_discard()
        db._rr_avoid = node  # the next connect waits for a probe that says primary
        (_runtime.cluster or _runtime.get_cluster()).reprobe()
