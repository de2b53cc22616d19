"""The private directory of shared health (issue 16, point 6): the files of a
configuration no live process uses are removed when a process starts sharing; a live
process's files never are, and it keeps leading through them. Its names are keyed
digests: a password never appears in them, and a secret 0600 file is their key.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import ROUTER_SETTINGS, LocalCluster

PROC_TIMEOUT = 60

#: Shares health with RR_ROUTER / RR_DBS until every node is up; with RR_HOLD, says
#: "ready" and holds on until stdin closes; prints its status.
SHARER = r"""
import json, os, sys, time
from replica_router import _core

s = _core.RouterSettings(json.loads(os.environ["RR_ROUTER"]), json.loads(os.environ["RR_DBS"]))
c = _core.Cluster(s)
c.start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and any(n["state"] != "up" for n in c.status()):
    time.sleep(0.02)
if os.environ.get("RR_HOLD"):
    print("ready", flush=True)
    sys.stdin.read()
print(json.dumps({"pid": os.getpid(), "status": c.status()}), flush=True)
c.close()
"""


def env_for(cluster: LocalCluster, share: Path, interval: float, hold: bool = False) -> dict[str, str]:
    dbs = {"default": cluster.dsn("primary"), "replica": cluster.dsn("standby")}
    return {
        **os.environ,
        "RR_ROUTER": json.dumps({**ROUTER_SETTINGS, "PROBE_INTERVAL": interval}),
        "RR_DBS": json.dumps(dbs),
        "REPLICA_ROUTER_SHARE_DIR": str(share),
        "RR_HOLD": "1" if hold else "",
    }


def run_sharer(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", SHARER],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
        check=False,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def stems(share: Path) -> set[str]:
    return {p.stem for p in share.iterdir() if p.suffix in (".lock", ".shm")}


def test_unused_configurations_are_swept_and_live_ones_kept(
    healthy: LocalCluster, tmp_path: Path
) -> None:
    """Proves: with a live process sharing configuration A and a finished one's files
    of configuration B in the directory, a process starting with configuration C
    removes B's files and leaves A's; the live process still leads A (a new process
    with A follows it); the secret is 0600; no name holds the password."""
    share = tmp_path / "share"
    share.mkdir(mode=0o700)
    live = subprocess.Popen(
        [sys.executable, "-c", SHARER],
        env=env_for(healthy, share, 0.1, hold=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "ready"
        (a,) = stems(share)
        run_sharer(env_for(healthy, share, 0.11))  # configuration B, then gone
        (b,) = stems(share) - {a}
        run_sharer(env_for(healthy, share, 0.12))  # configuration C sweeps B
        left = stems(share)
        assert a in left and b not in left, (a, b, left)
        assert len(left) == 2, left  # A (live) and C (its process just ended)
        follower = run_sharer(env_for(healthy, share, 0.1))
        out, err = live.communicate(timeout=PROC_TIMEOUT)  # closes its stdin
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate(timeout=PROC_TIMEOUT)
    assert live.returncode == 0, err[-3000:]
    leader = json.loads(out.strip().splitlines()[-1])
    assert all(n["shared"] and n["prober_pid"] == leader["pid"] for n in leader["status"])
    assert all(n["prober_pid"] == leader["pid"] for n in follower["status"]), follower
    secret = share / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = healthy.dsn("standby")["PASSWORD"]
    assert not [p.name for p in share.iterdir() if password in p.name]
