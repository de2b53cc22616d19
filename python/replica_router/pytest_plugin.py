"""The pytest plugin (entry point ``pytest11``, loaded by pytest on its own): with
pytest-django, this package's settings errors stop the session, with their check ids,
before any test database is created (see ``testing.check_before_test_databases``).

It does nothing without pytest-django, without configured Django settings, or when
the app is not installed.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """After pytest-django set Django up, before any fixture creates a database."""
    if not session.config.pluginmanager.has_plugin("django"):
        return
    from django.apps import apps
    from django.conf import settings

    if not settings.configured or not apps.ready or not apps.is_installed("replica_router"):
        return
    from django.core.management.base import SystemCheckError

    from replica_router import testing

    try:
        testing.check_before_test_databases()
    except SystemCheckError as exc:
        pytest.exit(f"SystemCheckError: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    testing.install_hooks()
