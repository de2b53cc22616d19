"""Trust boundaries (issue 16), each tried as a user would, in separate processes:

* two processes on one host whose settings differ only in the replica's password do
  not share health: the good one keeps the replica in reads without flapping, the
  bad one shows it ``misconfigured`` and sends it nothing (both start orders, with
  and without the router's backend); a login refused to one process's real traffic
  is that process's own configuration error, never posted to the shared prober;
* a process whose locmem email backend made ``mail.outbox`` is not a test run: it
  routes reads to the replica and its time pins expire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import BACKEND, FALL, INTERVAL, RISE, TIMEOUT, LocalCluster

#: Generous: subprocesses on a shared 2-core machine; a hang must still end the test.
PROC_TIMEOUT = 90

#: Django set up in a subprocess: settings from RR_* variables, the replica_router
#: logger collected into LOG, and `read()`: one routed read, run for real.
PRELUDE = r"""
import json, logging, os, sys, time
import django
from django.conf import settings

dbs = json.loads(os.environ["RR_DBS"])
settings.configure(
    DATABASES=dbs,
    DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
    INSTALLED_APPS=["replica_router"],
    REPLICA_ROUTER=json.loads(os.environ["RR_ROUTER"]),
    EMAIL_BACKEND=os.environ.get("RR_EMAIL", "django.core.mail.backends.smtp.EmailBackend"),
    USE_TZ=True,
)
django.setup()
LOG = []
class Keep(logging.Handler):
    def emit(self, record):
        LOG.append(record.getMessage())
logging.getLogger("replica_router").addHandler(Keep())
logging.getLogger("replica_router").setLevel(logging.DEBUG)

import replica_router
from django.db import connections
from replica_router import ReadWriteRouter
ROUTER = ReadWriteRouter()
ERRORS = []

def read():
    alias = ROUTER.db_for_read(None)
    try:
        with connections[alias].cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:
        ERRORS.append(f"{alias}: {type(exc).__name__}")
    return alias

def replica():
    return replica_router.status()[1]
"""

#: One of the two password processes: reads until the replica's state settles, says
#: "ready", waits for "go", reads for RR_SECONDS, prints what it saw.
PASSWORD_PROC = PRELUDE + r"""
routed = {"default": 0, "replica": 0}
deadline = time.monotonic() + 20
while time.monotonic() < deadline and replica()["state"] not in ("up", "misconfigured"):
    routed[read()] += 1
    time.sleep(0.01)
print("ready", flush=True)
sys.stdin.readline()
before = replica_router.decisions()
log_before = len(LOG)
measured = {"default": 0, "replica": 0}
states = set()
end = time.monotonic() + float(os.environ["RR_SECONDS"])
while time.monotonic() < end:
    alias = read()
    routed[alias] += 1
    measured[alias] += 1
    states.add(replica()["state"])
    time.sleep(0.005)
after = replica_router.decisions()
print(json.dumps({
    "pid": os.getpid(), "routed": routed, "measured": measured, "states": sorted(states),
    "decisions": {k: after[k] - before[k] for k in after}, "status": replica_router.status(),
    "log": LOG[log_before:], "all_log": LOG, "errors": ERRORS,
}), flush=True)
"""

PASSWORD_SECONDS = 4.0


def databases(cluster: LocalCluster, replica_password: str, engine: str) -> dict[str, Any]:
    primary = {**cluster.dsn("primary"), "ENGINE": engine}
    replica = {**cluster.dsn("standby"), "ENGINE": engine, "PASSWORD": replica_password}
    return {"default": primary, "replica": replica}


ROUTER = {
    "REPLICAS": ["replica"],
    "PROBE_INTERVAL": INTERVAL,
    "PROBE_TIMEOUT": TIMEOUT,
    "FALL": FALL,
    "RISE": RISE,
}


class Proc:
    """A subprocess running ``PASSWORD_PROC`` (killed if the test fails)."""

    def __init__(self, env: dict[str, str], script: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )

    def ready(self) -> None:
        assert self.p.stdout is not None
        line = self.p.stdout.readline().strip()
        assert line == "ready", (line, self.stderr())

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def result(self) -> dict[str, Any]:
        out, err = self.p.communicate(timeout=PROC_TIMEOUT)
        assert self.p.returncode == 0, err[-3000:]
        assert "panicked" not in err and "Traceback" not in err, err[-3000:]
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    def stderr(self) -> str:
        self.p.kill()
        _, err = self.p.communicate(timeout=PROC_TIMEOUT)
        return err[-3000:]

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate(timeout=PROC_TIMEOUT)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    made: list[Proc] = []
    yield made
    for p in made:
        p.kill()


@pytest.mark.parametrize("engine", [BACKEND, "django.db.backends.postgresql"], ids=["backend", "django"])
@pytest.mark.parametrize("first", ["good", "bad"])
def test_processes_with_different_passwords_never_share_health(
    healthy: LocalCluster, tmp_path: Path, procs: list[Proc], engine: str, first: str
) -> None:
    """Proves (point 1): with one shared-health directory, a process with the
    replica's right password and one with a wrong one, started in either order:
    the good one keeps the replica ``up`` and weighted into its reads the whole time
    (no down-fallback read, no state change, no fault "reported by another worker");
    the bad one shows it ``misconfigured`` with the server's reason and never routes
    a read to it; each has its own prober (their keys differ)."""
    share = tmp_path / "share"
    share.mkdir(mode=0o700)
    base = {
        **os.environ,
        "RR_ROUTER": json.dumps(ROUTER),
        "REPLICA_ROUTER_SHARE_DIR": str(share),
        "RR_SECONDS": str(PASSWORD_SECONDS),
    }
    good_pw = healthy.dsn("standby")["PASSWORD"]
    envs = {
        "good": {**base, "RR_DBS": json.dumps(databases(healthy, good_pw, engine))},
        "bad": {**base, "RR_DBS": json.dumps(databases(healthy, "not-the-password", engine))},
    }
    order = [first, "bad" if first == "good" else "good"]
    started: dict[str, Proc] = {}
    for name in order:
        started[name] = Proc(envs[name], PASSWORD_PROC)
        procs.append(started[name])
        started[name].ready()
    for p in started.values():
        p.go()
    good, bad = started["good"].result(), started["bad"].result()

    # The good process: the replica in its reads the whole time, never flapping.
    g = good["status"][1]
    assert g["state"] == "up" and g["shared"] is True, g
    assert g["prober_pid"] == good["pid"], "its own prober: no one shares its key"
    assert good["states"] == ["up"], good["states"]
    assert good["measured"]["replica"] > 0, good["measured"]
    assert good["decisions"]["down_fallback"] == 0, good["decisions"]
    assert not [m for m in good["log"] if "replica" in m], good["log"]
    assert not [m for m in good["all_log"] if "another worker" in m], good["all_log"]
    assert good["errors"] == [], good["errors"]

    # The bad process: misconfigured, with the server's reason; no read sent there.
    b = bad["status"][1]
    assert b["state"] == "misconfigured", b
    assert "password authentication failed" in (b["last_error"] or ""), b
    assert "not-the-password" not in json.dumps(bad), "the password never shows"
    assert b["prober_pid"] == bad["pid"], b
    assert bad["routed"]["replica"] == 0, bad["routed"]
    assert bad["errors"] == [], bad["errors"]
    assert any("misconfigured" in m for m in bad["all_log"]), bad["all_log"]


#: Sharing health with a leader that has the right password, a process whose own
#: connections to the replica are refused (its connection settings changed after the
#: prober started, as when a worker's password is rotated under it).
OWN_ERROR_PROC = PRELUDE + r"""
while replica()["state"] != "up":
    time.sleep(0.02)
connections["replica"].settings_dict["PASSWORD"] = "rotated-away"
routed = {"default": 0, "replica": 0}
for _ in range(300):
    routed[read()] += 1
time.sleep(1.0)
print(json.dumps({"pid": os.getpid(), "routed": routed, "status": replica_router.status(),
                  "log": LOG, "errors": ERRORS}), flush=True)
"""


def test_a_refused_login_is_the_process_own_error(healthy: LocalCluster, tmp_path: Path) -> None:
    """Proves (point 1, passive side): in a process following this one's shared
    prober, real connections refused for a wrong password (psycopg: no SQLSTATE) make
    the replica ``misconfigured`` for that process only, with the reason; its read is
    run again on the primary; it sends the replica no more reads; and this process
    (the leader) never hears of it: no passive fault, the replica up."""
    import replica_router
    from replica_router import _runtime
    from tests.support import wait_until

    share = tmp_path / "share"
    share.mkdir(mode=0o700)
    os.environ["REPLICA_ROUTER_SHARE_DIR"] = str(share)
    try:
        _runtime.reset()
        wait_until(lambda: all(n["state"] == "up" for n in replica_router.status()), 10)
        assert replica_router.status()[1]["prober_pid"] == os.getpid()
        before = replica_router.status()[1]["passive_faults"]
        dbs = databases(healthy, healthy.dsn("standby")["PASSWORD"], BACKEND)
        env = {**os.environ, "RR_ROUTER": json.dumps(ROUTER), "RR_DBS": json.dumps(dbs)}
        out = subprocess.run(
            [sys.executable, "-c", OWN_ERROR_PROC],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROC_TIMEOUT,
            check=False,
            cwd="/",
        )
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        r = report["status"][1]
        assert r["state"] == "misconfigured", r
        assert r["error_class"] == "authentication_failed", r
        assert "password authentication failed" in r["last_error"], r
        assert r["prober_pid"] == os.getpid(), "still following the shared prober"
        assert report["errors"] == [], "the refused read ran again on the primary"
        assert report["routed"]["replica"] == 1, report["routed"]
        assert "rotated-away" not in out.stdout + out.stderr
        mine = replica_router.status()[1]
        assert mine["state"] == "up" and mine["passive_faults"] == before, mine
    finally:
        del os.environ["REPLICA_ROUTER_SHARE_DIR"]
        _runtime.reset()


#: EMAIL_BACKEND locmem, its connection built (which makes mail.outbox): reads go to
#: the replica, and a write's time pin (PIN_SECONDS) expires.
LOCMEM_PROC = PRELUDE + r"""
from django.core import mail
from replica_router import context, testing
mail.get_connection()
assert hasattr(mail, "outbox")
while replica()["state"] != "up":
    time.sleep(0.02)
reads = sorted({read() for _ in range(200)})
ROUTER.db_for_write(None)
pinned = sorted({ROUTER.db_for_read(None) for _ in range(50)})
time.sleep(float(os.environ["RR_PIN"]) + 0.3)
after_pin = sorted({ROUTER.db_for_read(None) for _ in range(200)})
print(json.dumps({"test_mode": testing.active(), "test_units": context.test_units,
                  "reads": reads, "pinned": pinned, "after_pin": after_pin,
                  "decisions": replica_router.decisions(), "errors": ERRORS}))
"""


def test_locmem_email_is_not_a_test_run(healthy: LocalCluster) -> None:
    """Proves (point 2): a process with ``EMAIL_BACKEND`` locmem that built its mail
    connection (so ``mail.outbox`` exists) is not taken for a test run: its reads go
    to the replica, a write pins it to the primary, and the pin expires after
    ``PIN_SECONDS``."""
    pin = 0.5
    dbs = databases(healthy, healthy.dsn("standby")["PASSWORD"], BACKEND)
    env = {
        **os.environ,
        "RR_ROUTER": json.dumps({**ROUTER, "PIN_SECONDS": pin, "SHARE_HEALTH": False}),
        "RR_DBS": json.dumps(dbs),
        "RR_EMAIL": "django.core.mail.backends.locmem.EmailBackend",
        "RR_PIN": str(pin),
    }
    out = subprocess.run(
        [sys.executable, "-c", LOCMEM_PROC],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
        check=False,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["test_mode"] is False and report["test_units"] is False, report
    assert report["reads"] == ["default", "replica"], report
    assert report["pinned"] == ["default"], report
    assert report["after_pin"] == ["default", "replica"], report
    assert report["decisions"]["test_primary"] == 0, report
    assert report["errors"] == [], report
