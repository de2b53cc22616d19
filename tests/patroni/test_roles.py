"""Writes follow the primary through a Patroni switchover and failover (issue 14).

Four reading and two writing threads run through the router while Patroni hands
leadership from node1 to another node: by its REST API (switchover) or because node1's
Patroni and postmaster were SIGKILLed and the leader key deleted (failover), with
today's aliases (``default`` = node1, ``REPLICAS`` = the others) and libpq multi-host
aliases (both aliases over all three nodes). What must hold:

* no read fails;
* writes resume on the new primary and keep succeeding (the last writes all succeed,
  on the new leader's port), with no write landing on a node that is not the leader;
* after a switchover every acknowledged write is on the new primary (Patroni stops the
  old one cleanly, so nothing acknowledged is lost);
* the demoted node1 serves reads again once it streams from the new primary (after a
  failover its Patroni is started again and rewinds it first).

Timings are measured by ``make failover``, not asserted here: the waits below are
generous bounds for a loaded machine, not targets.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.patroni.conftest import django_on
from tests.patroni.traffic import Traffic, all_nodes_up
from tests.patronicluster import PatroniCluster
from tests.support import wait_until

measure = logging.getLogger("tests.measure")

#: (alias style, CONN_MAX_AGE): today's aliases with per-request and persistent
#: connections, and libpq multi-host aliases (each host a node) with persistent ones.
CONFIGS = [("static", 0), ("static", 60), ("multihost", 60)]
#: Writes that must all succeed, on the new leader, at the end.
LAST_WRITES = 20
#: Generous bound for waits on a shared 2-core machine (not a target).
WAIT = 60


def _summary(traffic: Traffic) -> str:
    """Failed requests by kind and error, for an assertion message."""
    errors = Counter(
        f"{o.kind}: {(o.error or '').splitlines()[0][:150]}" for o in traffic.snapshot() if o.error
    )
    return f"{len(traffic.snapshot())} requests; failures: {dict(errors)}"


def _wait(traffic: Traffic, what: str, predicate: Callable[[], bool], bound: float = WAIT) -> None:
    try:
        wait_until(predicate, bound, 0.05)
    except AssertionError:
        raise AssertionError(f"not within {bound} s: {what}; {_summary(traffic)}") from None


def _check(bed: PatroniCluster, traffic: Traffic, new: str, event_at: float, cma: int) -> None:
    """What holds after any event: writes back on ``new`` and they keep succeeding; the
    demoted node1 serves reads again. With persistent connections of a multi-host
    alias, node1 gets reads when a connection is placed anew: at each connection's
    next request once node1 takes reads again (one weighted draw each, which 4
    readers can all miss), and in any case when ``CONN_MAX_AGE`` recycles them, so
    the bound covers two recycles."""
    new_port = bed.pg_ports[new]
    _wait(traffic, f"writes resume on {new}",
          lambda: traffic.served_since("w", event_at, new_port) >= LAST_WRITES)  # fmt: skip
    since = time.monotonic()
    _wait(traffic, f"writes keep succeeding on {new}",
          lambda: traffic.served_since("w", since, new_port) >= LAST_WRITES)  # fmt: skip
    last = traffic.last_writes(LAST_WRITES)
    assert all(o.error is None for o in last), [o.error for o in last if o.error]
    assert {o.port for o in last} == {new_port}, (last, bed.pg_ports)
    _wait(traffic, "the demoted node1 serves reads",
          lambda: traffic.served_since("r", since, bed.pg_ports["node1"]) > 0,
          WAIT + 2 * cma)  # fmt: skip


def _report(traffic: Traffic, event: str, style: str, cma: int) -> None:
    failed_writes = traffic.failed("w")
    measure.info(
        "%s %s CONN_MAX_AGE=%d: %d requests, %d failed writes (%s)",
        event,
        style,
        cma,
        len(traffic.snapshot()),
        len(failed_writes),
        sorted({o.error.split("\n")[0][:120] for o in failed_writes if o.error}),
    )


@pytest.mark.parametrize(("style", "cma"), CONFIGS)
def test_switchover_under_load(bed: PatroniCluster, style: str, cma: int) -> None:
    """A switchover node1 -> node2 through Patroni's REST API while threads read and
    write: no read fails, writes resume on node2, nothing acknowledged is lost, and
    node1 (now a standby) serves reads again."""
    tag = int(time.time() * 1000) % 2_000_000_000
    with django_on(bed, style, cma), Traffic(tag=tag) as traffic:
        wait_until(lambda: traffic.served_since("w", 0, bed.pg_ports["node1"]) >= 10, WAIT)
        wait_until(all_nodes_up, WAIT)
        event_at = time.monotonic()
        bed.switchover("node2", "node1")
        bed.wait_healthy("node2", WAIT)
        _check(bed, traffic, "node2", event_at, cma)
        traffic.stop()
        _report(traffic, "switchover", style, cma)
        assert traffic.failed("r") == [], _summary(traffic)
        acked = {o.name for o in traffic.snapshot() if o.kind == "w" and o.error is None}
        rows = set(
            bed.sql(
                "node2", f"SELECT name FROM router_replicationmodel WHERE count = {tag}"
            ).split()
        )
        assert acked <= rows, sorted(acked - rows)[:20]


@pytest.mark.parametrize(("style", "cma"), CONFIGS)
def test_failover_under_load(bed: PatroniCluster, style: str, cma: int) -> None:
    """node1's Patroni and postmaster SIGKILLed, its leader key deleted, while threads
    read and write: no read fails, writes resume on the new leader, and node1, started
    again (Patroni rewinds it), serves reads again as a standby."""
    with django_on(bed, style, cma), Traffic() as traffic:
        wait_until(lambda: traffic.served_since("w", 0, bed.pg_ports["node1"]) >= 10, WAIT)
        wait_until(all_nodes_up, WAIT)
        event_at = time.monotonic()
        bed.failover("node1")
        new, promotion = bed.wait_new_primary("node1", event_at, WAIT)
        measure.info("failover: %s leads %.2f s after the event", new, promotion)
        bed.rejoin("node1", WAIT)
        _check(bed, traffic, new, event_at, cma)
        traffic.stop()
        _report(traffic, "failover", style, cma)
        assert traffic.failed("r") == [], _summary(traffic)
