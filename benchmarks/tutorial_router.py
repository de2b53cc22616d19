"""The DJReplica tutorial's way of routing, as a peer for ``benchmarks/faults.py``.

Reads go to a node drawn at random (primary or standby); before each read the router
opens a cursor on it and, if that raises, sends the read to the other node. Writes go
to the primary. Written here from the tutorial's description (the same approach as
``CursorCheckRouter`` in ``benchmarks/run.py``); used by the example project with
``DJREPLICA_ROUTER=tutorial`` and this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import random
from typing import Any

PRIMARY = "default"
NODES = ("replica", PRIMARY)


class CursorCheckRouter:
    """Random node per read, checked with ``connections[alias].cursor()``."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        from django.db import connections
        from django.db.utils import OperationalError

        alias = random.choice(NODES)
        try:
            connections[alias].cursor()
        except OperationalError:
            return NODES[1] if alias == NODES[0] else NODES[0]
        return alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY
