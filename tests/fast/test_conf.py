"""``replica_router.conf``: defaults, validation and the node list, with no server.

Every bad setting surfaces as ``ImproperlyConfigured`` (a ``SettingsError`` with the
system-check id that reports it) naming the key and the value, from ``conf.load()``,
from building the cluster (``_runtime.get_cluster()``) and from routing itself.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import router
from django.test import override_settings
from router.models import ReplicationModel

from replica_router import _runtime, conf
from tests.support import databases_override, router_settings

pytestmark = pytest.mark.usefixtures("offline")


def sqlite_alias() -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}


def with_aliases(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of the ``DATABASES`` in force, with ``extra`` aliases added or replaced."""
    dbs = {alias: dict(db) for alias, db in settings.DATABASES.items()}
    dbs.update(extra)
    return dbs


def read_route() -> str | None:
    return router.db_for_read(ReplicationModel)


#: A libpq multi-host alias of three hosts (nothing needs to listen: settings only).
MULTI: dict[str, Any] = {
    "ENGINE": "replica_router.backends.postgresql",
    "HOST": "127.0.0.1,127.0.0.1,127.0.0.1",
    "PORT": "5433,5434,5435",
}


#: (id, REPLICA_ROUTER changes, extra DATABASES aliases, key named, value named,
#: the system check id of its family).
BAD: list[tuple[str, dict[str, Any], dict[str, dict[str, Any]], str, str, str]] = [
    ("unknown-primary", {"PRIMARY": "nope"}, {}, "PRIMARY", "'nope'", "E005"),
    ("sqlite-primary", {}, {"default": sqlite_alias()}, "PRIMARY", "'django.db.backends.sqlite3'", "E005"),
    ("unknown-replica", {"REPLICAS": {"ghost": {"WEIGHT": 1}}}, {}, "REPLICAS", "'ghost'", "E005"),
    ("replica-is-primary", {"REPLICAS": ["default"]}, {}, "REPLICAS", "'default'", "E005"),
    ("replicas-a-string", {"REPLICAS": "replica"}, {}, "REPLICAS", "'replica'", "E005"),
    ("replica-spec-a-number", {"REPLICAS": {"replica": 2}}, {}, "REPLICAS", "2", "E006"),
    ("replica-spec-unknown-key", {"REPLICAS": {"replica": {"WEIGHTS": 2}}}, {}, "REPLICAS", "WEIGHTS", "E001"),
    ("negative-weight", {"REPLICAS": {"replica": {"WEIGHT": -1}}}, {}, "WEIGHT", "-1", "E006"),
    ("bool-weight", {"REPLICAS": {"replica": {"WEIGHT": True}}}, {}, "WEIGHT", "True", "E006"),
    ("negative-primary-weight", {"PRIMARY_READ_WEIGHT": -0.5}, {}, "PRIMARY_READ_WEIGHT", "-0.5", "E006"),
    (
        "all-weights-zero",
        {"PRIMARY_READ_WEIGHT": 0, "REPLICAS": {"replica": {"WEIGHT": 0}}},
        {},
        "PRIMARY_READ_WEIGHT",
        "0",
        "E006",
    ),
    (
        "sqlite-replica",
        {"REPLICAS": {"replica": {"WEIGHT": 1}, "other": {"WEIGHT": 1}}},
        {"other": sqlite_alias()},
        "REPLICAS",
        "'django.db.backends.sqlite3'",
        "E005",
    ),
    ("interval-not-a-number", {"PROBE_INTERVAL": "fast"}, {}, "PROBE_INTERVAL", "'fast'", "E007"),
    ("interval-infinite", {"PROBE_INTERVAL": float("inf")}, {}, "PROBE_INTERVAL", "inf", "E007"),
    ("timeout-zero", {"PROBE_TIMEOUT": 0}, {}, "PROBE_TIMEOUT", "0", "E007"),
    ("fall-zero", {"FALL": 0}, {}, "FALL", "0", "E007"),
    ("fall-float", {"FALL": 2.5}, {}, "FALL", "2.5", "E007"),
    ("rise-string", {"RISE": "2"}, {}, "RISE", "'2'", "E007"),
    ("max-lag-seconds-zero", {"MAX_LAG_SECONDS": 0}, {}, "MAX_LAG_SECONDS", "0", "E008"),
    ("max-lag-bytes-zero", {"MAX_LAG_BYTES": 0}, {}, "MAX_LAG_BYTES", "0", "E008"),
    ("ceiling-under-limit", {"LAG_CEILING_SECONDS": 2}, {}, "LAG_CEILING_SECONDS", "2", "E008"),
    ("ceiling-text", {"LAG_CEILING_SECONDS": "1m"}, {}, "LAG_CEILING_SECONDS", "'1m'", "E008"),
    ("pin-seconds-negative", {"PIN_SECONDS": -1}, {}, "PIN_SECONDS", "-1", "E011"),
    ("cookie-name-empty", {"COOKIE_NAME": ""}, {}, "COOKIE_NAME", "''", "E011"),
    ("cookie-max-age-zero", {"COOKIE_MAX_AGE": 0}, {}, "COOKIE_MAX_AGE", "0", "E011"),
    ("unknown-key", {"PROBE_INTERVALL": 0.1}, {}, "PROBE_INTERVALL", "'PROBE_INTERVALL'", "E001"),
    (
        "unknown-sslmode",
        {},
        {"replica": {"ENGINE": "replica_router.backends.postgresql", "OPTIONS": {"sslmode": "maybe"}}},
        "sslmode",
        "maybe",
        "E009",
    ),
    (
        "port-not-a-number",
        {},
        {"replica": {"ENGINE": "replica_router.backends.postgresql", "PORT": "fivefour"}},
        "PORT",
        "'fivefour'",
        "E010",
    ),
    (
        "multi-host-port-count",
        {},
        {"replica": {**MULTI, "PORT": "5433,5434"}},
        "PORT",
        "'5433,5434'",
        "E010",
    ),
    (
        "multi-host-port-not-a-number",
        {},
        {"replica": {**MULTI, "PORT": "5433,x,5435"}},
        "PORT",
        "'5433,x,5435'",
        "E010",
    ),
    ("one-host-two-ports", {}, {"replica": {**MULTI, "HOST": "127.0.0.1", "PORT": "5433,5434"}}, "PORT", "'5433,5434'", "E010"),
    ("multi-host-empty-host", {}, {"replica": {**MULTI, "HOST": "127.0.0.1,,127.0.0.1"}}, "HOST", "'127.0.0.1,,127.0.0.1'", "E010"),
    (
        "session-attrs-unknown",
        {},
        {"replica": {**MULTI, "OPTIONS": {"target_session_attrs": "writable"}}},
        "target_session_attrs",
        "'writable'",
        "E010",
    ),
    (
        "session-attrs-write-on-replica",
        {},
        {"replica": {**MULTI, "OPTIONS": {"target_session_attrs": "read-write"}}},
        "target_session_attrs",
        "'read-write'",
        "E010",
    ),
    (
        "session-attrs-standby-on-primary",
        {},
        {"default": {**MULTI, "OPTIONS": {"target_session_attrs": "prefer-standby"}}},
        "target_session_attrs",
        "'prefer-standby'",
        "E010",
    ),
    ("multi-host-same-host-twice", {}, {"replica": {**MULTI, "PORT": "5433"}}, "HOST", "127.0.0.1:5433", "E010"),
    ("fall-5000", {"FALL": 5000}, {}, "FALL", "5000", "E007"),
    ("interval-a-million", {"PROBE_INTERVAL": 1e6}, {}, "PROBE_INTERVAL", "1000000.0", "E007"),
    ("test-mirror-string", {"TEST_MIRROR": "yes"}, {}, "TEST_MIRROR", "'yes'", "E011"),
    ("share-health-number", {"SHARE_HEALTH": 1}, {}, "SHARE_HEALTH", "1", "E011"),
]


@pytest.mark.parametrize(
    ("changes", "extra", "key", "value", "check_id"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_setting_is_improperly_configured(
    changes: dict[str, Any],
    extra: dict[str, dict[str, Any]],
    key: str,
    value: str,
    check_id: str,
) -> None:
    """Proves: the setting is refused with a message naming the key and the value,
    wherever settings are read (``conf.load()``, building the cluster, a routed
    read), and no cluster is left built; ``conf.load()`` raises a ``SettingsError``
    carrying the id of the system check that reports its family, and a hint."""
    with databases_override(with_aliases(**extra)), router_settings(**changes):
        for attempt in (conf.load, _runtime.get_cluster, read_route):
            _runtime.reset()
            with pytest.raises(ImproperlyConfigured) as info:
                attempt()
            message = str(info.value)
            assert key in message, (attempt, message)
            assert value in message, (attempt, message)
        assert _runtime.cluster is None
        with pytest.raises(conf.SettingsError) as error:
            conf.load()
        assert error.value.check_id == f"replica_router.{check_id}"
        assert error.value.hint
        # The check builds the very same object: it rejects what a read rejects,
        # with the family's id, the same message and the hint; so does manage.py.
        errors = [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.E")]
        assert [m.id for m in errors] == [f"replica_router.{check_id}"], errors
        assert errors[0].msg == str(error.value) and errors[0].hint == error.value.hint
        with pytest.raises(SystemCheckError, match=rf"replica_router\.{check_id}"):
            call_command("check", stdout=StringIO(), stderr=StringIO())


def test_replica_router_must_be_a_dict() -> None:
    """Proves: ``REPLICA_ROUTER = ["replica"]`` is refused, naming the value."""
    with override_settings(REPLICA_ROUTER=["replica"]):
        with pytest.raises(conf.SettingsError, match=r"REPLICA_ROUTER.*\['replica'\]"):
            conf.load()


def test_defaults_without_any_setting() -> None:
    """Proves: with no ``REPLICA_ROUTER`` and the tutorial's two aliases, the primary
    is ``default``, the one other PostgreSQL alias is the replica (weight 1, taken
    implicitly), and every other key has its documented default."""
    tutorial = {alias: settings.DATABASES[alias] for alias in ("default", "replica")}
    with databases_override(tutorial):
        del settings.REPLICA_ROUTER
        assert not hasattr(settings, "REPLICA_ROUTER")
        s = conf.load()
    assert s.primary == "default"
    assert s.replicas == {"replica": 1.0}
    assert s.replicas_implicit is True
    assert s.aliases == ("default", "replica")
    assert (s.primary_read_weight, s.probe_interval, s.probe_timeout) == (1.0, 1.0, 1.0)
    assert (s.fall, s.rise) == (2, 2)
    # Caught up by default: a lag limit is on unless the user turns it off with None.
    assert (s.max_lag_seconds, s.max_lag_bytes) == (5.0, 64 * 1024 * 1024)
    assert s.lag_ceiling_seconds == 10.0
    assert s.pin_seconds == 5.0
    assert (s.cookie_name, s.cookie_max_age) == ("replica_router_lsn", 300)
    assert s.test_mirror is True and s.test_replica_reads is False
    assert set(conf.KEYS) == {
        "PRIMARY", "REPLICAS", "PRIMARY_READ_WEIGHT", "PROBE_INTERVAL", "PROBE_TIMEOUT",
        "FALL", "RISE", "MAX_LAG_SECONDS", "MAX_LAG_BYTES", "LAG_CEILING_SECONDS",
        "PIN_SECONDS", "COOKIE_NAME", "COOKIE_MAX_AGE", "TEST_MIRROR", "TEST_REPLICA_READS",
        "SHARE_HEALTH",
        "PRIMARY_WAIT_TIMEOUT", "PATRONI_URLS",
    }  # fmt: skip
    assert s.primary_wait_timeout == 10.0 and s.patroni_urls == []


def test_none_turns_each_lag_limit_off() -> None:
    """Proves: a lag key set to ``None`` is off (not the default), each on its own."""
    with router_settings(MAX_LAG_SECONDS=None, MAX_LAG_BYTES=None, LAG_CEILING_SECONDS=None):
        s = conf.load()
    assert (s.max_lag_seconds, s.max_lag_bytes, s.lag_ceiling_seconds) == (None, None, None)
    with router_settings(MAX_LAG_BYTES=None):
        s = conf.load()
    assert (s.max_lag_seconds, s.max_lag_bytes, s.lag_ceiling_seconds) == (5.0, None, 10.0)


def test_implicit_replica_ignores_non_postgresql_aliases() -> None:
    """Proves: with ``REPLICAS`` unset, a SQLite alias beside the tutorial's two is
    not a candidate: the PostgreSQL ``replica`` is still taken, alone."""
    dbs = {
        "default": settings.DATABASES["default"],
        "replica": settings.DATABASES["replica"],
        "cache": sqlite_alias(),
    }
    with databases_override(dbs), override_settings(REPLICA_ROUTER={}):
        assert conf.load().replicas == {"replica": 1.0}


def test_unset_replicas_with_two_candidates_is_e003() -> None:
    """Proves: ``REPLICAS`` unset while two other PostgreSQL aliases exist
    (``replica`` and ``other``) is refused with check id E003; the message names
    both and the hint says how to list the standbys."""
    with override_settings(REPLICA_ROUTER={}):
        with pytest.raises(conf.SettingsError) as info:
            conf.load()
    error = info.value
    assert error.check_id == "replica_router.E003"
    assert "'replica'" in str(error) and "'other'" in str(error)
    assert "REPLICAS" in error.hint


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        (["replica"], {"replica": 1.0}),
        (("replica",), {"replica": 1.0}),
        ({"replica": None}, {"replica": 1.0}),
        ({"replica": {}}, {"replica": 1.0}),
        ({"replica": {"WEIGHT": 3}}, {"replica": 3.0}),
        ({"replica": {"WEIGHT": 0.5}, "other": {"WEIGHT": 0}}, {"replica": 0.5, "other": 0.0}),
        ([], {}),
    ],
    ids=["list", "tuple", "dict-none", "dict-empty", "weight-int", "two-weights", "none"],
)
def test_replicas_forms(replicas: Any, expected: dict[str, float]) -> None:
    """Proves: every documented form of ``REPLICAS`` gives the same weights as
    floats, in the given order after the primary; ``[]`` means no replica."""
    with router_settings(REPLICAS=replicas):
        s = conf.load()
    assert s.replicas == expected
    assert s.replicas_implicit is False
    assert s.aliases == ("default", *expected)
    assert [n["alias"] for n in s.nodes] == ["default", *expected]
    assert [n["role"] for n in s.nodes] == ["primary"] + ["replica"] * len(expected)


def test_nodes_are_built_from_databases() -> None:
    """Proves: each node carries its alias's host, port, name, user and TLS options,
    and whether a password is set (never the password itself); an empty HOST means
    the Unix socket directory, a missing PORT 5432; the settings' repr shows no
    password."""
    dbs = with_aliases(
        replica={
            "ENGINE": "replica_router.backends.postgresql",
            "HOST": "",
            "NAME": "app",
            "USER": "reader",
            "PASSWORD": "s3cret-pw",
            "OPTIONS": {"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"},
        }
    )
    with databases_override(dbs), router_settings(PRIMARY_READ_WEIGHT=2):
        s = conf.load()
    primary, replica = s.nodes
    assert primary["host"] == "127.0.0.1"
    assert primary["port"] == int(dbs["default"]["PORT"])
    assert primary["weight"] == 2.0
    assert replica == {
        "alias": "replica",
        "database": "replica",
        "role": "replica",
        "host": "/var/run/postgresql",
        "port": 5432,
        "name": "app",
        "user": "reader",
        "password_set": True,
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "weight": 1.0,
    }
    assert "s3cret-pw" not in repr(s) + repr(s.nodes)


def test_nodes_use_databases_as_captured_before_test_databases() -> None:
    """Proves: once captured (at app loading), the nodes keep the database NAME from
    before a test runner renamed it in place, so probes never hold a connection to
    a test database; after ``forget_captured_databases`` the current NAME counts."""
    default = settings.DATABASES["default"]
    conf.capture_databases()
    try:
        default["NAME"] = "test_postgres"
        assert conf.load().nodes[0]["name"] == "postgres"
        conf.forget_captured_databases()
        assert conf.load().nodes[0]["name"] == "test_postgres"
    finally:
        conf.forget_captured_databases()
        default["NAME"] = "postgres"


def test_settings_are_reread_after_override() -> None:
    """Proves: the router reads settings lazily and again after ``setting_changed``,
    so ``override_settings`` of ``REPLICA_ROUTER`` takes effect and is undone."""
    assert _runtime.get_settings().pin_seconds == 5.0
    with router_settings(PIN_SECONDS=0.25):
        assert _runtime.get_settings().pin_seconds == 0.25
    assert _runtime.get_settings().pin_seconds == 5.0


def test_multi_host_aliases_are_a_node_per_host() -> None:
    """Proves: libpq's multi-host form (``HOST "h1,h2,h3"``, one ``PORT`` per host or
    one for all, ``target_session_attrs``) is accepted by the settings and by
    ``manage.py check``: each host is a node named ``alias@host:port``, serving its
    alias; the primary alias's other hosts take no weighted reads of their own."""
    dbs = with_aliases(
        default={**MULTI, "OPTIONS": {"target_session_attrs": "read-write"}},
        replica={
            **MULTI,
            "HOST": "localhost,127.0.0.1",
            "PORT": 5433,
            "OPTIONS": {"target_session_attrs": "prefer-standby"},
        },
    )
    with databases_override(dbs), router_settings(REPLICAS={"replica": {"WEIGHT": 2}}):
        s = conf.load()
        errors = [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.E")]
        assert errors == []
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert s.primary == "default" and s.aliases == ("default", "replica")
    assert s.replicas == {"replica": 2.0}
    assert s.multi_host_aliases == ("default", "replica")
    assert s.node_aliases == ("default",) * 3 + ("replica",) * 2
    assert [n["alias"] for n in s.nodes] == [
        "default@127.0.0.1:5433",
        "default@127.0.0.1:5434",
        "default@127.0.0.1:5435",
        "replica@localhost:5433",
        "replica@127.0.0.1:5433",
    ]
    assert [n["weight"] for n in s.nodes] == [1.0, 0.0, 0.0, 2.0, 2.0]
    assert {n["database"] for n in s.nodes} == {"default", "replica"}
