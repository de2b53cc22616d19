"""The cluster verdict: one word for the whole cluster as this process sees it, from
its ``status()``. The readiness view answers with it and ``replica_status`` exits
with its code, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from replica_router.states import PRIMARY, UP

__all__ = ["DEGRADED", "EXIT_CODES", "OK", "UNAVAILABLE", "VERDICTS", "Verdict", "verdict"]

Verdict = Literal["ok", "degraded", "unavailable"]

#: Every node is up in its role.
OK: Final = "ok"
#: The primary is up, another node is not serving reads (reads fall back to the primary).
DEGRADED: Final = "degraded"
#: The primary is not up: writes fail, and reads have no sure fallback.
UNAVAILABLE: Final = "unavailable"
VERDICTS: Final = (OK, DEGRADED, UNAVAILABLE)

#: ``manage.py replica_status``'s exit code for each verdict.
EXIT_CODES: Final[Mapping[Verdict, int]] = {OK: 0, DEGRADED: 1, UNAVAILABLE: 2}


def verdict(nodes: Sequence[Mapping[str, Any]]) -> Verdict:
    """``unavailable`` when the primary is not up in its role (or there is no node);
    ``degraded`` when the primary is up but another node is not up, or is a primary
    too; ``ok`` when every node is up in its role.

    Once roles are observed, the primary is the node that is primary now (after a
    switchover, another node than the configured one). Before that, it is the
    configured primary (``nodes[0]``), and a node answering in the other role than
    its configured one (``role_mismatch``) is not in its role.
    """
    if not nodes:
        return UNAVAILABLE
    current = [n for n in nodes if n.get("primary_now")]
    if current:
        primary = current[0]
        others = [n for n in nodes if not n.get("primary_now")]
        if primary.get("state") != UP:
            return UNAVAILABLE
        if any(n.get("state") != UP or n.get("observed_role") == PRIMARY for n in others):
            return DEGRADED
        return OK
    primary, replicas = nodes[0], nodes[1:]
    if primary.get("state") != UP or primary.get("role_mismatch"):
        return UNAVAILABLE
    if any(n.get("state") != UP or n.get("role_mismatch") for n in replicas):
        return DEGRADED
    return OK
