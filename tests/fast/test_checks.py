"""System checks (``replica_router.checks``) with no server: stable ids, messages that
name the key and the value, and ``manage.py check`` failing under a bad setting.

The cluster's nodes are on ports where nothing listens (``offline``): the check
that probes replicas for their role (E004/W003) gets refused at once and reports
nothing, as documented for unreachable nodes; ``check --database`` reports them
down (W002).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from replica_router.router import ReadWriteRouter
from tests.support import databases_override, router_settings

pytestmark = pytest.mark.usefixtures("offline")


class OtherRouter:
    """A project's own router, with no opinion about anything."""


OTHER_ROUTER = f"{__name__}.OtherRouter"


def ours(databases: list[str] | None = None) -> list[checks.CheckMessage]:
    """The messages of our checks (ids ``replica_router.*``), as ``check`` runs them."""
    return [
        m
        for m in checks.run_checks(databases=databases)
        if m.id and m.id.startswith("replica_router.")
    ]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id or "" for m in messages]


def test_good_settings_report_nothing_and_check_passes() -> None:
    """Proves: the session's settings give no message of ours with the replicas
    unreachable, and ``manage.py check`` succeeds. (How long a check takes with a
    blackholed replica, bounded by PROBE_TIMEOUT, is measured by ``make bench``.)"""
    assert ours() == []
    call_command("check", stdout=StringIO(), stderr=StringIO())


def test_bad_setting_is_its_familys_error_and_manage_py_check_fails() -> None:
    """Proves: a bad interval is error E007 alone (the checks that need valid
    settings stay quiet), naming the key and the value, with a hint; ``manage.py
    check`` raises ``SystemCheckError`` naming E007; good settings report nothing
    again."""
    with router_settings(PROBE_INTERVAL="fast"):
        errors = ours()
        assert ids(errors) == ["replica_router.E007"]
        assert isinstance(errors[0], checks.Error)
        assert "PROBE_INTERVAL" in errors[0].msg and "'fast'" in errors[0].msg
        assert errors[0].hint
        with pytest.raises(SystemCheckError, match=r"replica_router\.E007"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    assert ours() == []


def test_unset_replicas_with_two_candidates_is_e003() -> None:
    """Proves: ``REPLICAS`` unset with two other PostgreSQL aliases is error E003
    (its own id), naming both aliases, with a hint to list the standbys."""
    with override_settings(REPLICA_ROUTER={}):
        errors = ours()
    assert ids(errors) == ["replica_router.E003"]
    assert isinstance(errors[0], checks.Error)
    assert "'replica'" in errors[0].msg and "'other'" in errors[0].msg
    assert errors[0].hint and "REPLICAS" in errors[0].hint


@pytest.mark.parametrize("routers", [[], [OTHER_ROUTER]], ids=["none", "another"])
def test_router_not_installed_is_w001(routers: list[Any]) -> None:
    """Proves: without our router in ``DATABASE_ROUTERS`` the warning W001 says so
    and how to add it."""
    with override_settings(DATABASE_ROUTERS=routers):
        warnings = ours()
    assert ids(warnings) == ["replica_router.W001"]
    assert isinstance(warnings[0], checks.Warning)
    assert "replica_router.ReadWriteRouter" in (warnings[0].hint or "")


@pytest.mark.parametrize(
    "routers",
    [
        ["replica_router.ReadWriteRouter"],
        ["replica_router.router.ReadWriteRouter"],
        [OTHER_ROUTER, ReadWriteRouter()],
    ],
    ids=["short-path", "module-path", "instance"],
)
def test_router_installed_is_no_w001(routers: list[Any]) -> None:
    """Proves: the router is recognised by either dotted path and as an instance."""
    with override_settings(DATABASE_ROUTERS=routers):
        assert "replica_router.W001" not in ids(ours())


def test_cluster_alias_without_the_backend_is_w004() -> None:
    """Proves: a cluster alias on Django's own PostgreSQL engine is warning W004,
    naming that alias only; an alias outside the cluster (``other``) on Django's
    engine is not the router's business."""
    dbs = {alias: dict(db) for alias, db in settings.DATABASES.items()}
    dbs["replica"]["ENGINE"] = "django.db.backends.postgresql"
    assert dbs["other"]["ENGINE"] == "django.db.backends.postgresql"
    with databases_override(dbs):
        warnings = ours()
    assert ids(warnings) == ["replica_router.W004"]
    assert "['replica']" in warnings[0].msg
    assert "replica_router.backends.postgresql" in (warnings[0].hint or "")


def test_check_database_reports_unreachable_nodes_w002() -> None:
    """Proves: ``check --database`` probes the cluster once and reports each node
    that nothing answers for as warning W002 (down), naming role, alias and port;
    the plain checks stay quiet about it."""
    warnings = ours(databases=["default", "replica"])
    assert ids(warnings) == ["replica_router.W002", "replica_router.W002"]
    primary, replica = (m.msg for m in warnings)
    assert primary.startswith("primary 'default' (127.0.0.1:")
    assert replica.startswith("replica 'replica' (127.0.0.1:")
    assert all(" is down" in m or " is unknown" in m for m in (primary, replica))
    assert str(settings.DATABASES["replica"]["PORT"]) in replica


def test_check_database_of_another_alias_probes_nothing() -> None:
    """Proves: ``check --database other`` (outside the cluster) reports nothing."""
    assert ours(databases=["other"]) == []


def test_a_router_after_ours_is_w005() -> None:
    """Proves: a project router listed after ours is warned about (W005), naming it
    and saying to put ours last; listed before ours, it is not."""
    with override_settings(DATABASE_ROUTERS=["replica_router.ReadWriteRouter", OTHER_ROUTER]):
        warnings = ours()
    assert ids(warnings) == ["replica_router.W005"]
    assert OTHER_ROUTER in warnings[0].msg and "last" in (warnings[0].hint or "")
    with override_settings(DATABASE_ROUTERS=[OTHER_ROUTER, "replica_router.ReadWriteRouter"]):
        assert ours() == []


@pytest.mark.parametrize(
    "engine",
    ["django.db.backends.postgresql_psycopg2", f"{__name__}_pgbackend"],
    ids=["legacy-name", "subclass"],
)
def test_every_postgresql_engine_counts(offline: dict[str, Any], engine: str) -> None:
    """Proves (point 4): a replica whose ENGINE is Django's legacy name
    ``postgresql_psycopg2`` or a backend subclassing Django's PostgreSQL one is
    PostgreSQL: no E005, and the ``REPLICAS`` default counts it (E003 with two)."""
    import sys
    import types

    from django.db.backends.postgresql import base

    module = types.ModuleType(f"{__name__}_pgbackend.base")
    module.DatabaseWrapper = type("DatabaseWrapper", (base.DatabaseWrapper,), {})  # type: ignore[attr-defined]
    sys.modules[f"{__name__}_pgbackend"] = types.ModuleType(f"{__name__}_pgbackend")
    sys.modules[f"{__name__}_pgbackend.base"] = module
    try:
        dbs = {alias: dict(db) for alias, db in offline.items()}
        dbs["replica"]["ENGINE"] = engine
        with databases_override(dbs):
            # Not the router's backend (W004), but PostgreSQL: no E005.
            assert ids(ours()) == ["replica_router.W004"]
        dbs["other"]["ENGINE"] = engine
        with databases_override(dbs), override_settings(REPLICA_ROUTER={}):
            assert ids(ours()) == ["replica_router.E003"]
    finally:
        del sys.modules[f"{__name__}_pgbackend.base"], sys.modules[f"{__name__}_pgbackend"]


def test_more_than_64_nodes_is_e005(offline: dict[str, Any]) -> None:
    """Proves (point 6): 64 replicas (65 nodes) is a settings error naming REPLICAS
    and the limit; 63 replicas are fine."""
    dbs = {alias: dict(db) for alias, db in offline.items()}
    for i in range(64):
        dbs[f"r{i}"] = dict(offline["replica"])
    with databases_override(dbs), router_settings(REPLICAS=[f"r{i}" for i in range(64)]):
        errors = ours()
    assert ids(errors) == ["replica_router.E005"]
    assert "64 replicas" in errors[0].msg and "at most 63" in errors[0].msg
    with databases_override(dbs), router_settings(REPLICAS=[f"r{i}" for i in range(63)]):
        from replica_router import conf

        assert len(conf.load().replicas) == 63


def test_e003_hint_names_no_alias_that_is_not_a_standby() -> None:
    """Proves (point 5): with nothing answering (no server here), E003's hint names
    no alias as an example standby and says how to declare none."""
    with override_settings(REPLICA_ROUTER={}):
        (error,) = ours()
    assert error.id == "replica_router.E003"
    hint = error.hint or ""
    assert "None of ['replica', 'other'] answers as a hot standby" in hint, hint
    assert "'WEIGHT'" not in hint and '"REPLICAS": []' in hint, hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PRIMARY_WAIT_TIMEOUT", -1),
        ("PRIMARY_WAIT_TIMEOUT", "long"),
        ("PRIMARY_WAIT_TIMEOUT", 7200),
        ("PATRONI_URLS", "http://127.0.0.1:8008"),
        ("PATRONI_URLS", ["127.0.0.1:8008"]),
        ("PATRONI_URLS", ["http://"]),
        ("PATRONI_URLS", ["https://127.0.0.1:8008"]),
        ("PATRONI_URLS", ["http://127.0.0.1:80x8"]),
    ],
)
def test_bad_role_settings_are_e011_naming_key_and_value(key: str, value: Any) -> None:
    """Proves: a bad ``PRIMARY_WAIT_TIMEOUT`` or ``PATRONI_URLS`` is error E011,
    naming the key and the value."""
    with router_settings(**{key: value}):
        errors = ours()
    assert ids(errors) == ["replica_router.E011"], errors
    assert key in errors[0].msg and repr(value).strip("[]") in errors[0].msg, errors[0].msg


def test_good_role_settings_pass_and_patroni_urls_are_used() -> None:
    """Proves: good values are accepted (``PRIMARY_WAIT_TIMEOUT`` 0 turns the wait off),
    and ``PATRONI_URLS``, polled since issue 14, no longer draws W007."""
    with router_settings(PRIMARY_WAIT_TIMEOUT=0):
        assert ours() == []
    with router_settings(PATRONI_URLS=["http://127.0.0.1:8008/", "http://localhost:8009"]):
        assert ours() == []


def test_https_patroni_urls_are_refused_saying_why() -> None:
    """Proves: an ``https://`` Patroni URL is E011 with the reason (no setting names a
    CA to check it with), not accepted and then polled unverified."""
    with router_settings(PATRONI_URLS=["https://10.0.0.1:8008"]):
        (error,) = ours()
    assert error.id == "replica_router.E011"
    assert "https:// is not supported" in error.msg and "10.0.0.1:8008" in error.msg, error.msg
