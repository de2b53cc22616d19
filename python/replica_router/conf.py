"""``REPLICA_ROUTER`` settings: gathered from Django, validated by the Rust core.

Every rule about a setting lives in the core (``src/settings``): this module only
hands it Django's values and turns its ``ConfigError`` into Django's
``ImproperlyConfigured``. The system checks, the router and ``replica_status`` all
use the one ``RouterSettings`` object it returns, so anything a read would reject,
``manage.py check`` rejects first, with the same message.

Settings are read when the cluster is built (lazily, on first use) and again after
``setting_changed`` for ``REPLICA_ROUTER`` or ``DATABASES``, so ``override_settings``
works.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from replica_router import _core

__all__ = ["KEYS", "RouterSettings", "SettingsError", "load"]

#: The validated settings (a frozen class of the core).
RouterSettings = _core.RouterSettings
#: The keys of ``REPLICA_ROUTER`` (the core's list).
KEYS: tuple[str, ...] = tuple(_core.SETTINGS_KEYS)

#: The check id of a settings problem the core did not name (should not happen).
E_SETTINGS = "replica_router.E001"

# DATABASES as they were when the app loaded: the test runner later renames NAME to
# the test database, and a probe connection held there would block its DROP DATABASE.
_captured_databases: dict[str, dict[str, Any]] | None = None


class SettingsError(ImproperlyConfigured):
    """A setting that cannot work. ``check_id`` is the system check that reports it."""

    def __init__(self, message: str, *, check_id: str = E_SETTINGS, hint: str = "") -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def capture_databases() -> None:
    """Remember the connection settings before test databases rename them."""
    global _captured_databases
    _captured_databases = copy.deepcopy(dict(settings.DATABASES))


def forget_captured_databases() -> None:
    global _captured_databases
    _captured_databases = None


def load() -> _core.RouterSettings:
    """Validates ``REPLICA_ROUTER`` against ``DATABASES``; raises ``SettingsError``."""
    router = getattr(settings, "REPLICA_ROUTER", None)
    try:
        return _core.RouterSettings(router, dict(settings.DATABASES), _captured_databases)
    except _core.ConfigError as exc:
        raise SettingsError(
            str(exc),
            check_id=getattr(exc, "check_id", E_SETTINGS),
            hint=getattr(exc, "hint", ""),
        ) from None
