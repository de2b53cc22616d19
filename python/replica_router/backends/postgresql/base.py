"""Django's PostgreSQL backend, plus what the router needs to see on the request path.

For an alias of the cluster (the primary and the replicas), and only for those:

* **Bounded connections.** A connect bound (``connect_timeout``, derived from
  ``PROBE_TIMEOUT`` unless the alias sets its own) and TCP keepalives.
* **Passive health.** A connection or query that fails because the node failed
  (refused, reset, lost, timed out, admin shutdown, too many connections; never an
  application error) is reported to the core at once: the node leaves reads.
* **Safe read retry.** A read-only statement that failed that way, outside any
  transaction and before any row reached the caller, runs again on another node
  (the core picks it, by the same rules as a read; never a node tried already).
  Writes and anything inside ``atomic()`` fail exactly as with Django's backend.
* **Interruptible connections.** Live connections are remembered (weakly) so that,
  when the prober declares a node down for timeouts (frozen, blackholed), queries
  waiting on it are interrupted and retried instead of hanging.

Works with psycopg 3 and psycopg2, persistent connections (``CONN_MAX_AGE``),
``CONN_HEALTH_CHECKS`` and Django's connection pool (``OPTIONS["pool"]``).
"""

from __future__ import annotations

import math
from typing import Any

from django.db import DatabaseError
from django.db.backends.postgresql import base as postgresql
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from replica_router import _runtime, faults

__all__ = ["DatabaseWrapper"]

#: libpq keepalive settings for cluster connections (seconds); a peer that stops
#: acknowledging is given up within about idle + interval x count.
KEEPALIVES_IDLE = 5
KEEPALIVES_INTERVAL = 2
KEEPALIVES_COUNT = 3
#: psycopg and libpq round a connect_timeout below 2 s up to 2 s.
MIN_CONNECT_TIMEOUT = 2


class DatabaseWrapper(postgresql.DatabaseWrapper):  # type: ignore[misc]
    """A cluster node's connection that reports node faults and retries safe reads."""

    _rr_epoch = 0

    def _rr_member(self) -> bool:
        """Whether this alias is a node of the router's cluster."""
        try:
            return self.alias in _runtime.get_settings().aliases
        except Exception:  # bad settings: the checks report them; act as Django
            return False

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if self._rr_member():
            s = _runtime.get_settings()
            options = self.settings_dict.get("OPTIONS") or {}
            if "connect_timeout" not in options:
                bound = max(MIN_CONNECT_TIMEOUT, math.ceil(2 * s.probe_timeout))
                params["connect_timeout"] = bound
            params.setdefault("keepalives", 1)
            params.setdefault("keepalives_idle", KEEPALIVES_IDLE)
            params.setdefault("keepalives_interval", KEEPALIVES_INTERVAL)
            params.setdefault("keepalives_count", KEEPALIVES_COUNT)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        epoch = faults.down_epoch.get(self.alias, 0)
        try:
            connection = super().get_new_connection(conn_params)
        except Exception as exc:
            kind = faults.node_fault(exc) if self._rr_member() else None
            if kind is not None:
                faults.report(self.alias, kind, exc)
            raise
        self._rr_epoch = epoch
        faults.register(self.alias, self)
        return connection

    def _rr_may_retry(self) -> bool:
        """Outside any transaction: nothing can be repeated or lost by running a
        read-only statement again elsewhere."""
        return (
            not self.in_atomic_block
            and bool(self.settings_dict.get("AUTOCOMMIT", True))
            and (self.connection is None or self.autocommit)
        )

    def _rr_refresh(self) -> None:
        """Close a connection opened before its node last went down (broken, or
        about to be), outside transactions, so that it is not used and reported."""
        if (
            self.connection is not None
            and self._rr_epoch != faults.down_epoch.get(self.alias, 0)
            and self._rr_may_retry()
        ):
            self._rr_discard()

    def _cursor(self, name: str | None = None) -> Any:
        self._rr_refresh()
        try:
            return super()._cursor(name)
        except DatabaseError as exc:
            if name is not None or not self._rr_member() or not self._rr_may_retry():
                raise
            if faults.node_fault(exc) is None:
                raise
            # The statement is not known yet: a read can still go elsewhere.
            return FailedConnectCursor(self, exc)

    def make_cursor(self, cursor: Any) -> CursorWrapper:
        return RetryingCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> CursorWrapper:
        return RetryingCursorDebugWrapper(cursor, self)

    def _rr_discard(self) -> None:
        """Drop a connection whose node failed under it (outside transactions only)."""
        try:
            self.close()
        except Exception:
            self.connection = None


class _RetryMixin:
    """Runs a failed read-only statement again on another node of the cluster."""

    cursor: Any
    db: DatabaseWrapper

    def _execute(self, sql: str, params: Any, *ignored_wrapper_args: Any) -> Any:
        try:
            return super()._execute(sql, params, *ignored_wrapper_args)  # type: ignore[misc]
        except DatabaseError as exc:
            return self._rr_retry(sql, params, exc)

    def _rr_retry(self, sql: str, params: Any, exc: DatabaseError) -> Any:
        db = self.db
        if not isinstance(db, DatabaseWrapper) or not db._rr_member():
            raise exc
        kind = faults.node_fault(exc)
        if kind is None:
            raise exc
        faults.report(db.alias, kind, exc)
        if not db._rr_may_retry() or not faults.is_read_only(sql):
            raise exc
        db._rr_discard()
        inner, self.db, result = _run_elsewhere([db.alias], sql, params, exc)
        old, self.cursor = self.cursor, inner
        if old is not None:
            try:
                old.close()
            except Exception:
                pass
        return result


def _run_elsewhere(tried: list[str], sql: str, params: Any, exc: DatabaseError) -> Any:
    """Run a read on the next node the core picks (never one in ``tried``); returns
    (DB-API cursor, its DatabaseWrapper, execute's result). Node faults on the way
    are reported and the next node is tried; any other error is raised as is; when
    no node is left, the original error ``exc`` is raised."""
    while True:
        alias = _runtime.retry_alias(tried)
        if alias is None:
            raise exc
        tried.append(alias)
        other = _connection(alias)
        connected = False
        try:
            if isinstance(other, DatabaseWrapper):
                other._rr_refresh()
            other.ensure_connection()
            connected = True
            with other.wrap_database_errors:
                inner = other.create_cursor()
                result = inner.execute(sql) if params is None else inner.execute(sql, params)
        except DatabaseError as again:
            kind = faults.node_fault(again)
            if kind is None:
                raise
            if connected:  # a failed connect was reported by get_new_connection
                faults.report(alias, kind, again)
            if isinstance(other, DatabaseWrapper):
                other._rr_discard()
            continue
        return inner, other, result


def _connection(alias: str) -> Any:
    from django.db import connections

    return connections[alias]


class RetryingCursorWrapper(_RetryMixin, CursorWrapper):
    """``CursorWrapper`` whose failed reads run again on another node."""


class RetryingCursorDebugWrapper(_RetryMixin, CursorDebugWrapper):
    """``CursorDebugWrapper`` (``DEBUG = True``) whose failed reads run again."""


class FailedConnectCursor(RetryingCursorWrapper):
    """Stands in for a cursor when connecting to the node failed: a read-only
    statement runs on another node; anything else raises the connect error, as
    Django's own backend would have (only a little later: at ``execute``)."""

    def __init__(self, db: DatabaseWrapper, exc: DatabaseError) -> None:
        super().__init__(None, db)
        self._rr_error = exc

    def _execute(self, sql: str, params: Any, *ignored_wrapper_args: Any) -> Any:
        if self.cursor is not None:
            return super()._execute(sql, params, *ignored_wrapper_args)
        if not faults.is_read_only(sql) or not self.db._rr_may_retry():
            raise self._rr_error
        return self._rr_retry_after_connect(sql, params)

    def _rr_retry_after_connect(self, sql: str, params: Any) -> Any:
        # The failed connect was reported already (get_new_connection).
        self.cursor, self.db, result = _run_elsewhere([self.db.alias], sql, params, self._rr_error)
        return result

    def _executemany(self, sql: str, param_list: Any, *ignored_wrapper_args: Any) -> Any:
        if self.cursor is None:
            raise self._rr_error
        return super()._executemany(sql, param_list, *ignored_wrapper_args)

    def callproc(self, procname: str, params: Any = None, kparams: Any = None) -> Any:
        if self.cursor is None:
            raise self._rr_error
        return super().callproc(procname, params, kparams)

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.close()

    def __getattr__(self, attr: str) -> Any:
        if self.__dict__.get("cursor") is None:
            raise self.__dict__["_rr_error"]
        return super().__getattr__(attr)

    def __iter__(self) -> Any:
        if self.cursor is None:
            raise self._rr_error
        return super().__iter__()
