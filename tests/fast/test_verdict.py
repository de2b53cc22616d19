"""The cluster verdict over a table of node lists: the word the readiness view
answers and the code ``replica_status`` exits with, from one function.

The readiness view and the command against real servers are in
``tests/server/test_views.py`` and ``tests/server/test_routing.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from replica_router import views
from replica_router.management.commands import replica_status
from replica_router.states import DOWN, LAGGING, MISCONFIGURED, PRIMARY, REPLICA, UNKNOWN, UP
from replica_router.verdict import (
    DEGRADED,
    EXIT_CODES,
    OK,
    UNAVAILABLE,
    VERDICTS,
    Verdict,
    verdict,
)


def configured(state: str, mismatch: bool = False) -> dict[str, Any]:
    """A node before roles are observed: the first one is the configured primary."""
    return {"state": state, "role_mismatch": mismatch}


def seen(state: str, role: str | None, primary_now: bool = False) -> dict[str, Any]:
    """A node once roles are observed."""
    return {"state": state, "observed_role": role, "primary_now": primary_now}


TABLE: list[tuple[str, list[dict[str, Any]], Verdict]] = [
    ("no node", [], UNAVAILABLE),
    ("primary alone, up", [configured(UP)], OK),
    ("all up", [configured(UP), configured(UP)], OK),
    ("replica lagging", [configured(UP), configured(LAGGING)], DEGRADED),
    ("replica down", [configured(UP), configured(DOWN)], DEGRADED),
    ("replica unknown", [configured(UP), configured(UNKNOWN)], DEGRADED),
    ("replica promoted", [configured(UP), configured(UP, mismatch=True)], DEGRADED),
    ("third misconfigured", [configured(UP), configured(UP), configured(MISCONFIGURED)], DEGRADED),
    ("primary down", [configured(DOWN), configured(UP)], UNAVAILABLE),
    ("primary unknown", [configured(UNKNOWN), configured(UP)], UNAVAILABLE),
    ("primary lagging", [configured(LAGGING), configured(UP)], UNAVAILABLE),
    ("primary demoted", [configured(UP, mismatch=True), configured(UP)], UNAVAILABLE),
    ("primary misconfigured", [configured(MISCONFIGURED)], UNAVAILABLE),
    (
        "after a switchover, all up",
        [seen(UP, REPLICA), seen(UP, PRIMARY, primary_now=True)],
        OK,
    ),
    (
        "after a switchover, old primary down",
        [seen(DOWN, None), seen(UP, PRIMARY, primary_now=True)],
        DEGRADED,
    ),
    (
        "after a switchover, new primary down",
        [seen(UP, REPLICA), seen(DOWN, PRIMARY, primary_now=True)],
        UNAVAILABLE,
    ),
    (
        "two nodes answer as primary",
        [seen(UP, PRIMARY, primary_now=True), seen(UP, PRIMARY)],
        DEGRADED,
    ),
    (
        "primary now, replica lagging",
        [seen(UP, PRIMARY, primary_now=True), seen(LAGGING, REPLICA)],
        DEGRADED,
    ),
]


@pytest.mark.parametrize(("nodes", "word"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE])
def test_verdict(nodes: list[dict[str, Any]], word: Verdict) -> None:
    """Proves: each node list gets its verdict, the readiness view's word is it, and
    ``replica_status`` exits with its code."""
    assert verdict(nodes) == word
    assert views.overall(nodes) == word
    assert replica_status.exit_code(nodes) == EXIT_CODES[word]


def test_every_verdict_has_its_own_exit_code() -> None:
    """Proves: 0 healthy, 1 degraded, 2 unavailable, one code each, and the table
    above reaches every verdict."""
    assert EXIT_CODES == {OK: 0, DEGRADED: 1, UNAVAILABLE: 2}
    assert set(EXIT_CODES) == set(VERDICTS)
    assert {row[2] for row in TABLE} == set(VERDICTS)
    assert set(replica_status.SUMMARY) == set(VERDICTS)
