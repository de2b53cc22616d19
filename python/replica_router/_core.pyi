"""Rust core of django-replica-router (built by maturin from ``src/``)."""

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypedDict, final

from typing_extensions import Self

__all__ = [
    "REASONS",
    "SETTINGS_KEYS",
    "Cluster",
    "ConfigError",
    "NoPrimary",
    "RouteState",
    "RouterSettings",
    "__version__",
    "classify_failure",
    "db_for_read",
    "db_for_write",
    "install_router",
    "uninstall_router",
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

class NodeStatus(_NodeStatusBase, total=False):
    """One node in ``status()``. The keys below are present once this process's
    prober has started (``state`` is ``"unknown"`` without them)."""

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

__version__: str
#: Names of the read-decision reasons, by counter index.
REASONS: list[str]
#: The keys of ``REPLICA_ROUTER``.
SETTINGS_KEYS: list[str]

class NodeSettings(TypedDict):
    """One node's connection settings, as the prober uses them (no password)."""

    alias: str
    database: str
    role: Role
    host: str
    port: int
    name: str
    user: str
    sslmode: str | None
    sslrootcert: str | None
    weight: float
    password_set: bool

def classify_failure(sqlstate: str | None, message: str) -> str | None:
    """The fault kind when a real connection or query failed because the node failed
    (the rules probes use); ``None`` for application and configuration errors."""

class NoPrimary(Exception):
    """No node can take writes now: none is primary (within the wait), or two are."""

class Roles(TypedDict):
    """The observed roles (``Cluster.roles()``)."""

    state: Literal["known", "unknown", "split"]
    #: The alias the primary's node was configured for (``None``: no primary known).
    primary_node: str | None
    primary_host: str | None
    primary_port: int | None
    #: Nodes (by configured alias) that claim primary on the newest timeline.
    split: list[str]
    #: Nodes that claim primary on an older timeline (never written to).
    stale_primaries: list[str]
    timeline: int | None
    role_changes: int
    #: Alias -> the configured alias of the node its new connections go to.
    connects_to: dict[str, str]
    #: Aliases that are proxy or pooler endpoints (their connections never move).
    proxies: list[str]
    #: The server the primary's probe reached (``addr:port`` as the server saw it).
    primary_server: str | None

class ConfigError(ValueError):
    """A setting that cannot work; the message names the key and the value."""

    check_id: str
    hint: str

@final
class RouterSettings:
    """The router's validated settings (frozen): every rule lives in the core."""

    def __new__(
        cls,
        router: object,
        databases: dict[str, Any],
        probe_databases: dict[str, Any] | None = None,
    ) -> Self: ...
    @property
    def primary(self) -> str: ...
    @property
    def replicas(self) -> dict[str, float]:
        """Replica alias -> read weight (a new dict each time)."""
    @property
    def aliases(self) -> tuple[str, ...]:
        """Every alias of the cluster, primary first (each once)."""
    @property
    def node_aliases(self) -> tuple[str, ...]:
        """Per node, the alias it serves (once per host of a multi-host alias)."""
    @property
    def multi_host_aliases(self) -> tuple[str, ...]:
        """The aliases that list several hosts (libpq's multi-host form)."""
    @property
    def nodes(self) -> list[NodeSettings]:
        """Each node's connection settings, primary first (never the password)."""
    @property
    def primary_read_weight(self) -> float: ...
    @property
    def probe_interval(self) -> float: ...
    @property
    def probe_timeout(self) -> float: ...
    @property
    def fall(self) -> int: ...
    @property
    def rise(self) -> int: ...
    @property
    def max_lag_seconds(self) -> float | None: ...
    @property
    def max_lag_bytes(self) -> int | None: ...
    @property
    def lag_ceiling_seconds(self) -> float | None:
        """While every replica is over a lag limit, the least-lagged ones serve reads
        that need no fresh data up to this lag (``None``: those reads go to the primary)."""
    @property
    def pin_seconds(self) -> float: ...
    @property
    def cookie_name(self) -> str: ...
    @property
    def cookie_max_age(self) -> int: ...
    @property
    def test_mirror(self) -> bool: ...
    @property
    def test_replica_reads(self) -> bool: ...
    @property
    def share_health(self) -> bool:
        """``SHARE_HEALTH``: one prober per host, shared by its worker processes."""
    @property
    def primary_wait_timeout(self) -> float:
        """``PRIMARY_WAIT_TIMEOUT``: seconds a new write connection waits for a primary."""
    @property
    def patroni_urls(self) -> list[str]:
        """``PATRONI_URLS``: Patroni REST base URLs (empty: not used)."""
    @property
    def replicas_implicit(self) -> bool:
        """``REPLICAS`` was not set: the replica was taken by the default rule."""

@final
class RouteState:
    """One context's routing state (frozen)."""

    primary_depth: int
    unit: bool
    pinned: bool
    pin_until: float
    min_lsn: int | None
    def __new__(
        cls,
        *,
        primary_depth: int = 0,
        unit: bool = False,
        pinned: bool = False,
        pin_until: float = 0.0,
        min_lsn: int | None = None,
    ) -> Self: ...
    def replace(self, **changes: Any) -> RouteState:
        """A copy with the given fields changed."""
    def is_pinned(self) -> bool:
        """Whether a write pins reads to the primary now."""

@final
class Cluster:
    """A PostgreSQL cluster: node health probed in the background, and read routing.

    Probing starts on first use (or ``start()``) and again in a child process after
    ``fork()``.
    """

    def __new__(
        cls,
        settings: RouterSettings,
        *,
        state_getter: Callable[[], RouteState | None] | None = None,
        thread_connections: Callable[[], Iterable[Any]] | None = None,
    ) -> Self: ...
    def read(self) -> str:
        """The whole read decision: use_primary, pin, open transaction, read-your-writes
        token, else a weighted pick. No I/O, no lock."""
    def read_hinted(self, alias: str) -> str:
        """``read()`` for an object loaded from ``alias`` (an ``instance`` hint)."""
    def read_test_primary(self) -> str:
        """The primary's alias, counting a read as ``test_primary`` (under a test
        runner without ``TEST_REPLICA_READS``)."""
    def start(self) -> None:
        """Start the prober in this process if it is not running (idempotent)."""
    def write(self) -> str:
        """The primary's alias, counting a write."""
    @property
    def primary(self) -> str: ...
    @property
    def aliases(self) -> list[str]: ...
    @property
    def running(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def decisions(self) -> Decisions:
        """Reads routed by reason, plus ``writes``."""
    def status(self) -> list[NodeStatus]:
        """One dict per node, primary first."""
    def wait_events(self, timeout: float) -> list[tuple[int, str, str | None, State | None, bool]]:
        """Wait (GIL released) for state-change events: [(logging level, message,
        alias or None, new state or None, interrupt in-flight connections)]. Level 0:
        not to be logged (the host's shared prober logged it)."""
    def report_fault(self, alias: str, kind: str, message: str, node: int | None = None) -> bool:
        """A real connection or query on ``alias`` failed for a node fault ``kind``:
        the node leaves reads now and is re-probed at once. Returns whether it was
        taking reads. No I/O, no waiting on a lock. ``node``: the node the connection
        went to (default: where the alias connects now)."""
    def connect_target(
        self, alias: str, wait: float = 0.0, avoid: int | None = None, fallback: bool = False
    ) -> tuple[int, str, int]:
        """``(node, host, port)`` for a new connection of ``alias``: for the primary
        alias the primary now (never ``avoid``), waiting up to ``wait`` seconds (GIL
        released) while none is known; then, with ``fallback``, the last primary known
        (not ``avoid``); raises ``NoPrimary`` (at once for two primaries)."""
    def reprobe(self) -> None:
        """Re-probe every node now."""
    @property
    def role_epoch(self) -> int:
        """Changes whenever the observed roles change."""
    def roles(self) -> Roles:
        """Who is primary now, where each alias connects, changes of primary."""
    def retry(self, tried: list[str]) -> str | None:
        """Where to run a read again after node faults on ``tried`` (counted as
        ``retried``); ``None`` when no node is left."""
    def close(self) -> None:
        """Stop probing in this process; bounded by one probe."""

def install_router(
    cluster: Cluster,
    note_write: Callable[[], None],
    readers: tuple[Callable[[], str], Callable[[str], str | None]] | None = None,
) -> None:
    """Route ``db_for_read``/``db_for_write`` with ``cluster``: a write calls
    ``note_write()``; ``readers`` (a test runner's), when given, decide reads."""

def uninstall_router() -> None:
    """Forget the installed cluster: the next routing call builds one from settings."""

def db_for_read(model: Any, *, instance: Any = None, **hints: Any) -> str | None:
    """``ReadWriteRouter.db_for_read``: the read decision of ``Cluster.read``; for an
    ``instance`` loaded from a node, that node while it may take reads; ``None`` for
    an object of another database."""

def db_for_write(model: Any, *, instance: Any = None, **hints: Any) -> str | None:
    """``ReadWriteRouter.db_for_write``: the primary, pinning the caller's reads
    there; ``None`` for an object of another database."""
