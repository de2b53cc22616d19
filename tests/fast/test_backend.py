"""The router's database backend without a server: the connection bounds it adds.

``get_connection_params`` builds libpq's parameters and opens nothing, so the
bounded connect and the keepalives are checked here; what happens on real faults
(passive health, read retry, interrupts) is in ``tests/server/test_backend.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from replica_router.backends.postgresql.base import (
    KEEPALIVES_COUNT,
    KEEPALIVES_IDLE,
    KEEPALIVES_INTERVAL,
    DatabaseWrapper,
)
from tests.support import router_settings

pytestmark = pytest.mark.usefixtures("offline")


def params(alias: str, **options: Any) -> dict[str, Any]:
    """libpq parameters the backend would connect ``alias`` with."""
    settings_dict = {**connections.settings[alias], "ENGINE": "replica_router.backends.postgresql"}
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), **options}
    wrapper = DatabaseWrapper(settings_dict, alias=alias)
    try:
        return wrapper.get_connection_params()
    finally:
        wrapper.close()


def test_cluster_connections_are_bounded() -> None:
    """Proves: a cluster alias connects with ``connect_timeout`` = max(2, 2 x
    PROBE_TIMEOUT) seconds (rounded up) and TCP keepalives."""
    p = params("replica")
    assert p["connect_timeout"] == 2  # PROBE_TIMEOUT 0.3: libpq's floor
    assert (p["keepalives"], p["keepalives_idle"]) == (1, KEEPALIVES_IDLE)
    assert (p["keepalives_interval"], p["keepalives_count"]) == (
        KEEPALIVES_INTERVAL,
        KEEPALIVES_COUNT,
    )
    with router_settings(PROBE_TIMEOUT=1.6):
        assert params("default")["connect_timeout"] == 4


def test_the_aliass_own_settings_win() -> None:
    """Proves: a ``connect_timeout`` or keepalive option set on the alias is kept."""
    p = params("default", connect_timeout=7, keepalives_idle=30)
    assert p["connect_timeout"] == 7
    assert p["keepalives_idle"] == 30


def test_aliases_outside_the_cluster_are_left_as_django_makes_them() -> None:
    """Proves: the backend on an alias the router does not manage adds nothing."""
    p = params("other")
    assert p["connect_timeout"] == 2  # the alias's own OPTIONS
    assert "keepalives" not in p
