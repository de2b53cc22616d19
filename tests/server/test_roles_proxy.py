"""An alias behind a proxy (DESIGN.md, "Roles that change"; docs/roles.md, "Behind a
proxy or pooler"): the router recognises a proxy endpoint, never moves another alias's
connections to it nor its own elsewhere, and reads through it never fail for the
proxy's doing. The proxy is ``tests/server/tcp_proxy.py`` (``retarget`` is what
HAProxy does when its checks move a listener to another server)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connections, router
from router.models import ReplicationModel

import replica_router
from replica_router.roles import roles
from tests.pgroles import failover
from tests.server.load import Load
from tests.server.tcp_proxy import TcpProxy
from tests.server.test_roles import rows_with, server_port, using_databases, write
from tests.support import BACKEND, LocalCluster, dead_port, wait_until

#: The connect bound through a proxy in these tests (libpq's least: 2 s).
CONNECT_TIMEOUT = 2


def through(c: LocalCluster, node: str, proxy: TcpProxy, **extra: Any) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``node`` of ``c`` reached through ``proxy``."""
    return {
        **c.dsn(node),  # type: ignore[arg-type]
        "ENGINE": BACKEND,
        "PORT": str(proxy.port),
        "OPTIONS": {"connect_timeout": CONNECT_TIMEOUT},
        **extra,
    }


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


def test_a_primary_endpoint_moved_by_the_proxy_keeps_its_connections_and_writes_resume(
    make_cluster: Callable[[], LocalCluster], router_reset: None, caplog: pytest.LogCaptureFixture
) -> None:
    """``default`` is a proxy endpoint in front of the primary; ``replica`` is the
    standby itself. A failover (the primary crashes, the standby is promoted), and
    only later the proxy moves ``default`` to the new primary. Meanwhile the router
    does not send ``default``'s connections to ``replica`` (the proxy decides where
    they go): writes wait, then resume through the endpoint, on the new primary. The
    change is counted and logged once, as a new server behind the proxy."""
    c = make_cluster()
    with TcpProxy(c.port("primary")) as proxy:
        dbs = {
            "default": through(c, "primary", proxy),
            "replica": {**c.dsn("standby"), "ENGINE": BACKEND},
        }
        with using_databases(dbs, PRIMARY_WAIT_TIMEOUT=20):
            with connections["default"].schema_editor() as editor:
                editor.create_model(ReplicationModel)
            c.wait_replayed()
            wait_until(lambda: roles()["state"] == "known", 10)
            assert roles()["proxies"] == ["default"]
            caplog.set_level(logging.INFO, logger="replica_router")
            with Load(writers=2, readers=2) as load:
                wait_until(lambda: len(load.acked) > 10, 10)
                failover(c)
                # The gap: the new primary is reachable as "replica" only.
                wait_until(lambda: roles()["state"] == "unknown", 10)
                time.sleep(1.0)
                assert roles()["connects_to"]["default"] == "default"
                moved = time.monotonic()
                proxy.retarget(c.port("standby"))
                wait_until(lambda: any(t > moved for t, _ in load.acked_at), 20)
                acked = len(load.acked)
                wait_until(lambda: len(load.acked) > acked + 10, 10)
            assert not load.failed_reads, load.failed_reads[:3]
            assert roles()["connects_to"]["default"] == "default"
            # Writes through the proxy do not wait for the probes (RISE): they see it
            # a moment later, as one change, to the server the proxy moved to.
            new_server = f"127.0.0.1:{c.port('standby')}"
            wait_until(lambda: roles()["primary_server"] == new_server, 10)
            assert roles()["role_changes"] == 1
            assert server_port("default") == c.port("standby")
            # Every write acknowledged after the proxy moved is on the new primary.
            after = [v for t, v in load.acked_at if t > moved]
            assert after and all(rows_with(c, "standby", v) == 1 for v in after[-5:])
    said = [r.getMessage() for r in caplog.records]
    assert sum("behind the proxy endpoint" in m for m in said) == 1, said
    assert not any("claim to be primary" in m for m in said), said


def test_a_replicas_endpoint_that_reaches_the_primary_is_not_the_write_target(
    healthy: LocalCluster, router_reset: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Both aliases are proxy endpoints (HAProxy's ``primary`` and ``replicas``). In a
    check window ``replicas`` reaches the primary while ``primary`` reaches nothing:
    the router does not make ``replica`` the write target; reads keep succeeding (the
    primary behind ``replicas`` serves them); a write waits and succeeds through
    ``default`` once the proxy sends it to the primary again, and nothing says two
    primaries."""
    c = healthy
    with TcpProxy(c.port("primary")) as primary, TcpProxy(c.port("standby")) as replicas:
        dbs = {
            "default": through(c, "primary", primary),
            "replica": through(c, "standby", replicas),
        }
        with using_databases(dbs):
            wait_until(lambda: roles()["state"] == "known", 10)
            wait_until(lambda: set(roles()["proxies"]) == {"default", "replica"}, 10)
            caplog.set_level(logging.INFO, logger="replica_router")
            replicas.retarget(c.port("primary"))
            primary.retarget(dead_port())
            wait_until(lambda: roles()["state"] == "unknown", 10)
            wait_until(lambda: replica_router.status()[1]["observed_role"] == "primary", 10)
            assert roles()["connects_to"] == {"default": "default", "replica": "replica"}
            for _ in range(5):
                with replica_router.unit_of_work():
                    assert router.db_for_read(ReplicationModel) == "replica"
                    ReplicationModel.objects.count()
            value = f"p{time.monotonic_ns() % 10**8}"
            outcome: dict[str, Any] = {}

            def write_now() -> None:
                try:
                    with replica_router.unit_of_work():
                        write(value)
                    outcome["port"] = server_port("default")
                except BaseException as exc:  # reported by the assertions below
                    outcome["error"] = exc
                finally:
                    connections.close_all()

            writer = threading.Thread(target=write_now)
            writer.start()
            time.sleep(1.0)
            assert writer.is_alive() and not outcome, outcome  # waiting, not failing
            primary.retarget(c.port("primary"))
            writer.join(15)
            assert "error" not in outcome, outcome.get("error")
            assert outcome["port"] == c.port("primary")
            assert rows_with(c, "primary", value) == 1
    said = [r.getMessage() for r in caplog.records]
    assert not any("claim to be primary" in m or "promoted?" in m for m in said), said


def test_a_read_whose_connect_times_out_through_a_proxy_is_served_elsewhere(
    healthy: LocalCluster, router_reset: None
) -> None:
    """``replica`` is a proxy endpoint that stops forwarding (HAProxy retrying a dead
    backend): reads routed there while it hangs are served by the primary, none
    fails, and none takes much longer than one connect timeout."""
    with TcpProxy(healthy.port("standby")) as proxy:
        dbs = {
            "default": {**healthy.dsn("primary"), "ENGINE": BACKEND},
            "replica": through(healthy, "standby", proxy),
        }
        with using_databases(dbs, PRIMARY_READ_WEIGHT=0):
            wait_until(lambda: replica_router.status()[1]["state"] == "up", 10)
            proxy.hang.set()
            results: list[tuple[float, Any]] = []
            lock = threading.Lock()

            def read() -> None:
                started = time.monotonic()
                try:
                    with replica_router.unit_of_work():
                        outcome: Any = ReplicationModel.objects.count()
                except BaseException as exc:  # reported by the assertions below
                    outcome = exc
                finally:
                    connections.close_all()
                with lock:
                    results.append((time.monotonic() - started, outcome))

            readers = [threading.Thread(target=read) for _ in range(4)]
            for t in readers:
                t.start()
            for t in readers:
                t.join(20)
    assert len(results) == 4
    assert not [o for _, o in results if isinstance(o, BaseException)], results
    assert all(seconds < CONNECT_TIMEOUT + 2 for seconds, _ in results), results
