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
    now. Through a proxy the endpoint is the place, and the proxy picks the server: a
    new connection through it is checked to reach a primary on the newest timeline
    seen (one round trip, on this path only) before the write runs; if it reaches a
    standby, an older primary, or nothing, the next connect through the endpoint is
    tried every ``RETRY_PULSE`` s until ``PRIMARY_WAIT_TIMEOUT``, so that the write
    goes ahead as soon as the proxy's checks move, not a probe's ``RISE`` later."""
    if not is_proxy(db.alias):
        db.ensure_connection()
        return
    cluster = _runtime.cluster or _runtime.get_cluster()
    deadline = time.monotonic() + _runtime.get_settings().primary_wait_timeout
    last = exc
    while True:
        db._rr_avoid = None  # the endpoint itself, whatever the probes saw last
        db._rr_no_wait = True
        try:
            db.ensure_connection()
            with db.wrap_database_errors:
                cursor = db.create_cursor()
                try:
                    cursor.execute(_ROLE_SQL)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            if row is not None and not row[0] and _current(row[1]):
                return
        except DatabaseError as again:
            if isinstance(again, roles.PrimaryUnavailable) or faults.node_fault(again) is None:
                raise  # two primaries, or not a node fault: as without a proxy
            last = again
        finally:
            db._rr_no_wait = False
        if time.monotonic() >= deadline:
            raise last
        db._rr_discard()
        cluster.reprobe()
        time.sleep(RETRY_PULSE)


#: How often a write waiting through a proxy tries a new connection through it.
RETRY_PULSE = 0.1

#: The role and timeline of the server a connection reached (the probe's rules).
_ROLE_SQL = (
    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END"
)


def _current(timeline: Any) -> bool:
    """Whether a primary on ``timeline`` is no older than the newest one seen on any
    node: never a write to an old primary the proxy still reaches."""
    newest = roles.roles().get("timeline")
    return newest is None or timeline is None or int(timeline) >= int(newest)
