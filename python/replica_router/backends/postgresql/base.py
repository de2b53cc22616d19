"""Django's PostgreSQL backend, plus what the router needs to see on the request path.

For the cluster's aliases only (docs/backend.md and docs/roles.md tell the whole story):
bounded connections (connect bound, keepalives); passive health (a node fault seen by
a query is reported to the core at once); safe read retry (a read-only statement that
failed that way, outside transactions and before any row, runs on another node);
interruptible connections (queries waiting on a node declared down for timeouts are
interrupted and retried); writes follow the primary (``_rr_place`` alone decides which
host a connection opens: the primary now for the primary alias, waiting through a
gap; the core's host for a multi-host alias; a write runs again only where it surely
never ran: a failed connect or a 25006 rejection outside ``atomic()``, once).

Works with psycopg 3 and psycopg2, ``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS`` and
Django's connection pool (``OPTIONS["pool"]``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from django.db import DatabaseError
from django.db.backends.postgresql import base as postgresql
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from replica_router import _runtime, faults, roles
from replica_router.backends.postgresql import proxy

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
    #: The node the open connection went to, and the roles epoch it was checked at.
    _rr_node: int | None = None
    _rr_role_epoch = -1
    #: The node the next connect goes to (set by ``_rr_place``).
    _rr_next_node: int | None = None
    #: A node to keep the primary alias away from for the next connect (it rejected
    #: a write as read-only, or refused the connect).
    _rr_avoid: int | None = None
    #: Per alias, the node its connection pool (``OPTIONS["pool"]``) was built for.
    _rr_pool_nodes: ClassVar[dict[str, int]] = {}
    #: Host and port for the pool being built now (``get_connection_params``).
    _rr_pool_place: tuple[Any, Any] | None = None
    #: Set while ``_cursor`` connects: the statement is not known yet, so the connect
    #: does not wait for a primary but goes to the last one known (a read fails over
    #: if it is gone; a write it rejects runs on the new primary, waiting for one).
    _rr_no_wait = False

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
            # The connect path decides the one host this connection goes to (see
            # ``_rr_place``): libpq must not try other hosts, or reject the one chosen,
            # behind the router's back.
            params.pop("target_session_attrs", None)
            if self._rr_pool_place is not None:
                params["host"], params["port"] = self._rr_pool_place
        return params

    def _rr_follow_pool(self, node: int, conn_params: dict[str, Any]) -> None:
        """Django's pool connects where it was built: when this alias's node changed
        (a switchover), close it (connections in use close when returned) and build
        it anew for the node ``conn_params`` point at."""
        pools = self._connection_pools
        if self.alias in pools and self._rr_pool_nodes.get(self.alias) == node:
            return
        if self.alias in pools:
            self.close_pool()
        self._rr_pool_place = (conn_params.get("host"), conn_params.get("port"))
        try:
            self.pool  # noqa: B018 - built from get_connection_params, placed
        finally:
            self._rr_pool_place = None
        self._rr_pool_nodes[self.alias] = node

    def _rr_place(self, conn_params: dict[str, Any]) -> dict[str, Any]:
        """The one place that decides which node a new connection of this alias goes
        to: ``conn_params`` aimed there (the primary alias waits for a primary, see
        ``roles.target``). Also notes the node, for reports and the role check."""
        self._rr_next_node = None
        if not self._rr_member():
            return conn_params
        try:
            node, host, port = roles.target(
                self.alias,
                wait=not self._rr_no_wait,
                avoid=self._rr_avoid,
                fallback=self._rr_no_wait,
            )
        finally:
            self._rr_avoid = None  # spent on this connect, whatever came of it
        self._rr_next_node = node
        s = _runtime.get_settings()
        if self.alias not in s.multi_host_aliases and node == s.node_aliases.index(self.alias):
            return conn_params
        # Another node has this alias's role now (a switchover or failover), or the
        # alias lists several hosts (libpq's multi-host form): one host, the one chosen.
        return {**conn_params, "host": host, "port": port}

    def ensure_connection(self) -> None:
        if self.connection is not None:
            self._rr_refresh()
        super().ensure_connection()

    def close_if_unusable_or_obsolete(self) -> None:
        # Request boundaries: get_autocommit() connects. A connection to drop (node down,
        # role changed) is closed, not reopened here: that connect would be outside any
        # read retry, to a node maybe restarting, and the primary alias's would wait.
        if self.connection is not None:
            self._rr_refresh()  # node down or role changed: closed here, not reopened
        if self.connection is None:
            return
        self._rr_no_wait = True
        try:
            super().close_if_unusable_or_obsolete()
        finally:
            self._rr_no_wait = False

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        epoch = faults.down_epoch.get(self.alias, 0)
        cluster = _runtime.cluster
        role_epoch = cluster.role_epoch if cluster is not None else -1
        conn_params = self._rr_place(conn_params)
        node = self._rr_next_node
        if node is not None and (self.settings_dict.get("OPTIONS") or {}).get("pool"):
            self._rr_follow_pool(node, conn_params)
        try:
            connection = super().get_new_connection(conn_params)
        except Exception as exc:
            if self._rr_member():
                # A node fault takes the node out; on the primary, every node is
                # re-probed at once. A connect's timeout interrupts nothing.
                faults.report(self.alias, exc, node=node, connecting=True)
            raise
        self._rr_epoch = epoch
        self._rr_node, self._rr_role_epoch = node, role_epoch
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
        about to be), or to a node whose role changed (the alias connects elsewhere
        now), outside transactions, so that it is not used and reported."""
        if self.connection is None or not self._rr_may_retry():
            return
        if self._rr_epoch != faults.down_epoch.get(self.alias, 0) or self._rr_avoid is not None:
            self._rr_discard()
            return
        cluster = _runtime.cluster
        if cluster is None or cluster.role_epoch == self._rr_role_epoch or self._rr_node is None:
            return
        epoch = cluster.role_epoch
        try:
            node = roles.target(self.alias, wait=False)[0]
        except roles.PrimaryUnavailable:
            return  # no primary known: the next write tells (and waits on connect)
        if node != self._rr_node:
            self._rr_discard()
        else:
            self._rr_role_epoch = epoch

    def _cursor(self, name: str | None = None) -> Any:
        self._rr_no_wait = True
        try:
            return super()._cursor(name)
        except DatabaseError as exc:
            if name is not None or not self._rr_member() or not self._rr_may_retry():
                raise
            if not isinstance(exc, roles.PrimaryUnavailable) and faults.node_fault(exc) is None:
                raise
            # The statement is not known yet: a read can still go elsewhere.
            return FailedConnectCursor(self, exc)
        finally:
            self._rr_no_wait = False

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
        if roles.is_read_only_rejection(exc) and db.alias == _runtime.get_settings().primary:
            return self._rr_write_again(sql, params, exc, db._rr_node)
        if faults.report(db.alias, exc, node=db._rr_node) is None:
            raise exc
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

    def _rr_write_again(self, sql: str, params: Any, exc: DatabaseError, failed: int | None) -> Any:
        """The primary alias's node rejected a statement as read-only (it was
        demoted), or refused the connect: nothing ran. Outside ``atomic()`` it runs
        once on the primary now (the connect waits for one); inside, it fails as with
        Django and the next transaction connects anew."""
        db = self.db
        cluster = _runtime.cluster or _runtime.get_cluster()
        cluster.reprobe()
        db._rr_avoid = failed
        if not db._rr_may_retry():
            raise exc
        db._rr_discard()
        proxy.connect_for_write(db, exc)
        with db.wrap_database_errors:
            inner = db.create_cursor()
            result = inner.execute(sql) if params is None else inner.execute(sql, params)
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
    no node is left, the original error ``exc`` is raised; but a multi-host alias or
    a proxy endpoint that failed is tried once more first, on a new connection, which
    lands on another server (the connect path's choice, or the proxy's)."""
    again_through = tried[0] if tried and _reaches_several(tried[0]) else None
    while True:
        alias = _runtime.retry_alias(tried)
        if alias is None:
            if again_through is None:
                raise exc
            alias, again_through = again_through, None
        tried.append(alias)
        other = _connection(alias)
        connected = False
        try:
            if isinstance(other, DatabaseWrapper):
                other._rr_refresh()
                other._rr_no_wait = True  # a read never waits for a primary
            try:
                other.ensure_connection()
            finally:
                if isinstance(other, DatabaseWrapper):
                    other._rr_no_wait = False
            connected = True
            with other.wrap_database_errors:
                inner = other.create_cursor()
                result = inner.execute(sql) if params is None else inner.execute(sql, params)
        except DatabaseError as again:
            if connected:
                kind = faults.report(alias, again, node=getattr(other, "_rr_node", None))
            else:  # a failed connect was reported by get_new_connection
                kind = faults.node_fault(again)
            if kind is None:
                raise
            if isinstance(other, DatabaseWrapper):
                other._rr_discard()
            continue
        return inner, other, result


def _reaches_several(alias: str) -> bool:
    """Whether a new connection of ``alias`` may reach another server than the last."""
    return alias in _runtime.get_settings().multi_host_aliases or proxy.is_proxy(alias)


def _connection(alias: str) -> Any:
    from django.db import connections

    return connections[alias]


class RetryingCursorWrapper(_RetryMixin, CursorWrapper):
    """``CursorWrapper`` whose failed reads run again on another node."""


class RetryingCursorDebugWrapper(_RetryMixin, CursorDebugWrapper):
    """``CursorDebugWrapper`` (``DEBUG = True``) whose failed reads run again."""


class FailedConnectCursor(RetryingCursorWrapper):
    """Stands in for a cursor when connecting to the node failed: a read-only
    statement runs on another node; a write of the primary alias (outside any
    transaction: nothing ran) runs once on the primary now, waiting for one through
    a switchover; anything else raises the connect error, as Django's own backend
    would have (only a little later: at ``execute``)."""

    def __init__(self, db: DatabaseWrapper, exc: DatabaseError) -> None:
        super().__init__(None, db)
        self._rr_error = exc

    def _execute(self, sql: str, params: Any, *ignored_wrapper_args: Any) -> Any:
        if self.cursor is not None:
            return super()._execute(sql, params, *ignored_wrapper_args)
        if not self.db._rr_may_retry():
            raise self._rr_error
        if not faults.is_read_only(sql):
            if self.db.alias != _runtime.get_settings().primary:
                raise self._rr_error
            # A write whose connect failed (or found no primary: None) never ran:
            # once, on the primary now, waiting for one.
            failed = self.db._rr_next_node
            return self._rr_write_again(sql, params, self._rr_error, failed)
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
