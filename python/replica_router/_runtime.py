"""The process's one cluster: built lazily from settings, probed by the Rust core.

Nothing starts at import. The first routing call (or ``status()``) builds the
:class:`~replica_router._core.Cluster`, which starts its prober thread, and a small
Python thread that turns the core's state-change events into ``logging`` records:
the Rust thread never calls into Python. After ``fork()`` the core restarts probing
in the child on its own; the logging thread is restarted here.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable

from replica_router import _core, _testmode, conf, context, node_connections, states

logger = logging.getLogger("replica_router")

#: The process's cluster; ``None`` until first use. ``ReadWriteRouter``'s native
#: methods (``_core.db_for_read``/``db_for_write``) route with the one installed in
#: the core by ``use_readers``.
cluster: _core.Cluster | None = None
settings: conf.RouterSettings | None = None

_lock = threading.Lock()
_log_thread: threading.Thread | None = None
_atexit_registered = False


def _hinted_reader(c: _core.Cluster, aliases: tuple[str, ...]) -> Callable[[str], str | None]:
    members = frozenset(aliases)
    hinted = c.read_hinted

    def hinted_read(db: str) -> str | None:
        # An object of a database outside the cluster: no opinion, it stays there.
        return hinted(db) if db in members else None

    return hinted_read


def use_readers(c: _core.Cluster | None = None, s: conf.RouterSettings | None = None) -> None:
    """Install the cluster in the core's routers, with the read functions for the
    current mode: the core's own decision, or under a test runner ``_testmode.readers``."""
    c, s = c or cluster, s or settings
    if c is None or s is None:
        return
    is_test = _testmode.active()
    context.test_units = is_test
    readers = None
    if is_test:
        readers = _testmode.readers(c, s, (c.read, _hinted_reader(c, s.aliases)))
    _core.install_router(c, context.note_write, readers)


def end_test() -> None:
    """After each test of a test run: its unit of work is over (pins dropped), and
    a cluster built before the test environment was set up gets the test readers."""
    context.end_request()
    if not context.test_units and _testmode.active():
        use_readers()


def _thread_connections_for(aliases: tuple[str, ...]) -> Callable[[], tuple[object, ...]]:
    def thread_connections() -> tuple[object, ...]:
        from django.db import connections

        return tuple(connections[alias] for alias in aliases)

    return thread_connections


def get_cluster() -> _core.Cluster:
    """The cluster, built on first use (raises ``ImproperlyConfigured`` on bad settings)."""
    global cluster, settings, _atexit_registered
    c = cluster
    if c is not None:
        return c
    with _lock:
        if cluster is not None:
            return cluster
        s = conf.load()
        c = _core.Cluster(
            s,
            state_getter=context.current,
            thread_connections=_thread_connections_for(s.node_aliases),
        )
        context.pin_seconds = s.pin_seconds
        c.start()
        settings = s
        # Installed in the core before `cluster` is set: a router call that finds it
        # there never comes back here.
        use_readers(c, s)
        cluster = c
        _testmode.install_hooks(end_test)
        _warn_if_app_missing()
        _start_log_thread(c)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        logger.debug("probing %s", ", ".join(s.aliases))
        return c


_app_missing_logged = False


def _warn_if_app_missing() -> None:
    """W006, logged once per process: the router is used without its app (the checks,
    ``replica_status``, the test mirrors and per-request units of work come with it).
    The system checks cannot say it: they are registered by the app."""
    global _app_missing_logged
    from django.apps import apps

    if _app_missing_logged or apps.is_installed("replica_router"):
        return
    _app_missing_logged = True
    logger.warning(
        "replica_router.W006: the router is used but 'replica_router' is not in "
        "INSTALLED_APPS: no system checks, no replica_status command, replicas do not "
        "mirror the primary in tests, and pins after a write are not ended with each "
        "request. Add 'replica_router' to INSTALLED_APPS."
    )


def retry_alias(tried: list[str]) -> str | None:
    """Where to run a read again after node faults on every alias in ``tried`` (the
    core's rules; under a test runner, never an alias the test does not allow)."""
    c = cluster or get_cluster()
    while True:
        alias = c.retry(tried)
        if alias is None or not _testmode.active() or _testmode.allowed(alias):
            return alias
        tried = [*tried, alias]


_settings_only: conf.RouterSettings | None = None


def peek_settings() -> conf.RouterSettings | None:
    """The settings without building the cluster (no prober started): for
    ``allow_migrate``/``allow_relation``, which Django also calls from management
    commands and system checks. ``None`` when the settings are bad: the checks
    report them, and the router then has no opinion."""
    global _settings_only
    s = settings or _settings_only
    if s is None:
        try:
            s = _settings_only = conf.load()
        except conf.SettingsError:
            return None
    return s


def get_settings() -> conf.RouterSettings:
    get_cluster()
    assert settings is not None
    return settings


def _log_events(c: _core.Cluster) -> None:
    while not c.closed:
        try:
            for level, message, alias, state, interrupt in c.wait_events(1.0):
                if level:  # 0: already logged by the host's shared prober
                    logger.log(level, "%s", message)
                if alias is not None and state in (states.DOWN, states.MISCONFIGURED):
                    # The one count of a node going down (unless real traffic
                    # reported it a moment ago: faults.report counted it then).
                    node_connections.note_down_event(alias)
                if alias is not None and interrupt:
                    # Frozen or blackholed: queries waiting on it would wait for as
                    # long as it stays so; make them fail now (reads are retried).
                    node_connections.interrupt(alias, primary=alias == c.primary)
        except Exception:  # pragma: no cover - logging must never kill the thread
            logger.exception("replica_router: could not log a state change")


def _start_log_thread(c: _core.Cluster) -> None:
    global _log_thread
    t = threading.Thread(target=_log_events, args=(c,), name="replica-router-log", daemon=True)
    t.start()
    _log_thread = t


def reset() -> None:
    """Stop probing and forget the cluster; the next use builds it from settings again."""
    global cluster, settings, _log_thread, _settings_only
    with _lock:
        _core.uninstall_router()
        c, cluster, settings = cluster, None, None
        _settings_only = None
        t, _log_thread = _log_thread, None
    if c is not None:
        c.close()
    if t is not None and t is not threading.current_thread():
        t.join(timeout=5)


def shutdown() -> None:
    """At interpreter exit: stop the prober (bounded by one probe) before finalization."""
    reset()


def _after_fork_in_child() -> None:
    # The parent's logging thread does not exist here; the core restarts probing on
    # the next routing call, and we restart the thread that logs its events.
    global _lock
    _lock = threading.Lock()
    if cluster is not None and not cluster.closed:
        # Probe at once: a worker forked from a preloaded master must not route by
        # the state it inherited, and must have fresh state within one interval.
        cluster.start()
        _start_log_thread(cluster)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
