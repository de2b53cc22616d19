"""Users' test suites (``replica_router.testing`` and the app's test mirrors), with no
server: which reader functions a test run gets, and how replicas are mirrored.

The runs of real users' suites (Django's runner, pytest-django) against real
servers are in ``tests/server/test_good_neighbour.py`` and
``tests/server/test_example_project.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from replica_router import _runtime, conf, testing
from replica_router.apps import set_test_mirrors
from tests.support import router_settings

pytestmark = pytest.mark.usefixtures("offline")


def test_this_run_is_no_django_test_run() -> None:
    """Proves: without ``setup_test_environment()`` (pytest without pytest-django)
    the router routes as in production."""
    assert testing.active() is False


def never(*args: Any) -> str:
    raise AssertionError("the normal reader must not be called")


def test_reads_go_to_the_primary_under_a_test_runner() -> None:
    """Proves: by default, under a test runner every read goes to the primary and an
    object of the cluster is read there too; an object of another database gets no
    opinion. The production readers are not even asked."""
    s = _runtime.get_settings()
    read, read_hinted = testing.readers(_runtime.get_cluster(), s, (never, never))
    assert [read() for _ in range(10)] == ["default"] * 10
    assert read_hinted("replica") == "default"
    assert read_hinted("default") == "default"
    assert read_hinted("other") is None


def test_test_replica_reads_keeps_production_routing_within_allowed_aliases() -> None:
    """Proves: with ``TEST_REPLICA_READS`` the production readers decide, and their
    answer stands for an alias the running test may query."""
    with router_settings(TEST_REPLICA_READS=True):
        s = _runtime.get_settings()
        normal = (lambda: "replica", lambda db: None if db == "other" else "replica")
        read, read_hinted = testing.readers(_runtime.get_cluster(), s, normal)
        assert testing.allowed("replica")
        assert read() == "replica"
        assert read_hinted("default") == "replica"
        assert read_hinted("other") is None


def test_replicas_mirror_the_primary() -> None:
    """Proves: the app makes each replica a test mirror of the primary (so no test
    database is created on a read-only standby), keeps a mirror the user set, and
    leaves aliases outside the cluster alone."""
    dbs = settings.DATABASES
    saved = {alias: dict(db.get("TEST", {})) for alias, db in dbs.items()}
    try:
        for db in dbs.values():
            db["TEST"] = {"MIRROR": None}
        set_test_mirrors(conf.load())
        assert dbs["replica"]["TEST"]["MIRROR"] == "default"
        assert dbs["other"]["TEST"]["MIRROR"] is None
        assert dbs["default"]["TEST"]["MIRROR"] is None
        dbs["replica"]["TEST"] = {"MIRROR": "elsewhere"}
        set_test_mirrors(conf.load())
        assert dbs["replica"]["TEST"]["MIRROR"] == "elsewhere"
    finally:
        for alias, test in saved.items():
            dbs[alias]["TEST"] = test


def test_test_mode_is_what_the_runners_set_up_and_nothing_else() -> None:
    """Proves (point 2): ``mail.outbox`` (which Django's locmem email backend creates
    in any process) does not make a test run; ``setup_test_environment()`` does,
    until ``teardown_test_environment()``."""
    from django.core import mail
    from django.test.utils import setup_test_environment, teardown_test_environment

    had_outbox = hasattr(mail, "outbox")
    mail.outbox = []
    try:
        assert testing.active() is False
        setup_test_environment()
        try:
            assert testing.active() is True
        finally:
            teardown_test_environment()
        assert testing.active() is False
    finally:
        if not had_outbox and hasattr(mail, "outbox"):
            del mail.outbox


def test_test_runner_reads_are_counted() -> None:
    """Proves (point 6): reads sent to the primary because of the test runner are
    counted in ``decisions()`` (``test_primary``), hinted ones too."""
    import replica_router

    s = _runtime.get_settings()
    read, read_hinted = testing.readers(_runtime.get_cluster(), s, (never, never))
    before = replica_router.decisions()["test_primary"]
    for _ in range(5):
        read()
    read_hinted("replica")
    read_hinted("other")  # not the cluster's: no decision
    assert replica_router.decisions()["test_primary"] == before + 6


def test_errors_that_would_put_a_test_database_on_a_standby_stop_first() -> None:
    """Proves (point 3): ``check_before_test_databases`` raises ``SystemCheckError``
    naming E003 when ``REPLICAS`` is unset with two other PostgreSQL aliases, and
    nothing with good settings."""
    from django.core.management.base import SystemCheckError
    from django.test import override_settings

    testing.check_before_test_databases()
    with override_settings(REPLICA_ROUTER={}), pytest.raises(SystemCheckError) as info:
        testing.check_before_test_databases()
    assert "(replica_router.E003)" in str(info.value)
    assert "before any test database is created" in str(info.value)


def test_the_app_missing_is_w006_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves (point 5): the router used without its app in ``INSTALLED_APPS`` logs
    W006 once per process (not at every cluster build), naming the fix."""
    from django.apps import apps

    real = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "replica_router" and real(name))
    monkeypatch.setattr(_runtime, "_app_missing_logged", False)
    with caplog.at_level("WARNING", logger="replica_router"):
        _runtime.reset()
        _runtime.get_cluster()
        _runtime.reset()
        _runtime.get_cluster()
    w006 = [r for r in caplog.records if "replica_router.W006" in r.getMessage()]
    assert len(w006) == 1, caplog.records
    assert "INSTALLED_APPS" in w006[0].getMessage()
