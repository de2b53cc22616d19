"""``REPLICA_ROUTER`` settings: defaults, validation, and the node list for the core.

Settings are read when the cluster is built (lazily, on first use) and again after
``setting_changed`` for ``REPLICA_ROUTER`` or ``DATABASES``, so ``override_settings``
works. Every error is an ``ImproperlyConfigured`` that names the key and the value.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "RouterSettings", "SettingsError", "load"]

DEFAULTS: dict[str, Any] = {
    "PRIMARY": "default",
    "REPLICAS": None,
    "PRIMARY_READ_WEIGHT": 1,
    "PROBE_INTERVAL": 1.0,
    "PROBE_TIMEOUT": 1.0,
    "FALL": 2,
    "RISE": 2,
    "MAX_LAG_SECONDS": None,
    "MAX_LAG_BYTES": None,
    "PIN_SECONDS": 5.0,
    "COOKIE_NAME": "replica_router_lsn",
    "COOKIE_MAX_AGE": 300,
    "TEST_MIRROR": True,
    "TEST_REPLICA_READS": False,
}

POSTGRES_ENGINES = (
    "django.db.backends.postgresql",
    "django.contrib.gis.db.backends.postgis",
    "replica_router.backends.postgresql",
)

#: System-check ids by family of problem (see ``checks.py``).
E_SETTINGS = "replica_router.E001"
E_AMBIGUOUS_REPLICAS = "replica_router.E003"


class SettingsError(ImproperlyConfigured):
    """A setting that cannot work. ``check_id`` is the system check that reports it."""

    def __init__(self, message: str, *, check_id: str = E_SETTINGS, hint: str = "") -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint

# DATABASES as they were when the app loaded: the test runner later renames NAME to
# the test database, and a probe connection held there would block its DROP DATABASE.
_captured_databases: dict[str, dict[str, Any]] | None = None


def capture_databases() -> None:
    """Remember the connection settings before test databases rename them."""
    global _captured_databases
    _captured_databases = copy.deepcopy(dict(settings.DATABASES))


def forget_captured_databases() -> None:
    global _captured_databases
    _captured_databases = None


@dataclass(frozen=True)
class RouterSettings:
    """Validated settings."""

    primary: str
    replicas: dict[str, float]
    primary_read_weight: float
    probe_interval: float
    probe_timeout: float
    fall: int
    rise: int
    max_lag_seconds: float | None
    max_lag_bytes: int | None
    pin_seconds: float
    cookie_name: str
    cookie_max_age: int
    test_mirror: bool
    #: Under a test runner, reads may go to replicas (default: every read goes to the
    #: primary, so users' test suites are deterministic).
    test_replica_reads: bool
    #: ``REPLICAS`` was not set: the replica was taken by the default rule.
    replicas_implicit: bool
    nodes: list[dict[str, Any]] = field(repr=False)
    #: Primary first; one tuple object, so the hot path can compare it by identity.
    aliases: tuple[str, ...] = ()


def _key(name: str) -> str:
    return f'REPLICA_ROUTER["{name}"]'


def _number(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{name} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f < minimum or (strict and f == minimum):
        op = ">" if strict else ">="
        raise SettingsError(f"{name} must be a number {op} {minimum:g}, got {value!r}")
    return f


def _integer(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_postgres(db: dict[str, Any]) -> bool:
    return str(db.get("ENGINE", "")) in POSTGRES_ENGINES


def _node(alias: str, role: str, db: dict[str, Any], weight: float) -> dict[str, Any]:
    options = db.get("OPTIONS") or {}
    host = str(db.get("HOST") or "") or "/var/run/postgresql"
    return {
        "alias": alias,
        "role": role,
        "host": host,
        "port": str(db.get("PORT") or "5432"),
        "name": str(db.get("NAME") or "postgres"),
        "user": str(db.get("USER") or ""),
        "password": str(db.get("PASSWORD") or ""),
        "sslmode": str(options.get("sslmode") or ""),
        "sslrootcert": str(options.get("sslrootcert") or ""),
        "weight": weight,
    }


def _default_replicas(primary: str, databases: dict[str, dict[str, Any]]) -> list[str]:
    """The replicas when ``REPLICAS`` is unset: the one other PostgreSQL alias, if
    there is exactly one (the tutorial's ``default`` + ``replica``), or none.

    With two or more other PostgreSQL aliases the router cannot tell a standby from
    an unrelated database, and it never claims one silently: that is an error that
    names them.
    """
    others = [a for a, db in databases.items() if a != primary and _is_postgres(db)]
    if len(others) > 1:
        raise SettingsError(
            f"{_key('REPLICAS')} is not set and DATABASES has {len(others)} PostgreSQL "
            f"aliases besides the primary {primary!r}: {others}; the router will not guess "
            "which of them are standbys of it",
            check_id=E_AMBIGUOUS_REPLICAS,
            hint=(
                f"List the standbys of {primary!r}, e.g. REPLICA_ROUTER = "
                f'{{"REPLICAS": {{{others[0]!r}: {{"WEIGHT": 1}}}}}}, or "REPLICAS": [] '
                "for none. Aliases not listed are left alone by the router."
            ),
        )
    return others


def load() -> RouterSettings:
    """Reads and validates ``REPLICA_ROUTER`` against ``DATABASES``."""
    raw = getattr(settings, "REPLICA_ROUTER", None) or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"REPLICA_ROUTER must be a dict, got {raw!r}")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise SettingsError(
            f"REPLICA_ROUTER has unknown key(s) {unknown}; known keys: {sorted(DEFAULTS)}"
        )
    cfg = {**DEFAULTS, **raw}
    databases: dict[str, dict[str, Any]] = dict(settings.DATABASES)
    probe_dbs = _captured_databases or databases

    primary = cfg["PRIMARY"]
    if not isinstance(primary, str) or primary not in databases:
        raise SettingsError(
            f"{_key('PRIMARY')} = {primary!r} is not an alias in DATABASES "
            f"(known: {sorted(databases)})"
        )
    if not _is_postgres(databases[primary]):
        raise SettingsError(
            f'{_key("PRIMARY")} = {primary!r}: DATABASES[{primary!r}]["ENGINE"] = '
            f"{databases[primary].get('ENGINE')!r} is not PostgreSQL"
        )

    replicas_raw = cfg["REPLICAS"]
    replicas: dict[str, float] = {}
    if replicas_raw is None:
        replicas = {alias: 1.0 for alias in _default_replicas(primary, databases)}
    elif isinstance(replicas_raw, (list, tuple)):
        for alias in replicas_raw:
            replicas[alias] = 1.0
    elif isinstance(replicas_raw, dict):
        for alias, spec in replicas_raw.items():
            if spec is None:
                spec = {}
            if not isinstance(spec, dict):
                raise SettingsError(
                    f"{_key('REPLICAS')}[{alias!r}] must be a dict like {{'WEIGHT': 1}}, "
                    f"got {spec!r}"
                )
            extra = sorted(set(spec) - {"WEIGHT"})
            if extra:
                raise SettingsError(
                    f"{_key('REPLICAS')}[{alias!r}] has unknown key(s) {extra}; known: ['WEIGHT']"
                )
            replicas[alias] = _number(
                f'{_key("REPLICAS")}[{alias!r}]["WEIGHT"]',
                spec.get("WEIGHT", 1),
                minimum=0,
                strict=False,
            )
    else:
        raise SettingsError(
            f"{_key('REPLICAS')} must be a dict of alias -> {{'WEIGHT': n}}, a list of "
            f"aliases, or None; got {replicas_raw!r}"
        )
    for alias in replicas:
        if alias not in databases:
            raise SettingsError(
                f"{_key('REPLICAS')} names {alias!r}, which is not an alias in DATABASES "
                f"(known: {sorted(databases)})"
            )
        if alias == primary:
            raise SettingsError(
                f"{_key('REPLICAS')} names the primary {alias!r}; use PRIMARY_READ_WEIGHT"
            )
        if not _is_postgres(databases[alias]):
            raise SettingsError(
                f'{_key("REPLICAS")} names {alias!r}, but DATABASES[{alias!r}]["ENGINE"] = '
                f"{databases[alias].get('ENGINE')!r} is not PostgreSQL"
            )

    primary_weight = _number(
        _key("PRIMARY_READ_WEIGHT"), cfg["PRIMARY_READ_WEIGHT"], minimum=0, strict=False
    )
    if primary_weight == 0 and all(w == 0 for w in replicas.values()):
        raise SettingsError(
            f"{_key('PRIMARY_READ_WEIGHT')} and every replica WEIGHT are 0: no node could "
            "take reads; give at least one a weight > 0"
        )
    interval = _number(_key("PROBE_INTERVAL"), cfg["PROBE_INTERVAL"], minimum=0, strict=True)
    timeout = _number(_key("PROBE_TIMEOUT"), cfg["PROBE_TIMEOUT"], minimum=0, strict=True)
    fall = _integer(_key("FALL"), cfg["FALL"], minimum=1)
    rise = _integer(_key("RISE"), cfg["RISE"], minimum=1)
    max_lag_seconds = cfg["MAX_LAG_SECONDS"]
    if max_lag_seconds is not None:
        max_lag_seconds = _number(_key("MAX_LAG_SECONDS"), max_lag_seconds, minimum=0, strict=True)
    max_lag_bytes = cfg["MAX_LAG_BYTES"]
    if max_lag_bytes is not None:
        max_lag_bytes = _integer(_key("MAX_LAG_BYTES"), max_lag_bytes, minimum=1)
    pin_seconds = _number(_key("PIN_SECONDS"), cfg["PIN_SECONDS"], minimum=0, strict=False)
    cookie_name = cfg["COOKIE_NAME"]
    if not isinstance(cookie_name, str) or not cookie_name:
        raise SettingsError(
            f"{_key('COOKIE_NAME')} must be a non-empty string, got {cookie_name!r}"
        )
    cookie_max_age = _integer(_key("COOKIE_MAX_AGE"), cfg["COOKIE_MAX_AGE"], minimum=1)

    nodes = [_node(primary, "primary", probe_dbs.get(primary, databases[primary]), primary_weight)]
    nodes += [
        _node(alias, "replica", probe_dbs.get(alias, databases[alias]), weight)
        for alias, weight in replicas.items()
    ]
    return RouterSettings(
        primary=primary,
        replicas=replicas,
        primary_read_weight=primary_weight,
        probe_interval=interval,
        probe_timeout=timeout,
        fall=fall,
        rise=rise,
        max_lag_seconds=max_lag_seconds,
        max_lag_bytes=max_lag_bytes,
        pin_seconds=pin_seconds,
        cookie_name=cookie_name,
        cookie_max_age=cookie_max_age,
        test_mirror=bool(cfg["TEST_MIRROR"]),
        test_replica_reads=bool(cfg["TEST_REPLICA_READS"]),
        replicas_implicit=replicas_raw is None,
        nodes=nodes,
        aliases=(primary, *replicas),
    )
