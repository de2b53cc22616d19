"""``REPLICA_ROUTER`` settings: gathered from Django, validated by the Rust core.

Every rule about a setting lives in the core (``src/settings``), and every key is
declared once, in its settings table (``src/settings/table.rs``: the keys, defaults,
rules, ``RouterSettings``' attributes and the docs' reference come from it): this
module only hands it Django's values and turns its ``ConfigError`` into Django's
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

__all__ = ["KEYS", "RouterSettings", "SettingsError", "core_databases", "is_postgres_engine", "load"]

#: The validated settings (a frozen class of the core).
RouterSettings = _core.RouterSettings
#: The keys of ``REPLICA_ROUTER``, in the settings table's order.
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


def captured_databases() -> dict[str, dict[str, Any]] | None:
    """The connection settings captured at app loading (``None`` before)."""
    return _captured_databases


def forget_captured_databases() -> None:
    global _captured_databases
    _captured_databases = None


#: ENGINE names the core knows as PostgreSQL (``src/settings.rs``).
POSTGRES_ENGINES = frozenset(
    {
        "django.db.backends.postgresql",
        "django.db.backends.postgresql_psycopg2",
        "django.contrib.gis.db.backends.postgis",
        "replica_router.backends.postgresql",
    }
)
_subclass_cache: dict[str, bool] = {}


def is_postgres_engine(engine: object) -> bool:
    """Whether Django's ENGINE ``engine`` is PostgreSQL: one of Django's names for it,
    or a backend whose ``DatabaseWrapper`` subclasses Django's PostgreSQL one (the
    router's, PostGIS, a project's own). Loading the backend is what Django does
    when the alias is first used; one that cannot be loaded is not PostgreSQL."""
    if not isinstance(engine, str):
        return False
    if engine in POSTGRES_ENGINES:
        return True
    known = _subclass_cache.get(engine)
    if known is None:
        try:
            from django.db.backends.postgresql.base import DatabaseWrapper as Postgres
            from django.db.utils import load_backend

            wrapper = load_backend(engine).DatabaseWrapper
            known = isinstance(wrapper, type) and issubclass(wrapper, Postgres)
        except Exception:  # not importable, or no DatabaseWrapper: not PostgreSQL
            known = False
        _subclass_cache[engine] = known
    return known


def core_databases() -> dict[str, Any]:
    """``DATABASES`` as handed to the core: an alias whose backend subclasses Django's
    PostgreSQL backend under a name the core does not know is given the standard
    name (the core cannot look at Python classes)."""
    out = dict(settings.DATABASES)
    for alias, db in out.items():
        engine = db.get("ENGINE") if isinstance(db, dict) else None
        if engine not in POSTGRES_ENGINES and is_postgres_engine(engine):
            out[alias] = {**db, "ENGINE": "django.db.backends.postgresql"}
    return out


def load() -> _core.RouterSettings:
    """Validates ``REPLICA_ROUTER`` against ``DATABASES``; raises ``SettingsError``."""
    router = getattr(settings, "REPLICA_ROUTER", None)
    try:
        return _core.RouterSettings(router, core_databases(), _captured_databases)
    except _core.ConfigError as exc:
        raise SettingsError(
            str(exc),
            check_id=getattr(exc, "check_id", E_SETTINGS),
            hint=getattr(exc, "hint", ""),
        ) from None
