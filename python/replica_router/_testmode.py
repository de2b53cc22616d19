"""Whether this process runs a Django test suite, and what routing does under one: the
leaf that :mod:`replica_router._runtime` (which installs the readers) and
:mod:`replica_router.testing` (the public module) share, importing neither.

A test run is recognised by what ``django.test.utils.setup_test_environment()`` sets
up and ``teardown_test_environment()`` removes: ``_TestState.saved_data`` (the
settings it saved to restore). Django's runner and pytest-django both call it before
any test database exists. Nothing else creates it: not Django's locmem email backend,
which creates ``mail.outbox`` in any process that uses it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replica_router import _core, conf

__all__ = ["active", "allowed", "install_hooks", "readers"]

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


def install_hooks(end_test: Callable[[], None]) -> None:
    """Make each test of Django's test cases (and pytest-django's, which drive the same
    classes) end its unit of work: ``end_test`` runs after each one. Only when ``django.test`` is loaded; idempotent.
    Called when the cluster is built (``_runtime.end_test``), and through
    ``testing.install_hooks`` by the ``test`` command and the pytest plugin before
    the tests run.

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
