"""``manage.py replica_status`` without a server: exit codes and output.

The exit-code rule (``exit_code``) is checked on node lists; the command itself
runs against unreachable nodes (``offline``), where the primary is not up (exit 2).
The healthy and degraded cases against real servers are in
``tests/server/test_routing.py``.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from replica_router.management.commands.replica_status import exit_code

pytestmark = pytest.mark.usefixtures("offline")


def node(state: str, mismatch: bool = False) -> dict[str, Any]:
    return {"state": state, "role_mismatch": mismatch}


def seen(state: str, role: str, primary_now: bool) -> dict[str, Any]:
    """A node as the prober reports it once roles are observed."""
    return {"state": state, "observed_role": role, "primary_now": primary_now}


@pytest.mark.parametrize(
    ("nodes", "code"),
    [
        ([node("up"), node("up")], 0),
        ([node("up")], 0),
        ([node("up"), node("lagging")], 1),
        ([node("up"), node("down")], 1),
        ([node("up"), node("up", mismatch=True)], 1),
        ([node("up"), node("up"), node("misconfigured")], 1),
        ([node("down"), node("up")], 2),
        ([node("unknown"), node("up")], 2),
        ([node("up", mismatch=True), node("up")], 2),
        ([seen("up", "replica", False), seen("up", "primary", True)], 0),
        ([seen("down", "primary", False), seen("up", "primary", True)], 1),
        ([seen("up", "primary", False), seen("up", "primary", True)], 1),
        ([seen("up", "primary", True), seen("down", "replica", False)], 1),
    ],
    ids=[
        "healthy",
        "no-replica",
        "replica-lagging",
        "replica-down",
        "replica-promoted",
        "one-of-two-misconfigured",
        "primary-down",
        "primary-unknown",
        "primary-in-recovery",
        "after-switchover",
        "after-failover-old-primary-down",
        "old-primary-still-up",
        "observed-primary-replica-down",
    ],
)
def test_exit_code(nodes: list[dict[str, Any]], code: int) -> None:
    """Proves: 0 when every node is up in its role, 1 when only a replica is not,
    2 when the primary is not (whatever the replicas); once roles are observed, the
    primary is the node that is primary now, wherever it was configured."""
    assert exit_code(nodes) == code


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("replica_status", *args, stdout=out)
    except SystemExit as exc:
        assert isinstance(exc.code, int)
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def test_unreachable_cluster_exits_2() -> None:
    """Proves: with nothing listening, the table lists both aliases and says the
    primary is not up, the JSON form carries the nodes and the same exit code, and
    the process exits 2, within the documented wait."""
    code, text = run("--wait", "1")
    assert code == 2, text
    assert [line.split()[0] for line in text.splitlines()[1:3]] == ["default", "replica"]
    assert "primary is not up" in text
    code, text = run("--json", "--wait", "1")
    assert code == 2
    data = json.loads(text)
    assert [n["alias"] for n in data["nodes"]] == ["default", "replica"]
    assert data["exit_code"] == 2
    assert "writes" in data["decisions"]
