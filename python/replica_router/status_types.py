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


# --- NodeStatus: generated from src/report/fields.rs by `make docs` ---


class _NodeStatusBase(TypedDict):
    """The keys of every node's dict in ``status()``."""

    #: The node's name: its Django alias, or ``alias@host:port`` for a host of a multi-host
    #: alias.
    alias: str
    #: The role the settings give the node.
    configured_role: Role
    #: The node's health state (``unknown`` until the prober started).
    state: State
    #: Configured read weight.
    weight: float
    #: Reads routed to the node in this process.
    reads_routed: int
    #: The node's host.
    host: str
    #: The node's port.
    port: int
    #: Reads routed to the node in this process, by reason.
    reads_by_reason: dict[str, int]
    #: This node is the primary now (observed, whatever it was configured as).
    primary_now: bool
    #: The alias whose new connections go to this node now (``None``: none).
    connected_as: str | None
    #: The node's role in Patroni's last answer (``leader``, ``replica``, ...; ``None``
    #: without ``PATRONI_URLS``).
    patroni_role: str | None
    #: The node's state in Patroni's last answer (``running``, ``streaming``, ...; ``None``
    #: without ``PATRONI_URLS``).
    patroni_state: str | None


class NodeStatus(_NodeStatusBase, total=False):
    """One node in ``status()``. The keys below are present once this process's
    prober has started (``state`` is ``"unknown"`` without them)."""

    #: The role the last probe saw (replica: in recovery); ``None`` while no probe answered.
    observed_role: Role | None
    #: A live state whose last good probe is older than the staleness window.
    stale: bool
    #: Replication lag in bytes of WAL.
    lag_bytes: int | None
    #: Replication lag in seconds.
    lag_seconds: float | None
    #: Latency of the last probe, in milliseconds.
    latency_ms: float | None
    #: Failed probes in a row.
    consecutive_failures: int
    #: The kind of the last error (``connection_refused``, ``timeout``, ...).
    error_class: str | None
    #: The last error's text (password redacted).
    last_error: str | None
    #: Why a lagging node is out of weighted reads (replay paused, over a limit, ...).
    lag_reason: str | None
    #: Failures of real connections or queries reported by the database backend.
    passive_faults: int
    #: The observed role differs from the configured one (a promoted replica).
    role_mismatch: bool
    #: The node's timeline.
    timeline: int | None
    #: WAL replay is paused (``pg_wal_replay_pause()``).
    replay_paused: bool | None
    #: ``pg_stat_wal_receiver.status`` (``hidden``: the probe user may not see it).
    wal_receiver_status: str | None
    #: ``pg_current_wal_lsn()`` on a primary.
    current_lsn: str | None
    #: The last WAL position a standby received.
    receive_lsn: str | None
    #: The last WAL position a standby replayed.
    replay_lsn: str | None
    #: Good probes in a row.
    consecutive_successes: int
    #: Probes of the node.
    probes: int
    #: Failed probes of the node.
    failed_probes: int
    #: Unix time of the node's last state change.
    last_state_change: float
    #: Unix time of the node's last probe.
    last_probe: float | None
    #: Seconds since the node last answered a probe.
    last_good_probe_age: float | None
    #: Unix time the node's server started (``pg_postmaster_start_time()``): a change is a
    #: restart.
    server_started: float | None
    #: The process that probes: this one, or (``shared``) the host's elected worker.
    prober_pid: int
    #: Health is shared between the host's worker processes (``SHARE_HEALTH``).
    shared: bool
    #: Seconds since the prober last published; ``None`` before its first publish.
    snapshot_age: float | None


# --- end of NodeStatus ---


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
