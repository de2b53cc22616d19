"""An alias behind a proxy (DESIGN.md, "Roles that change"): one connect that times
out through the proxy takes the alias out of reads and interrupts nothing else."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import DatabaseError, connections, router
from router.models import ReplicationModel

import replica_router
from tests.server.tcp_proxy import TcpProxy
from tests.server.test_roles import using_databases
from tests.support import BACKEND, LocalCluster, wait_until


def test_connect_timeout_through_a_proxy_interrupts_nothing_else(
    healthy: LocalCluster, router_reset: None
) -> None:
    """``replica`` is a proxy in front of the standby. While a query runs on one of its
    connections, the proxy stops forwarding new ones: another thread's connect times
    out. The alias leaves reads (reads go to the primary and succeed), and the query
    in flight on the healthy connection finishes on the standby: not interrupted (an
    interrupted read would be retried on the primary, which the server port shows)."""
    with TcpProxy(healthy.port("standby")) as proxy:
        dbs = {
            "default": {**healthy.dsn("primary"), "ENGINE": BACKEND},
            "replica": {
                **healthy.dsn("standby"),
                "ENGINE": BACKEND,
                "PORT": str(proxy.port),
                "OPTIONS": {"connect_timeout": 2},
            },
        }
        with using_databases(dbs):
            wait_until(lambda: replica_router.status()[1]["state"] == "up", 10)
            outcome: dict[str, Any] = {}

            def long_query() -> None:
                try:
                    with connections["replica"].cursor() as cursor:
                        outcome["started"] = time.monotonic()
                        cursor.execute("SELECT pg_sleep(3.5), inet_server_port()")
                        outcome["row"] = cursor.fetchone()
                except BaseException as exc:  # reported by the assertions below
                    outcome["error"] = exc
                finally:
                    connections.close_all()

            def timed_out_connect() -> None:
                try:
                    connections["replica"].ensure_connection()
                except DatabaseError as exc:
                    outcome["connect_error"] = exc
                finally:
                    connections.close_all()

            busy = threading.Thread(target=long_query)
            busy.start()
            wait_until(lambda: "started" in outcome, 10)
            proxy.hang.set()
            connecting = threading.Thread(target=timed_out_connect)
            connecting.start()
            connecting.join(10)
            assert "connect_error" in outcome, outcome
            assert replica_router.status()[1]["state"] == "down"
            with replica_router.unit_of_work():
                assert router.db_for_read(ReplicationModel) == "default"
                ReplicationModel.objects.count()
            busy.join(10)
            assert "error" not in outcome, outcome.get("error")
            # Answered by the standby itself, not interrupted and retried on the primary.
            assert outcome["row"][1] == healthy.port("standby")
