"""A good neighbour in any Django project.

* Objects of a database outside the cluster stay on it: every router method has no
  opinion about them (the session's ``other`` alias is a real PostgreSQL database
  that is no standby of anything).
* The default ``REPLICAS`` never claims a database silently: more than one other
  PostgreSQL alias is a check error naming them; an alias taken for a replica that
  answers as a primary is reported by plain ``manage.py check``.
* Users' own test suites are deterministic with the router installed: reads never go
  to an alias the running test does not allow, and no pin leaks between tests
  (Django's runner and pytest-django, in subprocesses against the session cluster).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import router
from django.test import override_settings
from router.models import ReplicationModel

from replica_router import _runtime, conf
from tests.server.test_example_project import (
    EXAMPLE,
    PYTHON,
    ROOT,
    Record,
    assert_no_test_databases_left,
    run,
    run_pytest_django,
    subprocess_env,
)
from tests.support import ROUTER_SETTINGS, LocalCluster

IGNORE_DATABASES_WARNING = pytest.mark.filterwarnings(
    "ignore:Overriding setting DATABASES can lead to unexpected behavior"
)


@pytest.fixture
def other_rows(healthy: LocalCluster) -> Iterator[None]:
    """Empty ``ReplicationModel`` and auth tables in the unrelated database, after too."""

    def wipe() -> None:
        ReplicationModel.objects.using("other").all().delete()
        User.objects.using("other").all().delete()
        Group.objects.using("other").all().delete()

    wipe()
    yield
    wipe()


def test_every_router_method_leaves_other_databases_alone(other_rows: None) -> None:
    """An object loaded from ``other``: the router says ``None`` to reads, writes and
    relations with it, and ``allow_migrate`` has no opinion about ``other``; so Django
    keeps it on ``other`` (its own fallback for an instance hint)."""
    from replica_router.router import ReadWriteRouter

    r = ReadWriteRouter()
    ReplicationModel.objects.using("other").create(name="o", count=1, average=1.0)
    obj = ReplicationModel.objects.using("other").get(name="o")
    assert obj._state.db == "other"
    mine = ReplicationModel.objects.create(name="mine", count=1, average=1.0)
    assert r.db_for_read(ReplicationModel, instance=obj) is None
    assert r.db_for_write(ReplicationModel, instance=obj) is None
    assert r.allow_relation(obj, mine) is None
    assert r.allow_relation(mine, obj) is None
    assert r.allow_migrate("other", "router", model_name="replicationmodel") is None
    # Django's own fallback then keeps the object's database.
    assert router.db_for_read(ReplicationModel, instance=obj) == "other"
    assert router.db_for_write(ReplicationModel, instance=obj) == "other"
    # Cluster objects keep their routing.
    assert r.db_for_write(ReplicationModel, instance=mine) == "default"
    assert r.db_for_read(ReplicationModel, instance=mine) in ("default", "replica")
    assert r.allow_relation(mine, mine) is True
    mine.delete()


def test_objects_of_other_database_save_delete_and_relate_there(other_rows: None) -> None:
    """The failures a real project hit: a delete of an object read from ``other`` ran
    on the primary and deleted nothing; a related row created from it was refused
    ("the current database router prevents this relation")."""
    ReplicationModel.objects.using("other").create(name="gone", count=1, average=1.0)
    obj = ReplicationModel.objects.using("other").get(name="gone")
    obj.count = 5
    obj.save()
    assert ReplicationModel.objects.using("other").get(pk=obj.pk).count == 5
    assert not ReplicationModel.objects.using("default").filter(name="gone").exists()
    obj.delete()
    assert not ReplicationModel.objects.using("other").filter(name="gone").exists()

    user = User.objects.db_manager("other").create_user("neighbour")
    user = User.objects.using("other").get(pk=user.pk)
    group = user.groups.create(name="neighbours")
    assert group._state.db == "other"
    assert list(user.groups.values_list("name", flat=True)) == ["neighbours"]
    assert not Group.objects.using("default").filter(name="neighbours").exists()


def _tutorial_dbs(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    dbs = {alias: dict(settings.DATABASES[alias]) for alias in ("default", "replica")}
    dbs.update(extra)
    return dbs


def _router_messages() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("replica_router.")]


@IGNORE_DATABASES_WARNING
def test_default_replicas_never_claims_a_second_database(router_reset: None) -> None:
    """``REPLICAS`` unset with two other PostgreSQL aliases: E003 names both, from
    ``conf.load()``, the router and ``manage.py check``, whose hint offers as an example
    only the alias that answers as a standby; nothing is read."""
    unset = {k: v for k, v in ROUTER_SETTINGS.items() if k != "REPLICAS"}
    with override_settings(REPLICA_ROUTER=unset):
        with pytest.raises(conf.SettingsError) as info:
            conf.load()
        assert info.value.check_id == "replica_router.E003"
        assert "'replica'" in str(info.value) and "'other'" in str(info.value)
        assert "REPLICAS" in info.value.hint
        with pytest.raises(conf.SettingsError):
            router.db_for_read(ReplicationModel)
        messages = _router_messages()
        assert [m.id for m in messages] == ["replica_router.E003"], messages
        assert messages[0].hint and "REPLICAS" in messages[0].hint
        # The hint's example is probed: it never offers the unrelated database (a
        # primary) as a standby; a probe slower than PROBE_TIMEOUT leaves it without one.
        hint = messages[0].hint
        if "answer as hot standbys" in hint:
            example = hint.split("e.g. ", 1)[1]
            assert "'replica'" in example and "'other'" not in example, hint
        else:
            assert "answers as a hot standby now" in hint, hint
        with pytest.raises(SystemCheckError, match=r"replica_router\.E003"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    # The tutorial's two aliases need no configuration.
    with override_settings(DATABASES=_tutorial_dbs(), REPLICA_ROUTER=unset):
        s = conf.load()
        assert s.replicas == {"replica": 1.0} and s.replicas_implicit
        assert _router_messages() == []
    _runtime.reset()


@IGNORE_DATABASES_WARNING
def test_a_replica_that_answers_as_primary_is_reported_by_plain_check(
    router_reset: None,
) -> None:
    """The only other alias is the unrelated database (no standby): taken by default,
    plain ``manage.py check`` fails with E004; listed explicitly, it warns W003."""
    unset = {k: v for k, v in ROUTER_SETTINGS.items() if k != "REPLICAS"}
    other = {**settings.DATABASES["other"], "ENGINE": settings.DATABASES["default"]["ENGINE"]}
    dbs = {"default": settings.DATABASES["default"], "other": other}
    with override_settings(DATABASES=dbs, REPLICA_ROUTER=unset):
        assert conf.load().replicas == {"other": 1.0}
        messages = _router_messages()
        assert [m.id for m in messages] == ["replica_router.E004"], messages
        assert "'other'" in messages[0].msg and "not a standby" in messages[0].msg
        with pytest.raises(SystemCheckError, match=r"replica_router\.E004"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
    explicit = {**ROUTER_SETTINGS, "REPLICAS": ["other"]}
    with override_settings(DATABASES=dbs, REPLICA_ROUTER=explicit):
        messages = _router_messages()
        assert [m.id for m in messages] == ["replica_router.W003"], messages
    # The real standby is not reported.
    assert _router_messages() == []
    _runtime.reset()


USER_TESTS = '''
"""A user's test module: the default ``databases`` (only "default")."""

import json
import os
import threading
import urllib.request

from django.db import router
from django.test import LiveServerTestCase, TestCase, TransactionTestCase, override_settings
from router.models import ReplicationModel

import replica_router
from replica_router import context

N = 100
#: Reads can only go to the replica at weight 0 of the primary, unless kept off it.
NO_PRIMARY_WEIGHT = {
    "PRIMARY_READ_WEIGHT": 0,
    "REPLICAS": {"replica": {"WEIGHT": 1}},
    "PROBE_INTERVAL": 0.1,
    "PROBE_TIMEOUT": 0.3,
}
REPORT = {}


def report(key, value):
    REPORT[key] = value
    with open(os.environ["RR_USER_REPORT"], "w") as fh:
        json.dump(REPORT, fh)


@override_settings(REPLICA_ROUTER=NO_PRIMARY_WEIGHT)
class PlainTransactionTests(TransactionTestCase):
    def test_reads_without_writes(self):
        import time

        deadline = time.monotonic() + 10
        while replica_router.status()[1]["state"] != "up":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        for _ in range(N):
            self.assertEqual(ReplicationModel.objects.count(), 0)
            self.assertEqual(router.db_for_read(ReplicationModel), "default")

    def test_reads_after_writes_see_them(self):
        for i in range(N):
            obj = ReplicationModel.objects.create(name="u", count=i, average=1.0)
            self.assertEqual(ReplicationModel.objects.get(pk=obj.pk).count, i)

    def test_z_no_pin_survives_the_previous_test(self):
        st = context.current()
        self.assertTrue(st is None or not st.is_pinned(), st)


@override_settings(REPLICA_ROUTER=NO_PRIMARY_WEIGHT)
class PlainTestCase(TestCase):
    def test_reads_in_the_test_transaction(self):
        obj = ReplicationModel.objects.create(name="t", count=1, average=1.0)
        self.assertEqual(ReplicationModel.objects.get(pk=obj.pk).name, "t")


@override_settings(REPLICA_ROUTER=NO_PRIMARY_WEIGHT)
class LiveServerTests(LiveServerTestCase):
    def test_server_thread_reads(self):
        ReplicationModel.objects.create(name="live", count=1, average=1.0)
        for _ in range(20):
            with urllib.request.urlopen(self.live_server_url + "/rows/") as resp:
                body = json.load(resp)
            self.assertEqual(body["db"], "default")
            self.assertEqual([row["name"] for row in body["rows"]], ["live"])


@override_settings(REPLICA_ROUTER={**NO_PRIMARY_WEIGHT, "TEST_REPLICA_READS": True})
class OptedInReplicaReads(TransactionTestCase):
    databases = {"default", "replica"}

    def test_reads_go_to_the_real_standby_and_see_own_writes(self):
        import time

        deadline = time.monotonic() + 10
        while replica_router.status()[1]["state"] != "up":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        with context.unit_of_work():
            to_replica = sum(router.db_for_read(ReplicationModel) == "replica" for _ in range(N))
        self.assertEqual(to_replica, N)
        misses = 0
        for i in range(N):
            obj = ReplicationModel.objects.create(name="o", count=i, average=1.0)
            misses += not ReplicationModel.objects.filter(pk=obj.pk).exists()
        report("opted_in_misses", misses)
        self.assertEqual(misses, 0)


@override_settings(REPLICA_ROUTER={**NO_PRIMARY_WEIGHT, "TEST_REPLICA_READS": True})
class OptedInButNotAllowed(TransactionTestCase):
    def test_reads_stay_off_an_alias_the_test_does_not_allow(self):
        for _ in range(N):
            self.assertEqual(ReplicationModel.objects.count(), 0)
'''


def test_users_test_suite_is_deterministic_under_djangos_runner(
    clean_test_databases: LocalCluster, tmp_path: Path, record: Record
) -> None:
    """A user's ``TransactionTestCase`` with the default ``databases`` at
    ``PRIMARY_READ_WEIGHT`` 0 used to fail every time (``DatabaseOperationForbidden``
    on ``replica``); with the router's test mode it passes, as do a ``TestCase``, a
    ``LiveServerTestCase`` and the opted-in replica reads (0 stale reads after own
    writes on the real standby)."""
    cluster = clean_test_databases
    suite = tmp_path / "usersuite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "test_user.py").write_text(USER_TESTS)
    report = tmp_path / "report.json"
    proc, seconds = run(
        [
            PYTHON,
            str(EXAMPLE / "manage.py"),
            "test",
            str(suite),
            "--top-level-directory",
            str(tmp_path),
            "-v",
            "2",
            "--noinput",
        ],
        cwd=ROOT,
        env={**subprocess_env(cluster), "RR_USER_REPORT": str(report)},
    )
    output = proc.stdout + proc.stderr
    record("user_suite.seconds", round(seconds, 2))
    assert proc.returncode == 0, output[-5000:]
    assert "Ran 7 tests" in output, output[-5000:]
    assert "DatabaseOperationForbidden" not in output
    assert json.loads(report.read_text()) == {"opted_in_misses": 0}
    assert_no_test_databases_left(cluster)


PYTEST_USER_TESTS = '''
import pytest
from django.db import router
from router.models import ReplicationModel

import replica_router
from replica_router import context

SETTINGS = {"PRIMARY_READ_WEIGHT": 0, "REPLICAS": {"replica": {"WEIGHT": 1}},
            "PROBE_INTERVAL": 0.1, "PROBE_TIMEOUT": 0.3}


@pytest.fixture(autouse=True)
def no_primary_weight(settings):
    settings.REPLICA_ROUTER = SETTINGS


@pytest.mark.django_db(transaction=True)
def test_transactional_reads_stay_allowed():
    import time

    deadline = time.monotonic() + 10
    while replica_router.status()[1]["state"] != "up":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for i in range(100):
        assert router.db_for_read(ReplicationModel) == "default"
        obj = ReplicationModel.objects.create(name="p", count=i, average=1.0)
        assert ReplicationModel.objects.get(pk=obj.pk).count == i


@pytest.mark.django_db(transaction=True)
def test_no_pin_leaks_from_the_previous_test():
    st = context.current()
    assert st is None or not st.is_pinned(), st
    assert ReplicationModel.objects.count() == 0


@pytest.mark.django_db
def test_in_test_transaction():
    obj = ReplicationModel.objects.create(name="q", count=1, average=1.0)
    assert ReplicationModel.objects.get(pk=obj.pk).name == "q"
'''


def test_users_test_suite_is_deterministic_under_pytest_django(
    clean_test_databases: LocalCluster, tmp_path: Path, record: Record
) -> None:
    """The same under pytest-django: ``django_db(transaction=True)`` with the default
    databases, the primary at weight 0, pins not leaking into the next test."""
    cluster = clean_test_databases
    proc, seconds = run_pytest_django(
        tmp_path, {"test_user.py": PYTEST_USER_TESTS}, subprocess_env(cluster)
    )
    output = proc.stdout + proc.stderr
    record("user_pytest.seconds", round(seconds, 2))
    assert proc.returncode == 0, output[-5000:]
    assert "3 passed" in output, output[-5000:]
    assert_no_test_databases_left(cluster)
