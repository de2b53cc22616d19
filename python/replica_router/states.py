"""The names the core reports, defined once for the Python layer: node states and roles
(the values of ``status()[i]["state"]``, ``["configured_role"]`` and
``["observed_role"]``), the reasons of a read (the keys of ``decisions()`` and of
``status()[i]["reads_by_reason"]``), and the keys of a node's status with how each
consumer shows them (``STATUS_FIELDS``, the core's one table).

The views, the metrics, ``replica_status`` and the checks import them from here
instead of spelling them. ``STATES``, ``ROLES``, ``REASONS`` and ``STATUS_FIELDS`` are
read from the core, not restated; the stubs type them as ``_core.State``,
``_core.Role``, ``_core.Reason`` and ``_core.NodeStatus``, and
``tests/fast/test_states.py`` checks that the stub and the names below agree with
the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from replica_router import _core

if TYPE_CHECKING:
    from replica_router._core import Role, State, StatusField

__all__ = [
    "ANSWERING",
    "DOWN",
    "LAGGING",
    "MISCONFIGURED",
    "PAGE_COLUMNS",
    "PRIMARY",
    "REASONS",
    "REPLICA",
    "ROLES",
    "STATES",
    "STATUS_FIELDS",
    "UNKNOWN",
    "UP",
    "WRITES",
]

#: Answers probes, in its role, within the lag limits: takes weighted reads.
UP: Final = "up"
#: FALL failed probes, a passive fault, or no good probe within the staleness window.
DOWN: Final = "down"
#: Answers, but is over a lag limit: out of weighted reads, kept for fallback.
LAGGING: Final = "lagging"
#: Never answered yet: not healthy.
UNKNOWN: Final = "unknown"
#: Fails for a reason retrying will not fix (authentication, missing database, TLS).
MISCONFIGURED: Final = "misconfigured"

#: Every node state, in the order the metrics export them (the core's list).
STATES: Final[tuple[State, ...]] = tuple(_core.STATES)
#: The states of a node that answers probes: its lag in ``status()`` is current.
ANSWERING: Final = (UP, LAGGING)

#: Takes writes (``pg_is_in_recovery()`` is false).
PRIMARY: Final = "primary"
#: A hot standby (in recovery).
REPLICA: Final = "replica"
#: Every role, configured or observed (the core's list).
ROLES: Final[tuple[Role, ...]] = tuple(_core.ROLES)

#: Why a read went where it went, in the core's counter order: the core's own list
#: (read from it, not restated).
REASONS: Final[tuple[str, ...]] = tuple(_core.REASONS)
#: The key of ``decisions()`` that counts writes (every other key is a reason).
WRITES: Final = "writes"

#: Every key of a node's status, in ``replica_status``'s column order: its type, doc,
#: metric, ``replica_status`` column, status page part and readiness flag.
STATUS_FIELDS: Final[tuple[StatusField, ...]] = tuple(_core.status_fields())
#: The status page's column headings, in order.
PAGE_COLUMNS: Final[tuple[str, ...]] = tuple(_core.STATUS_PAGE_COLUMNS)
