"""``REPLICA_ROUTER`` settings: validation, defaults, system checks, no leaked passwords.

Every bad setting must surface as ``ImproperlyConfigured`` naming the key and the
value, from ``conf.load()``, from building the cluster (``_runtime.get_cluster()``)
and from routing itself; and as system-check error ``replica_router.E001``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
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

import replica_router
from replica_router import _runtime, conf
from tests.conftest import ROUTER_SETTINGS, WINDOW, LocalCluster, wait_until

IGNORE_DATABASES_WARNING = pytest.mark.filterwarnings(
    "ignore:Overriding setting DATABASES can lead to unexpected behavior"
)

SECRET = "hunter2-secret"


def databases_with(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of the session's DATABASES, with ``extra`` aliases added or replaced."""
    dbs = {alias: dict(db) for alias, db in settings.DATABASES.items()}
    dbs.update(extra)
    return dbs


def sqlite_alias() -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _fresh_router(router_reset: None) -> Iterator[None]:
    """Each test starts and ends with no cluster built (the next use rebuilds it)."""
    yield


def replica_with(**fields: Any) -> dict[str, dict[str, Any]]:
    """DATABASES with the replica's entry changed."""
    return {"replica": {**settings.DATABASES["replica"], **fields}}


#: (id, REPLICA_ROUTER, extra DATABASES aliases, key named, value named, check id).
BAD: list[tuple[str, dict[str, Any], dict[str, dict[str, Any]], str, str, str]] = [
    ("unknown-primary", {"PRIMARY": "nope"}, {}, "PRIMARY", "'nope'", "E005"),
    ("unknown-replica", {"REPLICAS": {"ghost": {"WEIGHT": 1}}}, {}, "REPLICAS", "'ghost'", "E005"),
    ("negative-weight", {"REPLICAS": {"replica": {"WEIGHT": -1}}}, {}, "WEIGHT", "-1", "E006"),
    (
        "negative-primary-weight",
        {"PRIMARY_READ_WEIGHT": -0.5},
        {},
        "PRIMARY_READ_WEIGHT",
        "-0.5",
        "E006",
    ),
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
        {"REPLICAS": {"replica": {"WEIGHT": 1}, "cache": {"WEIGHT": 1}}},
        {"cache": sqlite_alias()},
        "REPLICAS",
        "'django.db.backends.sqlite3'",
        "E005",
    ),
    ("interval-not-a-number", {"PROBE_INTERVAL": "fast"}, {}, "PROBE_INTERVAL", "'fast'", "E007"),
    ("interval-a-million", {"PROBE_INTERVAL": 1e6}, {}, "PROBE_INTERVAL", "1000000.0", "E007"),
    ("timeout-zero", {"PROBE_TIMEOUT": 0}, {}, "PROBE_TIMEOUT", "0", "E007"),
    ("fall-zero", {"FALL": 0}, {}, "FALL", "0", "E007"),
    ("fall-5000", {"FALL": 5000}, {}, "FALL", "5000", "E007"),
    ("rise-string", {"RISE": "2"}, {}, "RISE", "'2'", "E007"),
    ("unknown-key", {"PROBE_INTERVALL": 0.1}, {}, "PROBE_INTERVALL", "'PROBE_INTERVALL'", "E001"),
    ("bool-weight", {"REPLICAS": {"replica": {"WEIGHT": True}}}, {}, "WEIGHT", "True", "E006"),
    ("lag-bytes-zero", {"MAX_LAG_BYTES": 0}, {}, "MAX_LAG_BYTES", "0", "E008"),
    ("lag-seconds-negative", {"MAX_LAG_SECONDS": -1}, {}, "MAX_LAG_SECONDS", "-1", "E008"),
    (
        "unknown-sslmode",
        {},
        replica_with(OPTIONS={"sslmode": "verify-everything"}),
        "sslmode",
        "verify-everything",
        "E009",
    ),
    ("port-not-a-number", {}, replica_with(PORT="fivefour"), "PORT", "'fivefour'", "E010"),
    ("pin-negative", {"PIN_SECONDS": -1}, {}, "PIN_SECONDS", "-1", "E011"),
    ("test-mirror-string", {"TEST_MIRROR": "yes"}, {}, "TEST_MIRROR", "'yes'", "E011"),
    ("share-health-number", {"SHARE_HEALTH": 1}, {}, "SHARE_HEALTH", "1", "E011"),
]


@IGNORE_DATABASES_WARNING
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
    """The setting is refused with a message naming the key and the value, wherever the
    settings are read: ``conf.load()``, building the cluster, and the router; and
    ``manage.py check`` fails first with the family's own id, the same message and a
    hint. The rules live once, in the core: whatever it rejects, the check rejects."""
    overrides: dict[str, Any] = {"REPLICA_ROUTER": {**ROUTER_SETTINGS, **changes}}
    if extra:
        overrides["DATABASES"] = databases_with(**extra)
    with override_settings(**overrides):
        for attempt in (conf.load, _runtime.get_cluster, read_route):
            _runtime.reset()
            with pytest.raises(ImproperlyConfigured) as info:
                attempt()
            message = str(info.value)
            assert key in message, (attempt, message)
            assert value in message, (attempt, message)
        assert _runtime.cluster is None
        errors = [m for m in router_errors() if isinstance(m, checks.Error)]
        assert [m.id for m in errors] == [f"replica_router.{check_id}"], errors
        assert key in errors[0].msg and value in errors[0].msg
        assert errors[0].hint
        with pytest.raises(SystemCheckError, match=rf"replica_router\.{check_id}"):
            call_command("check", stdout=StringIO(), stderr=StringIO())


def read_route() -> str | None:
    return router.db_for_read(ReplicationModel)


@IGNORE_DATABASES_WARNING
def test_defaults_without_any_setting(cluster: LocalCluster) -> None:
    """No REPLICA_ROUTER at all, the tutorial's two aliases: primary ``default``, one
    replica ``replica`` of weight 1, probe every 1 s with a 1 s timeout, FALL/RISE 2."""
    tutorial = {alias: settings.DATABASES[alias] for alias in ("default", "replica")}
    with override_settings(DATABASES=tutorial):
        del settings.REPLICA_ROUTER
        assert not hasattr(settings, "REPLICA_ROUTER")
        _runtime.reset()
        for s in (conf.load(), _runtime.get_settings()):
            assert s.primary == "default"
            assert s.replicas == {"replica": 1.0}
            assert s.primary_read_weight == 1.0
            assert s.probe_interval == 1.0
            assert s.probe_timeout == 1.0
            assert s.fall == 2
            assert s.rise == 2
            assert s.max_lag_seconds is None
            assert s.max_lag_bytes is None
        nodes = replica_router.status()
        assert [(n["alias"], n["configured_role"], n["weight"]) for n in nodes] == [
            ("default", "primary", 1.0),
            ("replica", "replica", 1.0),
        ]
        _runtime.reset()


def router_errors() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.")]


def test_system_checks() -> None:
    """E007 under a bad interval (naming key and value), nothing from us when good;
    ``manage.py check`` fails with SystemCheckError under the bad setting."""
    assert router_errors() == []
    call_command("check", stdout=StringIO(), stderr=StringIO())
    with override_settings(REPLICA_ROUTER={**ROUTER_SETTINGS, "PROBE_INTERVAL": "fast"}):
        errors = router_errors()
        assert [m.id for m in errors] == ["replica_router.E007"]
        assert isinstance(errors[0], checks.Error)
        assert "PROBE_INTERVAL" in errors[0].msg and "'fast'" in errors[0].msg
        with pytest.raises(SystemCheckError, match=r"replica_router\.E007"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    assert router_errors() == []


@IGNORE_DATABASES_WARNING
def test_passwords_never_shown(cluster: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    """A replica configured with password ``hunter2-secret``: whether its port refuses
    connections or its password is wrong, the password appears in no status field,
    repr, error message, check message or log record."""
    caplog.set_level(logging.DEBUG, logger="replica_router")
    shown: list[str] = []

    # 1. Nothing listens on the replica's port: the node goes down.
    replica = {**settings.DATABASES["replica"], "PASSWORD": SECRET, "PORT": str(free_port())}
    with override_settings(DATABASES=databases_with(replica=replica)):
        wait_until(lambda: node("replica")["state"] == "down", WINDOW + 5)
        n = node("replica")
        assert n["error_class"] in ("connection_refused", "connection_failure"), n
        assert n["last_error"]
        shown += [repr(replica_router.status()), repr(_runtime.get_cluster())]
        shown += [repr(replica_router.decisions())]
        shown += [m.msg for m in checks.run_checks(databases=["default", "replica"])]
        with override_settings(
            REPLICA_ROUTER={**ROUTER_SETTINGS, "REPLICAS": {"replica": {"WEIGHT": -1}}}
        ):
            for attempt in (conf.load, _runtime.get_cluster):
                _runtime.reset()
                with pytest.raises(ImproperlyConfigured) as info:
                    attempt()
                shown.append(str(info.value))
            shown += [m.msg for m in checks.run_checks()]

    # 2. The real standby, the wrong password: a configuration error, not "down".
    replica = {**settings.DATABASES["replica"], "PASSWORD": SECRET}
    with override_settings(DATABASES=databases_with(replica=replica)):
        wait_until(lambda: node("replica")["state"] == "misconfigured", WINDOW + 5)
        n = node("replica")
        assert n["error_class"] == "authentication_failed", n
        shown += [repr(replica_router.status()), repr(_runtime.get_cluster())]
        shown += [m.msg for m in checks.run_checks(databases=["default", "replica"])]
        # Let the logging thread hand over the state-change events.
        wait_until(lambda: any("misconfigured" in r.getMessage() for r in caplog.records), 5)

    shown += [r.getMessage() for r in caplog.records]
    shown += [repr(r.args) for r in caplog.records]
    assert any("misconfigured" in r.getMessage() for r in caplog.records)
    assert len(shown) > 10
    leaks = [text for text in shown if SECRET in text]
    assert leaks == []


def node(alias: str) -> dict[str, Any]:
    return next(n for n in replica_router.status() if n["alias"] == alias)
