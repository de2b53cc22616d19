"""Users' test suites: deterministic routing under Django's test runner and pytest-django.

A test run is one that ``django.test.utils.setup_test_environment()`` set up
(:func:`active`; how it is recognised: :mod:`replica_router._testmode`). Under it:

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

from replica_router import _runtime, _testmode
from replica_router._runtime import end_test
from replica_router._testmode import active, allowed, readers

__all__ = [
    "active",
    "allowed",
    "check_before_test_databases",
    "end_test",
    "install_hooks",
    "readers",
]


def install_hooks() -> None:
    """Make each test of Django's test cases (and pytest-django's) end its unit of
    work (:func:`end_test` after each one); only when ``django.test`` is loaded,
    idempotent. Called by the ``test`` command and the pytest plugin before the
    tests run (and when the cluster is built)."""
    _testmode.install_hooks(_runtime.end_test)


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
