"""Roles that change: where an alias's new connections go, from the roles the core
observes (not the ones configured).

The primary alias connects to the node that is primary now; while none is known it
waits up to ``PRIMARY_WAIT_TIMEOUT`` (the core re-probes every node meanwhile and
wakes it as soon as one is), then fails with :class:`PrimaryUnavailable`. Two
primaries on the newest timeline fail at once, naming both. Replica aliases never
wait. The backend's connect path (``get_connection_params``) is the one caller.
"""

from __future__ import annotations

from typing import Any

from django.db import OperationalError

from replica_router import _core, _runtime

__all__ = [
    "READ_ONLY_SQLSTATE",
    "PrimaryUnavailable",
    "is_read_only_rejection",
    "patroni_note",
    "primary_line",
    "roles",
    "target",
]

#: ``read_only_sql_transaction``: a write sent to a standby (a demoted primary).
READ_ONLY_SQLSTATE = "25006"


class PrimaryUnavailable(OperationalError):  # type: ignore[misc]
    """No node takes writes: none became primary within ``PRIMARY_WAIT_TIMEOUT``, or
    two distinct servers claim to be primary on the newest timeline."""


def target(
    alias: str, *, wait: bool = True, avoid: int | None = None, fallback: bool = False
) -> tuple[int, str, int]:
    """``(node, host, port)`` a new connection of ``alias`` goes to now. For the
    primary alias: the primary now (never ``avoid`` nor another name of its server),
    waiting for one up to ``PRIMARY_WAIT_TIMEOUT`` when ``wait``; with ``fallback``
    (a connect for a statement not known yet, maybe a read) no wait: the last
    primary known. Raises
    :class:`PrimaryUnavailable` (at once for two primaries)."""
    cluster = _runtime.cluster or _runtime.get_cluster()
    seconds = _runtime.get_settings().primary_wait_timeout if wait else 0.0
    try:
        return cluster.connect_target(alias, seconds, avoid, fallback)
    except _core.NoPrimary as exc:
        raise PrimaryUnavailable(str(exc)) from None


def roles() -> dict[str, Any]:
    """The observed roles: ``state`` (known / unknown / split), the primary now
    (``primary_node``: the alias its node was configured for, host, port), where
    each alias connects, ``role_changes``; ``patroni`` (with ``PATRONI_URLS``): which
    URL answered and when, the last error, Patroni's leader and members, and what its
    word does to the roles now (``word``)."""
    return dict((_runtime.cluster or _runtime.get_cluster()).roles())


def is_read_only_rejection(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement rejected by a read-only node (SQLSTATE 25006):
    it did not run, so running it again on the primary cannot write twice."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return bool(sqlstate == READ_ONLY_SQLSTATE)


def primary_line(roles: dict[str, Any]) -> str:
    """Which node is the primary now (observed), and how many times it changed."""
    changes = roles.get("role_changes", 0)
    state = roles.get("state")
    if state == "known":
        where = (
            f"{roles['primary_host']}:{roles['primary_port']} "
            f"(configured as {roles['primary_node']!r}), timeline {roles.get('timeline')}"
        )
    elif state == "split":
        where = "none: " + " and ".join(map(repr, roles.get("split", []))) + " both claim it"
    else:
        where = "none known"
    return f"primary now: {where}; role changes: {changes}{patroni_note(roles)}"


def patroni_note(roles: dict[str, Any]) -> str:
    """What Patroni says, for the ``primary now`` line (empty without ``PATRONI_URLS``)."""
    patroni = roles.get("patroni")
    if not patroni:
        return ""
    word, leader = patroni.get("word"), patroni.get("leader")
    if word == "no_answer":
        return f"; Patroni: no answer, PostgreSQL's roles alone ({patroni.get('error')})"
    if word == "leader_not_configured":
        return f"; Patroni's leader {leader!r} is no configured node: PostgreSQL's roles alone"
    if word == "holds_writes":
        return f"; Patroni's leader: {leader!r}, writes wait until PostgreSQL agrees"
    return f"; Patroni's leader: {leader!r}"
