"""The example project's own tests, and a pytest-django project, against the session cluster.

Both run in a subprocess with the real DJReplica settings pointed at the session's
primary and standby. Test databases can only be created on the primary (the standby
is read-only), so these runs pass only if replica_router made the ``replica`` alias
a test mirror of ``default`` before the test databases were set up. Each run must
also leave no test database behind.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import LocalCluster, existing_test_databases

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
#: The interpreter of the subprocesses: RR_TEST_PYTHON (each nox matrix cell sets its
#: own), else the project's .venv, else this one.
PYTHON = os.environ.get("RR_TEST_PYTHON") or (
    str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
)
#: Generous: a subprocess on a shared 2-core machine; a hang must still end the test.
RUN_TIMEOUT = 240

logger = logging.getLogger("tests.example_project")

Record = Callable[[str, object], None]


def subprocess_env(cluster: LocalCluster) -> dict[str, str]:
    """This environment minus Django/pytest settings, pointed at the session cluster."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DJREPLICA_", "PYTEST_")) and k != "PYTHONPATH"
    }
    env.update(cluster.env_vars())
    env["DJREPLICA_PRIMARY_PORT"] = str(cluster.primary_port)
    env["DJREPLICA_REPLICA_PORT"] = str(cluster.standby_port)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(
    args: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run to completion (killed after ``RUN_TIMEOUT``); returns the result and seconds."""
    started = time.monotonic()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return proc, time.monotonic() - started


def run_pytest_django(
    project: Path, files: dict[str, str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Write ``files`` and a pytest.ini for the DJReplica settings into ``project``,
    and run pytest-django there (to completion, killed after ``RUN_TIMEOUT``)."""
    (project / "pytest.ini").write_text(
        textwrap.dedent(
            f"""\
            [pytest]
            DJANGO_SETTINGS_MODULE = DJReplica.settings
            django_find_project = false
            pythonpath = {EXAMPLE}
            filterwarnings = error
            """
        )
    )
    for name, text in files.items():
        (project / name).write_text(text)
    args = ["-p", "pytest_django", "-p", "no:cacheprovider", "-c", str(project / "pytest.ini")]
    args += ["--rootdir", str(project), "-v", str(project)]
    return run([PYTHON, "-m", "pytest", *args], cwd=project, env=env)


def assert_no_test_databases_left(cluster: LocalCluster) -> None:
    """Neither node keeps a test database once the run is over."""
    assert existing_test_databases(cluster, "primary") == []
    cluster.wait_replayed()
    assert existing_test_databases(cluster, "standby") == []


def test_manage_py_test_router(clean_test_databases: LocalCluster, record: Record) -> None:
    """Proves: ``manage.py test router`` of the example project passes against a
    real primary + hot standby: Django's test runner creates the test database on
    the primary only (``replica`` mirrors it; creating one on the read-only standby
    would fail), the tests read through both aliases, and the database is dropped."""
    cluster = clean_test_databases
    proc, seconds = run(
        [PYTHON, "example_project/manage.py", "test", "router", "-v", "2", "--noinput"],
        cwd=ROOT,
        env=subprocess_env(cluster),
    )
    output = proc.stdout + proc.stderr
    record("manage_py_test.seconds", round(seconds, 2))
    assert proc.returncode == 0, output[-4000:]
    assert "Creating test database for alias 'default'" in output, output[-4000:]
    assert "Creating test database for alias 'replica'" not in output, output[-4000:]
    assert "\nOK" in output, output[-4000:]
    assert_no_test_databases_left(cluster)


CONFTEST = '''
"""pytest-django project using the DJReplica settings."""

import time

import pytest
from django.conf import settings
from django.db import connections


@pytest.fixture(scope="session", autouse=True)
def standby_has_the_test_database(django_db_setup, django_db_blocker):
    """The test database (its CREATE DATABASE and migrations) reaches the hot standby
    by replication: wait (bounded) until the standby has replayed the primary's WAL
    position of now, asking it with the driver alone, before any test opens the replica
    alias (a miss there would be replication's timing, not the mirror's)."""
    replica = connections["replica"]
    params = replica.get_connection_params()
    deadline = time.monotonic() + 30
    with django_db_blocker.unblock():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            (lsn,) = cursor.fetchone()
        while True:
            try:
                raw = replica.Database.connect(**params)
                try:
                    cur = raw.cursor()
                    cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
                    if cur.fetchone()[0]:
                        return
                finally:
                    raw.close()
            except replica.Database.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the standby never replayed {lsn}")
            time.sleep(0.05)


@pytest.fixture
def replica_mirror() -> object:
    """What replica_router set as the replica's test mirror."""
    return settings.DATABASES["replica"]["TEST"].get("MIRROR")
'''

TEST_MODULE = '''
"""The replica mirrors the primary under pytest-django."""

import json
import os
import time

import pytest
from django.db import connections, router
from router.models import ReplicationModel

SEQUENCES = 200


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_row_written_is_read_via_replica(replica_mirror):
    assert replica_mirror == "default"
    names = {alias: connections[alias].settings_dict["NAME"] for alias in ("default", "replica")}
    assert names["replica"] == names["default"] != "postgres", names
    pks = []
    immediate_misses = 0
    for _ in range(SEQUENCES):
        obj = ReplicationModel.objects.create(name="pd", count=2, average=1.0)
        assert obj._state.db == "default"
        pks.append(obj.pk)
        immediate_misses += not ReplicationModel.objects.using("replica").filter(pk=obj.pk).exists()
        # Routed reads right after the write go to the primary (pinned): always found.
        assert ReplicationModel.objects.get(pk=obj.pk).count == 2
    # Every row reaches the replica alias: it reads the primary's test database.
    deadline = time.monotonic() + 10
    while ReplicationModel.objects.using("replica").filter(pk__in=pks).count() != len(pks):
        assert time.monotonic() < deadline, "rows never reached the replica alias"
        time.sleep(0.01)
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        in_recovery, port = cursor.fetchone()
    with open(os.environ["RR_MIRROR_REPORT"], "w") as fh:
        json.dump(
            {
                "sequences": SEQUENCES,
                "immediate_misses": immediate_misses,
                "replica_in_recovery": in_recovery,
                "replica_server_port": port,
            },
            fh,
        )


@pytest.mark.django_db(databases=["default", "replica"])
def test_routed_read_in_test_transaction_sees_the_row(replica_mirror):
    assert replica_mirror == "default"
    obj = ReplicationModel.objects.create(name="pdtx", count=1, average=1.0)
    # The test runs inside a transaction on "default": reads are routed there.
    assert router.db_for_read(ReplicationModel) == "default"
    assert ReplicationModel.objects.get(pk=obj.pk).name == "pdtx"
'''


def test_pytest_django_mirrors_replica(
    clean_test_databases: LocalCluster, tmp_path: Path, record: Record
) -> None:
    """Proves: under pytest-django (DJANGO_SETTINGS_MODULE=DJReplica.settings) the
    ``replica`` alias mirrors the primary's test database: in a transactional test
    marked ``django_db(databases=["default", "replica"])`` the rows just created are
    read through ``.using("replica")``, and routed reads right after each write find
    it; in a TestCase-style test the routed read goes to ``default`` (the test's
    transaction) and finds the row. Nothing is left over.

    Django's MIRROR only swaps NAME, so ``replica`` reads the standby's replicated
    copy of the test database: a read through it right after a commit can miss
    (replication lag), which is why the row is awaited there (bounded) and the
    immediate misses are only recorded. ``.using("replica")`` never sees the
    uncommitted rows of a TestCase-style test (Django ticket #23718)."""
    cluster = clean_test_databases
    report = tmp_path / "mirror_report.json"
    proc, seconds = run_pytest_django(
        tmp_path,
        {"conftest.py": CONFTEST, "test_mirror.py": TEST_MODULE},
        {**subprocess_env(cluster), "RR_MIRROR_REPORT": str(report)},
    )
    output = proc.stdout + proc.stderr
    record("pytest_django.seconds", round(seconds, 2))
    assert proc.returncode == 0, output[-4000:]
    assert "2 passed" in output, output[-4000:]
    measured = json.loads(report.read_text())
    record("pytest_django.mirror", measured)
    # The mirror reads the session cluster's servers (the standby, through replication).
    assert measured["replica_server_port"] in (cluster.primary_port, cluster.standby_port)
    assert_no_test_databases_left(cluster)
