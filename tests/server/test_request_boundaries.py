"""Django's request boundaries with the router's backend (``close_old_connections``).

At each request's start and end Django calls ``close_if_unusable_or_obsolete()`` on
every connection, which asks ``get_autocommit()`` and so connects. A persistent
connection to a primary that went down must be closed there, not reopened: reopening
the primary alias waits for a primary (``PRIMARY_WAIT_TIMEOUT``), and a request that
only reads would hang for the whole outage (``make faults`` measured 6 s stalls).
"""

from __future__ import annotations

import threading

from django.db import connections

from tests.support import (
    LocalCluster,
    databases,
    databases_override,
    router_settings,
    states,
    wait_until,
)

WAIT = 8.0


def test_a_request_boundary_closes_a_dead_primarys_connection_without_waiting(
    healthy: LocalCluster,
) -> None:
    dbs = databases(healthy)
    for d in dbs.values():
        d["CONN_MAX_AGE"] = 60
    opened, go, done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def request_thread() -> None:
        conn = connections["default"]
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            opened.set()
            go.wait(30)
            conn.close_if_unusable_or_obsolete()  # what request_started/finished do
            seen["connection"] = conn.connection
            done.set()
        except Exception as exc:  # reported below
            seen["error"] = repr(exc)
            done.set()
        finally:
            conn.close()

    with databases_override(dbs), router_settings(PRIMARY_WAIT_TIMEOUT=WAIT):
        t = threading.Thread(target=request_thread)
        t.start()
        assert opened.wait(10), seen
        healthy.stop("primary", mode="immediate")
        wait_until(lambda: states().get("default") == "down", 10)
        go.set()
        finished = done.wait(WAIT / 2)
        t.join(WAIT + 5)
    assert finished, "close_if_unusable_or_obsolete waited for a primary"
    assert "error" not in seen, seen
    assert seen["connection"] is None  # closed, not reopened
