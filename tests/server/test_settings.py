"""No password ever shows, against real servers: a refused node and a wrong
password, through status, reprs, errors, checks and logs. (Settings validation and
its system checks need no server: ``tests/fast/test_conf.py``, ``test_checks.py``.)
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import replica_router
from replica_router import _runtime, conf
from tests.support import ROUTER_SETTINGS, WINDOW, LocalCluster, wait_until

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


def router_errors() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.")]


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
