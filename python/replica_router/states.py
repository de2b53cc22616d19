"""The names the core reports, defined once for the Python layer: node states and roles
(the values of ``status()[i]["state"]``, ``["configured_role"]`` and
``["observed_role"]``), and the reasons of a read (the keys of ``decisions()`` and of
``status()[i]["reads_by_reason"]``).

The views, the metrics, ``replica_status`` and the checks import them from here
instead of spelling them. The stubs type them as ``_core.State``, ``_core.Role`` and
``_core.Reason``; ``tests/fast/test_states.py`` checks that the three agree with the
core (its ``REASONS``, its ``decisions()`` and the names its state machine uses).
"""

from __future__ import annotations

from typing import Final

from replica_router import _core

__all__ = [
    "ANSWERING",
    "DOWN",
    "LAGGING",
    "MISCONFIGURED",
    "PRIMARY",
    "REASONS",
    "REPLICA",
    "ROLES",
    "STATES",
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

#: Every node state, in the order the metrics export them.
STATES: Final = (UP, DOWN, LAGGING, UNKNOWN, MISCONFIGURED)
#: The states of a node that answers probes: its lag in ``status()`` is current.
ANSWERING: Final = (UP, LAGGING)

#: Takes writes (``pg_is_in_recovery()`` is false).
PRIMARY: Final = "primary"
#: A hot standby (in recovery).
REPLICA: Final = "replica"
#: Every role, configured or observed.
ROLES: Final = (PRIMARY, REPLICA)

#: Why a read went where it went, in the core's counter order: the core's own list
#: (read from it, not restated).
REASONS: Final[tuple[str, ...]] = tuple(_core.REASONS)
#: The key of ``decisions()`` that counts writes (every other key is a reason).
WRITES: Final = "writes"
