"""Users' test suites: deterministic routing under Django's test runner and pytest-django.

A test run is recognised by what ``django.test.utils.setup_test_environment()`` sets
up and ``teardown_test_environment()`` removes: ``_TestState.saved_data`` (the
settings it saved to restore). Django's runner and pytest-django both call it before
any test database exists. Nothing else creates it: not Django's locmem email backend,
which creates ``mail.outbox`` in any process that uses it. Under it:

* every read goes to the primary, unless ``REPLICA_ROUTER["TEST_REPLICA_READS"]``
  is true. Replicas mirror the primary's test database (``TEST["MIRROR"]``), so a
  routed read could otherwise hit a copy that has not replayed the test's own writes
  yet, or an alias the running test does not allow (``DatabaseOperationForbidden``);
  these reads are counted in ``decisions()`` as ``test_primary``;
* with ``TEST_REPLICA_READS``, reads are routed as in production (to the real
  standby), except that a read never goes to an alias the running test does not
  allow (its ``databases``);
* each test is a unit of work: a write pins reads to the primary for the rest of the
  test, and the pin ends with the test (no time-window pin leaks into the next one).

Nothing here runs outside a test run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replica_router import _core, conf

__all__ = ["active", "check_before_test_databases", "install_hooks", "readers"]

Read = Callable[[], str]
ReadHinted = Callable[[str], "str | None"]

_hooks_installed = False


def active() -> bool:
    """Whether a Django test environment is set up in this process (between
    ``setup_test_environment()`` and ``teardown_test_environment()``)."""
    utils = sys.modules.get("django.test.utils")
    state = getattr(utils, "_TestState", None) if utils is not None else None
    return state is not None and hasattr(state, "saved_data")


def allowed(alias: str) -> bool:
    """Whether the running test may query ``alias``.

    Django's test cases wrap the connection methods of the aliases a test did not
    ask for (its ``databases``) in ``_DatabaseFailure`` objects; look for them.
    """
    from django.db import connections

    connect = connections[alias].__dict__.get("connect")
    return connect is None or type(connect).__name__ != "_DatabaseFailure"


def readers(
    cluster: _core.Cluster, settings: conf.RouterSettings, normal: tuple[Read, ReadHinted]
) -> tuple[Read, ReadHinted]:
    """The read functions to use under a test runner."""
    primary = settings.primary
    members = frozenset(settings.aliases)
    if not settings.test_replica_reads:

        # Through the core, so that these reads are counted (`test_primary`).
        read_primary = cluster.read_test_primary

        def read_primary_hinted(db: str) -> str | None:
            return read_primary() if db in members else None

        return read_primary, read_primary_hinted

    read, read_hinted = normal

    def read_allowed() -> str:
        alias = read()
        return alias if alias == primary or allowed(alias) else primary

    def read_allowed_hinted(db: str) -> str | None:
        alias = read_hinted(db)
        if alias is None or alias == primary or allowed(alias):
            return alias
        return primary

    return read_allowed, read_allowed_hinted


def end_test() -> None:
    """After each test: its unit of work is over (pins dropped)."""
    from replica_router import _runtime, context

    context.end_request()
    if not context.test_units and active():
        # The cluster was built before the test environment was set up.
        _runtime.use_readers()


def install_hooks() -> None:
    """Make each test of Django's test cases (and pytest-django's, which drive the same
    classes) end its unit of work. Only when ``django.test`` is loaded; idempotent.
    Called when the cluster is built, and by the ``test`` command and the pytest
    plugin before the tests run.

    It wraps ``SimpleTestCase._post_teardown``: Django has no public per-test hook,
    and a runner mixin (``DiscoverRunner.get_resultclass``) would ask users to set
    ``TEST_RUNNER`` and would not reach ``--parallel`` workers, which this does. The
    wrapper only calls ``end_test()``, which does nothing outside a test run."""
    global _hooks_installed
    testcases = sys.modules.get("django.test.testcases")
    if _hooks_installed or testcases is None:
        return
    base: Any = testcases.SimpleTestCase
    original = base._post_teardown

    def _post_teardown(self: Any) -> None:
        try:
            original(self)
        finally:
            end_test()

    base._post_teardown = _post_teardown
    _hooks_installed = True


def check_before_test_databases() -> None:
    """Raises ``SystemCheckError`` naming the check ids of this package's settings
    errors, if any. Called by this app's ``test`` command and the pytest plugin before
    any test database is created: with a settings error, replicas have no
    ``TEST["MIRROR"]``, and Django would try to create a test database on a hot
    standby (and leave those it created on the other servers behind)."""
    from django.core.checks import ERROR
    from django.core.management.base import SystemCheckError

    from replica_router import checks

    errors = [m for m in checks.check_settings() if m.level >= ERROR]
    if errors:
        raise SystemCheckError(
            "System check identified some issues:\n\nERRORS:\n"
            + "\n".join(str(e) for e in errors)
            + f"\n\nSystem check identified {len(errors)} issue(s) that stop the tests "
            "before any test database is created (a test database could otherwise be "
            "created on a hot standby)."
        )
