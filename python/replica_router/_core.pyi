"""Rust core of django-replica-router (built by maturin from ``src/``)."""

from collections.abc import Callable, Iterable
from typing import Any

__version__: str
#: Names of the read-decision reasons, by counter index.
REASONS: list[str]

def classify_failure(sqlstate: str | None, message: str) -> str | None:
    """The fault kind when a real connection or query failed because the node failed
    (the rules probes use); ``None`` for application and configuration errors."""

class ConfigError(ValueError):
    """A cluster setting that cannot work; the message names the key and the value."""

class RouteState:
    """One context's routing state (frozen)."""

    primary_depth: int
    unit: bool
    pinned: bool
    pin_until: float
    min_lsn: int | None
    def __init__(
        self,
        *,
        primary_depth: int = 0,
        unit: bool = False,
        pinned: bool = False,
        pin_until: float = 0.0,
        min_lsn: int | None = None,
    ) -> None: ...
    def replace(self, **changes: Any) -> RouteState:
        """A copy with the given fields changed."""
    def is_pinned(self) -> bool:
        """Whether a write pins reads to the primary now."""

class Cluster:
    """A PostgreSQL cluster: node health probed in the background, and read routing.

    ``nodes`` are dicts with keys alias, role ("primary" first, then "replica"),
    host, port, name, user, password, sslmode, weight. Probing starts on first use
    (or ``start()``) and again in a child process after ``fork()``.
    """

    def __init__(
        self,
        nodes: list[dict[str, Any]],
        *,
        probe_interval: float,
        probe_timeout: float,
        fall: int,
        rise: int,
        max_lag_seconds: float | None = None,
        max_lag_bytes: int | None = None,
        state_getter: Callable[[], RouteState | None] | None = None,
        thread_connections: Callable[[], Iterable[Any]] | None = None,
    ) -> None: ...
    def read(self) -> str:
        """The whole read decision: use_primary, pin, open transaction, read-your-writes
        token, else a weighted pick. No I/O, no lock."""
    def read_hinted(self, alias: str) -> str:
        """``read()`` for an object loaded from ``alias`` (an ``instance`` hint)."""
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
    def decisions(self) -> dict[str, int]:
        """Reads routed by reason, plus ``writes``."""
    def status(self) -> list[dict[str, Any]]:
        """One dict per node, primary first."""
    def wait_events(
        self, timeout: float
    ) -> list[tuple[int, str, str | None, str | None, bool]]:
        """Wait (GIL released) for state-change events: [(logging level, message,
        alias or None, new state or None, interrupt in-flight connections)]."""
    def report_fault(self, alias: str, kind: str, message: str) -> bool:
        """A real connection or query on ``alias`` failed for a node fault ``kind``:
        the node leaves reads now and is re-probed at once. Returns whether it was
        taking reads. No I/O, no waiting on a lock."""
    def retry(self, tried: list[str]) -> str | None:
        """Where to run a read again after node faults on ``tried`` (counted as
        ``retried``); ``None`` when no node is left."""
    def close(self) -> None:
        """Stop probing in this process; bounded by one probe."""
