"""Rust core of django-replica-router (built by maturin from ``src/``)."""

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypedDict, final

from typing_extensions import Self

__all__ = [
    "REASONS",
    "ROLES",
    "SETTINGS_KEYS",
    "STATES",
    "STATUS_PAGE_COLUMNS",
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
    "status_fields",
    "uninstall_router",
]

from replica_router.status_types import Decisions as Decisions
from replica_router.status_types import NodeStatus as NodeStatus
from replica_router.status_types import Reason as Reason
from replica_router.status_types import Role as Role
from replica_router.status_types import State as State
from replica_router.status_types import StatusField as StatusField
from replica_router.status_types import StatusMetric as StatusMetric
from replica_router.status_types import StatusPage as StatusPage

__version__: str
#: Names of the read-decision reasons, by counter index.
REASONS: list[str]
#: Every node state, in the order the metrics export them.
STATES: list[State]
#: Every role.
ROLES: list[Role]
#: The status page's column headings, in order.
STATUS_PAGE_COLUMNS: list[str]

def status_fields() -> list[StatusField]:
    """Every key of a node's status, in order: its type, doc, and how the metrics,
    ``replica_status``, the status page and the readiness view show it."""

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

class PatroniMember(TypedDict):
    """One member of Patroni's ``/cluster`` answer."""

    name: str
    host: str
    port: int | None
    role: str
    state: str
    timeline: int | None
    #: Replication lag in bytes (``None``: unknown, or the leader).
    lag: int | None

class PatroniView(TypedDict):
    """What this process last learned from Patroni (``Roles["patroni"]``)."""

    urls: list[str]
    #: The URL that answered last.
    url: str | None
    #: Unix time of the last answer.
    answered_at: float | None
    #: Why the last poll failed at every URL (``None`` after an answer).
    error: str | None
    #: What Patroni's view does to the roles now.
    word: Literal["agrees", "holds_writes", "no_answer", "leader_not_configured", "off"]
    #: The member Patroni calls leader.
    leader: str | None
    polls: int
    failed_polls: int
    members: list[PatroniMember]

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
    #: Patroni's view (``PATRONI_URLS``); ``None`` without.
    patroni: PatroniView | None

    #: Aliases that are proxy or pooler endpoints (their connections never move).
    proxies: list[str]
    #: The server the primary's probe reached (``addr:port`` as the server saw it).
    primary_server: str | None

class SettingInfo(TypedDict):
    """One ``REPLICA_ROUTER`` key as the settings table declares it
    (``RouterSettings.reference()``, rendered into docs/settings.md by ``make docs``)."""

    key: str
    #: The ``RouterSettings`` attribute and its Python type (``None``: structural key).
    attribute: str | None
    type: str | None
    #: The default, as Python source.
    default: str
    accepts: str
    check_id: str
    doc: str
    #: A Markdown link to where the docs explain it.
    see: str
    #: Whether processes with different values never share health.
    in_identity: bool
    #: How it is in the shared-health identity, or why it is not.
    identity_note: str

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
    @staticmethod
    def reference() -> list[SettingInfo]:
        """Every key of ``REPLICA_ROUTER``, in the settings table's order."""
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
    def status(self, wait: float = 0.0) -> list[NodeStatus]:
        """One dict per node, primary first. With ``wait``, first waits up to that many
        seconds (GIL released) until no node is ``unknown`` (the one "wait until
        probed", for a reader right after a cold start)."""
    def wait_events(self, timeout: float) -> list[tuple[int, str, str | None, State | None, bool]]:
        """Wait (GIL released) for state-change events: [(logging level, message,
        alias or None, new state or None, interrupt in-flight connections)]. Level 0:
        not to be logged (the host's shared prober logged it)."""
    def report_failure(
        self,
        alias: str,
        sqlstate: str | None,
        message: str,
        node: int | None = None,
        *,
        connecting: bool = False,
    ) -> tuple[str | None, bool]:
        """A real connection or query on ``alias`` failed (its SQLSTATE, if any, and
        message): classified by the rules probes use and, for a node fault, reported in
        the same call (the node, and every node probed with it: the same server under
        another alias, leaves reads now and is re-probed at once; a configuration error
        leaves this process's reads only). Returns ``(fault kind or None, whether one
        of them was taking reads)``; ``None``: not a node fault,
        nothing reported. No I/O, no waiting on a lock. ``node``: the node the
        connection went to (default: where the alias connects now); ``connecting``: a
        connect's failure (its timeout is a connect failure, interrupting nothing)."""
    def connect_target(
        self, alias: str, wait: float = 0.0, avoid: int | None = None, fallback: bool = False
    ) -> tuple[int, str, int]:
        """``(node, host, port)`` for a new connection of ``alias``: for the primary
        alias the primary now (never ``avoid``, nor another node of its server),
        waiting up to ``wait`` seconds (GIL released) while none is known; then,
        with ``fallback``, the last primary known (not ``avoid``); raises
        ``NoPrimary`` (at once for two primaries)."""
    def reprobe(self) -> None:
        """Re-probe every node now."""
    def wait_probed(self, timeout: float | None = None) -> bool:
        """Start the prober if needed and wait (GIL released) until no node is
        ``unknown`` in ``status()`` (each answered, or failed ``FALL`` probes), at most
        ``timeout`` seconds (default: ``PROBE_INTERVAL`` + 2 x ``PROBE_TIMEOUT``).
        Returns whether every node's state is known."""
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
