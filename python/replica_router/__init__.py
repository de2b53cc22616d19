"""django-replica-router: a read/write database router for PostgreSQL hot standbys.

Writes go to the primary; reads go, by weighted random choice, to healthy standbys
(and the primary, by its weight), chosen from health that a Rust core probes in the
background. Reads that must see the caller's own writes go to the primary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replica_router._core import __version__
from replica_router.context import unit_of_work, use_primary

if TYPE_CHECKING:
    from replica_router._core import Decisions, NodeStatus

__all__ = [
    "ReadWriteRouter",
    "__version__",
    "decisions",
    "status",
    "unit_of_work",
    "use_primary",
]


def status() -> list[NodeStatus]:
    """One dict per node (primary first): alias, configured and observed role, state
    (``up``/``down``/``lagging``/``unknown``/``misconfigured``), lag, probe latency,
    streaks, last error (password redacted), weight, reads routed by reason...

    Starts probing in this process if it has not started yet.
    """
    from replica_router import _runtime

    return _runtime.get_cluster().status()


def decisions() -> Decisions:
    """Routing decisions in this process since start: reads by reason, and writes."""
    from replica_router import _runtime

    return _runtime.get_cluster().decisions()


def __getattr__(name: str) -> Any:
    # Importing the router pulls in django.db; keep `import replica_router` light.
    if name == "ReadWriteRouter":
        from replica_router.router import ReadWriteRouter

        return ReadWriteRouter
    raise AttributeError(f"module 'replica_router' has no attribute {name!r}")
