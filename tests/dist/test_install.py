"""What ``make dist`` publishes, installed the way a user installs it.

Each test makes a clean venv, installs one artefact from ``RR_DIST_DIR`` (default
``wheelhouse/``) plus Django and psycopg 3 from the package index, and runs
``PROBE`` in it against a real primary + hot standby (``example_project/pgcluster.py``):
the router must send a read to the standby, an ORM query and a cursor query through
that alias must succeed on the standby, and ``replica_router.status()`` must show
the standby ``up``.

Run by ``make test-dist`` (after ``make dist``), never by ``make test``: the sdist
test is a full release build of the Rust core.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DIST = Path(os.environ.get("RR_DIST_DIR", str(ROOT / "wheelhouse"))).resolve()
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import LocalCluster  # noqa: E402

#: pip install + a release build of the core from the sdist on a busy 2-core machine.
INSTALL_TIMEOUT = 1800
PROBE_TIMEOUT = 120

#: Runs inside the clean venv, from an empty directory (so nothing of the source tree
#: can be imported): configure Django against the cluster, migrate on the primary,
#: route reads, report what happened as JSON on the last line of stdout.
PROBE = r"""
import json, sys, time

import django
from django.conf import settings

cfg = json.loads(sys.argv[1])
settings.configure(
    DATABASES={"default": cfg["primary"], "replica": cfg["standby"]},
    DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
    # Reads go to the standby whenever it is eligible: a read that lands there
    # proves the routing, not a coin toss.
    REPLICA_ROUTER={"PROBE_INTERVAL": 0.1, "PROBE_TIMEOUT": 0.5, "FALL": 2, "RISE": 2,
                    "PRIMARY_READ_WEIGHT": 0},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "replica_router"],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

import replica_router
import replica_router._core as core
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connections, router


def wait(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}: {replica_router.status()}")
        time.sleep(0.05)


call_command("migrate", verbosity=0)  # writes: on the primary
write_alias = router.db_for_write(ContentType)
wait(lambda: {n["alias"]: n["state"] for n in replica_router.status()}.get("replica") == "up",
     "the standby to be up")
with replica_router.unit_of_work():  # no pin from migrate's writes
    read_alias = router.db_for_read(ContentType)
    # Routed ORM read: the standby has the migrated rows once it has replayed them.
    wait(lambda: ContentType.objects.filter(app_label="auth").exists(), "replayed rows")
    orm_count = ContentType.objects.count()
    with connections[read_alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        in_recovery, port = cursor.fetchone()
print(json.dumps({
    "version": replica_router.__version__,
    "core_file": core.__file__,
    "prefix": sys.prefix,
    "python": list(sys.version_info[:2]),
    "django": django.get_version(),
    "write_alias": write_alias,
    "read_alias": read_alias,
    "orm_count": orm_count,
    "in_recovery": in_recovery,
    "server_port": port,
    "status": {n["alias"]: n["state"] for n in replica_router.status()},
    "decisions": replica_router.decisions(),
}))
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A primary + hot standby on free loopback ports, stopped whatever happens."""
    c = LocalCluster()
    try:
        c.up()
        yield c
    finally:
        c.down()


def only(pattern: str) -> Path:
    found = sorted(glob.glob(str(DIST / pattern)))
    assert len(found) == 1, f"expected one {pattern} in {DIST} (run `make dist`): {found}"
    return Path(found[0])


def interpreter(version: str) -> str:
    """``pythonX.Y`` from ``~/.pyenv/versions`` or PATH; fails if there is none."""
    root = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"
    found = sorted(glob.glob(str(root / f"{version}.*" / "bin" / f"python{version}")))
    if found:
        return found[-1]
    on_path = subprocess.run(
        ["sh", "-c", f"command -v python{version}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert on_path, f"python{version} not found under {root} or on PATH"
    return on_path


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("DJANGO_", "PYTEST_"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def make_venv(python: str, where: Path, *install: str, **env: str) -> tuple[Path, float]:
    """A fresh venv with ``install`` pip-installed; returns its python and the seconds."""
    started = time.monotonic()
    subprocess.run([python, "-m", "venv", str(where)], check=True, timeout=120)
    venv_python = where / "bin" / "python"
    proc = subprocess.run(
        [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", *install],
        cwd=where,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return venv_python, time.monotonic() - started


def probe(venv_python: Path, cluster: LocalCluster, workdir: Path) -> dict[str, Any]:
    """Run ``PROBE`` in the venv; returns its report."""
    script = workdir / "probe.py"
    script.write_text(PROBE)
    cfg = {"primary": cluster.dsn("primary"), "standby": cluster.dsn("standby")}
    proc = subprocess.run(
        [str(venv_python), str(script), json.dumps(cfg)],
        cwd=workdir,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def check_routed(report: dict[str, Any], cluster: LocalCluster, venv_python: Path) -> None:
    """The read went to the standby, found the replayed rows, and the core was the
    installed one."""
    assert report["write_alias"] == "default"
    assert report["read_alias"] == "replica"
    assert report["in_recovery"] is True
    assert report["server_port"] == cluster.standby_port
    assert report["orm_count"] > 0
    assert report["status"] == {"default": "up", "replica": "up"}
    assert report["decisions"].get("weighted", 0) >= 1, report["decisions"]
    prefix = str(venv_python.parent.parent)
    assert report["core_file"].startswith(prefix), report["core_file"]
    assert report["core_file"].endswith(".abi3.so"), report["core_file"]


@pytest.mark.parametrize("python", ["3.10", "3.13"])
def test_wheel_installs_and_routes(cluster: LocalCluster, tmp_path: Path, python: str) -> None:
    """Proves: the manylinux2014 x86_64 abi3 wheel installs with plain pip into a clean
    venv of the oldest (3.10, the abi3 floor) and newest supported Python, and routes
    a read to the standby of a real cluster."""
    assert platform.machine() == "x86_64", "this test installs the x86_64 wheel"
    wheel = only("*-cp310-abi3-manylinux*x86_64.whl")
    assert "manylinux2014_x86_64" in wheel.name or "manylinux_2_17_x86_64" in wheel.name
    venv_python, seconds = make_venv(
        interpreter(python),
        tmp_path / "venv",
        "--only-binary=:all:",
        str(wheel),
        "psycopg[binary]>=3.1",
    )
    print(f"wheel install on {python}: {seconds:.1f}s")
    report = probe(venv_python, cluster, tmp_path)
    assert report["python"] == [int(x) for x in python.split(".")]
    check_routed(report, cluster, venv_python)


def test_sdist_builds_installs_and_routes(cluster: LocalCluster, tmp_path: Path) -> None:
    """Proves: the sdist builds with pip (maturin + cargo, offline: every crate comes
    from Cargo.lock and is already fetched) into a clean venv, and the result routes a
    read to the standby of a real cluster."""
    sdist = only("django_replica_router-*.tar.gz")
    venv_python, seconds = make_venv(
        sys.executable,
        tmp_path / "venv",
        "--no-cache-dir",
        "--no-binary",
        "django-replica-router",
        str(sdist),
        "psycopg[binary]>=3.1",
        CARGO_NET_OFFLINE="true",
        CARGO_TARGET_DIR=str(tmp_path / "target"),
    )
    print(f"sdist build + install: {seconds:.1f}s")
    report = probe(venv_python, cluster, tmp_path)
    check_routed(report, cluster, venv_python)
