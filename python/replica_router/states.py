"""Node states and roles by name: the values of ``status()[i]["state"]`` and
``["observed_role"]`` (typed as ``_core.State`` and ``_core.Role`` in the stubs)."""

from __future__ import annotations

from typing import Final

__all__ = ["DOWN", "LAGGING", "MISCONFIGURED", "PRIMARY", "REPLICA", "UNKNOWN", "UP"]

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

PRIMARY: Final = "primary"
REPLICA: Final = "replica"
