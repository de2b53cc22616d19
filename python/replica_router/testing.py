"""Users' test suites: deterministic routing under Django's test runner and pytest-django.

A test run is detected by what ``django.test.utils.setup_test_environment()`` leaves
behind (``django.core.mail.outbox``); both runners call it before any test database
exists. Under it:

* every read goes to the primary, unless ``REPLICA_ROUTER["TEST_REPLICA_READS"]``
  is true. Replicas mirror the primary's test database (``TEST["MIRROR"]``), so a
  routed read could otherwise hit a copy that has not replayed the test's own writes
  yet, or an alias the running test does not allow (``DatabaseOperationForbidden``);
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

__all__ = ["active", "install_hooks", "readers"]

Read = Callable[[], str]
ReadHinted = Callable[[str], "str | None"]

_hooks_installed = False


def active() -> bool:
    """Whether a Django test environment is set up in this process."""
    mail = sys.modules.get("django.core.mail")
    return mail is not None and hasattr(mail, "outbox")


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

        def read_primary() -> str:
            return primary

        def read_primary_hinted(db: str) -> str | None:
            return primary if db in members else None

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
    classes) end its unit of work. Only when ``django.test`` is loaded; idempotent."""
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
