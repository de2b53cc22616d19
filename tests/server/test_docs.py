"""The documentation's commands and settings, run as a reader would run them.

* ``docs/local-cluster.md``: its Start, Check and Stop blocks, run with bash and
  PostgreSQL's own binaries (as an unprivileged user when we are root) on free ports
  substituted for the documented 5432/5433, bring up a primary and a hot standby
  that streams from it, and stop them again.
* ``README.md``'s Quickstart: its one settings block, appended to a project made by
  ``django-admin startproject`` (ports substituted for the session cluster's), gives
  a clean ``manage.py check``, a healthy ``replica_status`` and a routed read that
  runs on the standby; with ``docs/observability.md``'s ``LOGGING`` added, the
  standby coming up is logged at INFO.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from tests.pgcluster import find_pg_bin
from tests.snippets import block_under
from tests.support import LocalCluster

DOC_PRIMARY_PORT, DOC_STANDBY_PORT = "5432", "5433"
DOC_DIR = "/tmp/rr-cluster"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports, never 5432 or 5433 (a system PostgreSQL's)."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            s = stack.enter_context(closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)))
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in (5432, 5433):
                ports.append(port)
        return ports


def substitute(text: str, primary: int, standby: int, data_dir: str = DOC_DIR) -> str:
    """The documented ports and directory replaced by the test's."""
    return (
        text.replace(DOC_PRIMARY_PORT, str(primary))
        .replace(DOC_STANDBY_PORT, str(standby))
        .replace(DOC_DIR, data_dir)
    )


class Shell:
    """Runs recipe blocks with bash, as the user PostgreSQL accepts, with its binaries
    first on PATH and none of the caller's ``PG*`` variables."""

    def __init__(self, home: str) -> None:
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            assert self.user is not None, "no unprivileged user to run PostgreSQL as"
            os.chown(home, self.user.pw_uid, self.user.pw_gid)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PATH=f"{find_pg_bin()}:{env.get('PATH', '/usr/bin:/bin')}", HOME=home, LC_ALL="C")
        self.env = env
        self.home = home

    def run(self, script: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=None if self.user is None else self.user.pw_uid,
            group=None if self.user is None else self.user.pw_gid,
            extra_groups=None if self.user is None else [],
        )


@pytest.fixture
def recipe_dir() -> Iterator[tuple[Shell, str]]:
    """A private directory for the recipe's cluster; whatever the recipe started in it
    is stopped afterwards, also when the test fails."""
    home = tempfile.mkdtemp(prefix="rr-doc-", dir="/tmp")
    shell = Shell(home)
    data_dir = os.path.join(home, "c")
    try:
        yield shell, data_dir
    finally:
        for node in ("standby", "primary"):
            if os.path.exists(os.path.join(data_dir, node, "postmaster.pid")):
                shell.run(f"pg_ctl -D '{data_dir}/{node}' -m immediate -w stop", timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def test_local_cluster_recipe_brings_up_a_streaming_standby(
    recipe_dir: tuple[Shell, str],
) -> None:
    """Proves: docs/local-cluster.md's Start block, run as written (ports and directory
    substituted), starts a primary and a hot standby; its Check block then prints
    ``streaming``; the standby answers read-only and sees a table made on the primary;
    its Stop block stops both servers and removes the directory."""
    shell, data_dir = recipe_dir
    page = "docs/local-cluster.md"
    primary, standby = free_ports(2)
    start = substitute(block_under(page, "Start", "sh"), primary, standby, data_dir)
    check = f"DIR={data_dir}\n" + substitute(block_under(page, "Check", "sh"), primary, standby)
    stop = f"DIR={data_dir}\n" + substitute(block_under(page, "Stop", "sh"), primary, standby)

    done = shell.run(start)
    assert done.returncode == 0, (done.stdout, done.stderr)

    deadline = time.monotonic() + 30
    while True:
        out = shell.run(check, timeout=30)
        if out.returncode == 0 and out.stdout.strip() == "streaming":
            break
        assert time.monotonic() < deadline, (out.stdout, out.stderr)
        time.sleep(0.2)

    sql = f"psql -h {data_dir} -U postgres -v ON_ERROR_STOP=1 -Atc"
    made = shell.run(f"{sql} 'CREATE TABLE doc_t AS SELECT 42 AS x' -p {primary}")
    assert made.returncode == 0, made.stderr
    deadline = time.monotonic() + 30
    while True:
        seen = shell.run(f"{sql} 'SELECT pg_is_in_recovery(), x FROM doc_t' -p {standby}")
        if seen.returncode == 0:
            break
        assert time.monotonic() < deadline, seen.stderr
        time.sleep(0.2)
    assert seen.stdout.strip() == "t|42", seen.stdout
    # Through TCP with the Quickstart's credentials, as Django will connect.
    tcp = shell.run(
        f"PGPASSWORD=postgres psql -h 127.0.0.1 -p {standby} -U postgres -d postgres "
        "-Atc 'SELECT pg_is_in_recovery()'"
    )
    assert (tcp.returncode, tcp.stdout.strip()) == (0, "t"), tcp.stderr

    stopped = shell.run(stop, timeout=60)
    assert stopped.returncode == 0, (stopped.stdout, stopped.stderr)
    assert not os.path.exists(data_dir)


ROUTED_READ = textwrap.dedent(
    """
    import json, time
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections
    import replica_router

    deadline = time.monotonic() + 30
    while {n["state"] for n in replica_router.status()} != {"up"}:
        assert time.monotonic() < deadline, replica_router.status()
        time.sleep(0.1)
    for _ in range(500):  # weights 1:1, so the standby's turn comes soon
        ContentType.objects.count()
        if connections["replica"].connection is not None:
            break
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        in_recovery, port = cursor.fetchone()
    print(json.dumps({"in_recovery": in_recovery, "port": port,
                      "decisions": replica_router.decisions()}))
    """
)


def test_readme_quickstart_routes_a_read_to_the_standby(cluster: LocalCluster) -> None:
    """Proves: README.md's Quickstart block, appended as written to a fresh
    ``startproject`` settings file (the session cluster's ports for 5432/5433), gives
    ``manage.py check`` with no issue, ``replica_status`` exit 0, and an ORM read routed
    to the hot standby; with the documented ``LOGGING``, the standby coming up is
    logged at INFO."""
    quickstart = block_under("README.md", "Quickstart", "python")
    settings_block = substitute(quickstart, cluster.port("primary"), cluster.port("standby"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    with tempfile.TemporaryDirectory(prefix="rr-quick-") as tmp:
        made = subprocess.run(
            [sys.executable, "-m", "django", "startproject", "quick", tmp],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        settings_py = Path(tmp, "quick", "settings.py")
        settings_py.write_text(settings_py.read_text() + "\n" + settings_block)

        def manage(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=tmp, capture_output=True, text=True, timeout=120, env=env, check=False,
            )  # fmt: skip

        checked = manage("check")
        assert checked.returncode == 0, (checked.stdout, checked.stderr)
        assert "System check identified no issues" in checked.stdout, checked.stdout
        assert checked.stderr == "", checked.stderr  # no warning (W004 and the like)

        status = manage("replica_status")
        assert status.returncode == 0, (status.stdout, status.stderr)

        # With docs/observability.md's LOGGING, the state changes show, INFO included.
        logging_block = block_under("docs/observability.md", "Logging", "python")
        settings_py.write_text(settings_py.read_text() + "\n" + logging_block)
        read = manage("shell", "-c", ROUTED_READ)
        assert read.returncode == 0, (read.stdout, read.stderr)
        logged = [line for line in read.stderr.splitlines() if " replica_router: " in line]
        assert any(" INFO " in line and '"replica" is up' in line for line in logged), read.stderr
        report = json.loads(read.stdout.strip().splitlines()[-1])
        assert report["in_recovery"] is True, report
        assert report["port"] == cluster.port("standby"), report
