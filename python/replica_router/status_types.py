"""The typed shape of what the core reports: a node's status (``status()``), the read
decisions (``decisions()``), the names of states, roles and reasons, and the table of
status keys (``status_fields()``).

Importable at run time (``from replica_router.status_types import NodeStatus``) for
type hints in a project's own code; the values themselves come from the core
(``replica_router.states``), and ``tests/fast/test_status_fields.py`` checks that the
keys and types here are the core's table.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "Decisions",
    "NodeStatus",
    "Reason",
    "Role",
    "State",
    "StatusField",
    "StatusMetric",
    "StatusPage",
]

#: A node's health state.
State = Literal["up", "down", "lagging", "unknown", "misconfigured"]
Role = Literal["primary", "replica"]
#: Why a read went where it went (the counters of ``decisions()``).
Reason = Literal[
    "weighted",
    "transaction",
    "pinned",
    "use_primary",
    "read_your_writes",
    "instance_hint",
    "lag_fallback",
    "down_fallback",
    "retried",
    "test_primary",
    "lag_tolerated",
]


class _NodeStatusBase(TypedDict):
    alias: str
    configured_role: Role
    weight: float
    host: str
    port: int
    #: Reads routed to the node in this process, in all and by reason.
    reads_routed: int
    reads_by_reason: dict[str, int]
    state: State
    #: This node is the primary now (observed, whatever it was configured as).
    primary_now: bool
    #: The alias whose new connections go to this node now (``None``: none).
    connected_as: str | None
    #: The node's role and state in Patroni's last answer (``None`` without ``PATRONI_URLS``).
    patroni_role: str | None
    patroni_state: str | None


class NodeStatus(_NodeStatusBase, total=False):
    """One node in ``status()``. The keys below are present once this process's
    prober has started (``state`` is ``"unknown"`` without them).

    The core's table (``status_fields()``) defines every key; ``tests/fast/test_status_fields.py``
    checks that these keys, their types and which are required are the table's."""

    #: A live state whose last good probe is older than the staleness window.
    stale: bool
    observed_role: Role | None
    role_mismatch: bool
    timeline: int | None
    lag_bytes: int | None
    lag_seconds: float | None
    #: Why a lagging node is out of weighted reads (replay paused, over a limit, ...).
    lag_reason: str | None
    replay_paused: bool | None
    wal_receiver_status: str | None
    current_lsn: str | None
    receive_lsn: str | None
    replay_lsn: str | None
    latency_ms: float | None
    consecutive_failures: int
    consecutive_successes: int
    probes: int
    failed_probes: int
    #: Failures of real connections or queries reported by the database backend.
    passive_faults: int
    #: Password redacted.
    last_error: str | None
    error_class: str | None
    last_state_change: float
    last_probe: float | None
    last_good_probe_age: float | None
    #: Unix time the server started (``pg_postmaster_start_time()``): a change is a restart.
    server_started: float | None
    #: The process that probes: this one, or (``shared``) the host's elected worker.
    prober_pid: int
    #: Health is shared between the host's worker processes (``SHARE_HEALTH``).
    shared: bool
    #: Seconds since the prober last published; ``None`` before its first publish.
    snapshot_age: float | None


class Decisions(TypedDict):
    """Reads routed in this process by reason, and writes."""

    weighted: int
    transaction: int
    pinned: int
    use_primary: int
    read_your_writes: int
    instance_hint: int
    lag_fallback: int
    down_fallback: int
    retried: int
    test_primary: int
    #: Every replica over a lag limit: read served by a least-lagged one (the herd policy).
    lag_tolerated: int
    writes: int


class StatusMetric(TypedDict, total=False):
    """How a status key is exported to Prometheus (``replica_router_<name>``)."""

    #: ``gauge`` (the value divided by ``divisor``), ``flag`` (1 when true), ``counter``,
    #: ``onehot`` (a series per name of ``values``, labelled ``label``), ``per_key``
    #: (a counter per key of a dict, labelled ``label``), ``info`` (``label``: the value).
    kind: Literal["gauge", "flag", "counter", "onehot", "per_key", "info"]
    name: str
    help: str
    divisor: float
    label: str
    values: list[str]


class StatusPage(TypedDict):
    """Where the status page shows a status key: a column, and its formatter."""

    column: str
    show: str


class StatusField(TypedDict):
    """One key of a node's status (``status_fields()``)."""

    name: str
    #: Its Python type, as ``NodeStatus`` spells it.
    type: str
    doc: str
    #: In every node's dict (else only once the prober started).
    required: bool
    metric: StatusMetric | None
    #: Its heading in ``replica_status``'s table (``None``: not a column).
    column: str | None
    page: StatusPage | None
    #: Staff see it in the readiness view's body.
    ready: bool
