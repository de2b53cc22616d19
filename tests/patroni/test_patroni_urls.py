"""``PATRONI_URLS``: a node takes writes only while PostgreSQL says it is the primary
and Patroni calls it leader (issue 14, item 5).

The router polls Patroni's ``/cluster`` (all three nodes' REST URLs) in this process.
Under four reading and two writing threads:

* a switchover and a failover: no write is acknowledged by the new primary before
  Patroni calls it leader (a watcher polls every node's ``/cluster`` every 10 ms; the
  last round in which no node named the new leader bounds it), writes resume there,
  no read fails, and ``status()`` / ``roles()`` show Patroni's members (after a
  failover the first URL, node1's, is refused and another answers);
* Patroni unreachable (a port nothing listens on): the documented fallback, roles
  from PostgreSQL alone, said once in the log and in ``roles()``; a switchover still
  moves writes to the new primary.
* Patroni disagreeing with PostgreSQL (Patroni paused, node2 promoted with
  ``pg_promote()`` behind its back): PostgreSQL alone would write to node2 (the newest
  timeline), Patroni still calls node1 leader: no write lands anywhere, writes fail
  after ``PRIMARY_WAIT_TIMEOUT`` saying why, reads go on, and writes resume on node1
  once Patroni demotes node2 again; nothing was written to node2.

Timings are measured by ``make failover``, not asserted here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from types import TracebackType
from typing import Any

import pytest

from tests.patroni.conftest import django_on
from tests.patroni.test_roles import WAIT, _check, _summary
from tests.patroni.traffic import Traffic, all_nodes_up
from tests.patronicluster import NAMES, PatroniCluster
from tests.patroniconf import http
from tests.support import dead_port, wait_until

#: (alias style, CONN_MAX_AGE) of the switchover: both alias styles.
CONFIGS = [("static", 0), ("multihost", 60)]


class LeaderWatch:
    """Polls every node's ``/cluster`` every 10 ms in a thread: per round, its start
    (``time.monotonic()``) and the members any node called leader."""

    def __init__(self, bed: PatroniCluster) -> None:
        self.bed = bed
        self.rounds: list[tuple[float, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leader-watch")

    def __enter__(self) -> LeaderWatch:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            start, leaders = time.monotonic(), set()
            for name in NAMES:
                with contextlib.suppress(OSError):
                    status, body = http("GET", self.bed.rest_url(name, "/cluster"), timeout=1)
                    if status == 200 and isinstance(body, dict):
                        members = body.get("members", [])
                        leaders |= {m["name"] for m in members if m.get("role") == "leader"}
            self.rounds.append((start, leaders))
            time.sleep(0.01)

    def not_leader_until(self, name: str) -> float:
        """The start of the last round in which no node called ``name`` leader: Patroni
        made it leader after that instant."""
        return max((s for s, leaders in self.rounds if name not in leaders), default=0.0)


def _roles() -> dict[str, Any]:
    from replica_router.roles import roles

    return roles()


def _patroni_by_port() -> dict[int, tuple[Any, Any]]:
    """``status()``'s ``(patroni_role, patroni_state)`` by PostgreSQL port."""
    import replica_router

    return {n["port"]: (n["patroni_role"], n["patroni_state"]) for n in replica_router.status()}


def _no_early_writes(bed: PatroniCluster, traffic: Traffic, watch: LeaderWatch, new: str) -> None:
    """No write was acknowledged by ``new`` before Patroni called it leader."""
    since = watch.not_leader_until(new)
    early = [
        o
        for o in traffic.snapshot()
        if o.kind == "w" and o.error is None and o.port == bed.pg_ports[new] and o.end <= since
    ]
    assert since > 0 and early == [], (since, early[:5])


@pytest.mark.parametrize(("style", "cma"), CONFIGS)
def test_switchover_with_patroni_urls(bed: PatroniCluster, style: str, cma: int) -> None:
    """A switchover node1 -> node2 with ``PATRONI_URLS``: ``status()`` shows Patroni's
    member states before and after, no write lands on node2 before Patroni calls it
    leader, writes resume there and no read fails."""
    urls = [bed.rest_url(n) for n in NAMES]
    ports = bed.pg_ports
    with (
        django_on(bed, style, cma, PATRONI_URLS=urls),
        LeaderWatch(bed) as watch,
        Traffic() as traffic,
    ):
        wait_until(lambda: traffic.served_since("w", 0, ports["node1"]) >= 10, WAIT)
        wait_until(lambda: (_roles()["patroni"] or {}).get("word") == "agrees", WAIT)
        patroni = _roles()["patroni"]
        assert patroni["url"] == urls[0] and patroni["error"] is None, patroni
        assert patroni["leader"] == "node1" and len(patroni["members"]) == 3, patroni
        states = _patroni_by_port()
        assert states[ports["node1"]] == ("leader", "running"), states
        assert states[ports["node2"]] == ("replica", "streaming"), states
        event_at = time.monotonic()
        bed.switchover("node2", "node1")
        bed.wait_healthy("node2", WAIT)
        _check(bed, traffic, "node2", event_at, cma)
        traffic.stop()
        assert traffic.failed("r") == [], _summary(traffic)
        _no_early_writes(bed, traffic, watch, "node2")
        wait_until(lambda: _patroni_by_port()[ports["node1"]] == ("replica", "streaming"), WAIT)
        assert _patroni_by_port()[ports["node2"]] == ("leader", "running")
        assert _roles()["patroni"]["leader"] == "node2"


def test_failover_with_patroni_urls(bed: PatroniCluster) -> None:
    """node1's Patroni and postmaster SIGKILLed, its leader key deleted, with
    ``PATRONI_URLS`` listing node1's REST URL first: it is refused, another answers;
    no write lands on the new leader before Patroni calls it leader; writes resume
    there and no read fails."""
    urls = [bed.rest_url(n) for n in NAMES]
    with (
        django_on(bed, "static", 60, PATRONI_URLS=urls),
        LeaderWatch(bed) as watch,
        Traffic() as traffic,
    ):
        wait_until(lambda: traffic.served_since("w", 0, bed.pg_ports["node1"]) >= 10, WAIT)
        wait_until(all_nodes_up, WAIT)
        event_at = time.monotonic()
        bed.failover("node1")
        new, _ = bed.wait_new_primary("node1", event_at, WAIT)
        bed.rejoin("node1", WAIT)
        _check(bed, traffic, new, event_at, 60)
        traffic.stop()
        assert traffic.failed("r") == [], _summary(traffic)
        _no_early_writes(bed, traffic, watch, new)
        patroni = _roles()["patroni"]
        assert patroni["leader"] == new and patroni["polls"] > patroni["failed_polls"], patroni


def test_patroni_unreachable_falls_back_to_postgresql(
    bed: PatroniCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """``PATRONI_URLS`` on a port nothing listens on: ``roles()`` says there is no
    answer and why, the log says once that roles come from PostgreSQL alone, and a
    switchover still moves writes to the new primary with no failed read."""
    url = f"http://127.0.0.1:{dead_port()}"
    caplog.set_level(logging.INFO, logger="replica_router")
    with django_on(bed, "static", 0, PATRONI_URLS=[url]), Traffic() as traffic:
        wait_until(lambda: traffic.served_since("w", 0, bed.pg_ports["node1"]) >= 10, WAIT)
        wait_until(all_nodes_up, WAIT)
        patroni = _roles()["patroni"]
        assert patroni["word"] == "no_answer" and patroni["url"] is None, patroni
        assert url in patroni["error"] and "refused" in patroni["error"], patroni
        assert set(_patroni_by_port().values()) == {(None, None)}
        event_at = time.monotonic()
        bed.switchover("node2", "node1")
        bed.wait_healthy("node2", WAIT)
        _check(bed, traffic, "node2", event_at, 0)
        traffic.stop()
        assert traffic.failed("r") == [], _summary(traffic)
    said = [r for r in caplog.records if "Patroni answers at none of PATRONI_URLS" in r.message]
    assert len(said) == 1, [r.message for r in said]


def _pause(bed: PatroniCluster, on: bool) -> None:
    """Patroni's maintenance mode on or off (``PATCH /config``), and wait until
    ``/cluster`` says so."""
    leader = NAMES[0]  # any member's API writes the DCS's configuration
    status, body = http("PATCH", bed.rest_url(leader, "/config"), {"pause": on}, timeout=10)
    assert status == 200, (status, body)

    def said() -> bool:
        with contextlib.suppress(OSError):
            got = http("GET", bed.rest_url(leader, "/cluster"), timeout=2)[1]
            return isinstance(got, dict) and bool(got.get("pause")) == on
        return False

    wait_until(said, WAIT)


def _node2_rejoins(bed: PatroniCluster) -> None:
    """After the test: Patroni (maintenance over) demotes node2, which PostgreSQL alone
    promoted, and rewinds it to stream from node1; if it cannot, node2 is
    reinitialized (a new base backup)."""
    try:
        bed.wait_healthy(NAMES[0], WAIT)
    except Exception:  # a failed rewind leaves node2 stopped: start it anew
        http("POST", bed.rest_url("node2", "/reinitialize"), {"force": True}, timeout=10)
        bed.wait_healthy(NAMES[0], 2 * WAIT)


def test_writes_wait_while_patroni_does_not_call_the_primary_leader(bed: PatroniCluster) -> None:
    """Patroni paused, node2 promoted with ``pg_promote()`` behind its back: PostgreSQL
    alone would make node2 the primary (the newest timeline), but Patroni still calls
    node1 leader. No write lands on node2 or on node1 (an older timeline now): writes
    wait ``PRIMARY_WAIT_TIMEOUT`` and fail saying why, reads go on. Once Patroni
    demotes node2 again, writes resume on node1 and nothing written went to node2."""
    urls = [bed.rest_url(n) for n in NAMES]
    ports = bed.pg_ports
    # A GET of /cluster may take longer than the suite's 0.3 s PROBE_TIMEOUT on a loaded
    # machine; Patroni's word must stay fresh here (the fallback has its own test).
    router = {"PATRONI_URLS": urls, "PRIMARY_WAIT_TIMEOUT": 1.0, "PROBE_TIMEOUT": 1.0}
    with django_on(bed, "static", 0, **router), Traffic() as traffic:
        wait_until(lambda: traffic.served_since("w", 0, ports["node1"]) >= 10, WAIT)
        try:
            _pause(bed, True)
            promoted_at = time.monotonic()
            bed.sql("node2", "SELECT pg_promote()")
            wait_until(lambda: _roles()["patroni"]["word"] == "holds_writes", WAIT)
            held = time.monotonic()
            roles = _roles()
            assert roles["state"] == "unknown" and roles["patroni"]["leader"] == "node1", roles

            def failed_since() -> list[Any]:
                return [o for o in traffic.failed("w") if o.start >= held]

            wait_until(lambda: len(failed_since()) >= 4, WAIT)
            reason = failed_since()[0].error or ""
            assert "is not Patroni's leader (node1)" in reason, reason
            # Reads go on meanwhile (on node3, the one standby left).
            reads = time.monotonic()
            wait_until(lambda: traffic.served_since("r", reads, ports["node3"]) >= 10, WAIT)
        finally:
            unpaused = time.monotonic()
            _pause(bed, False)
        _node2_rejoins(bed)
        resumed = time.monotonic()
        wait_until(lambda: traffic.served_since("w", resumed, ports["node1"]) >= 10, WAIT)
        traffic.stop()
        assert traffic.failed("r") == [], _summary(traffic)
        written = [o for o in traffic.snapshot() if o.kind == "w" and o.error is None]
        on_node2 = [o for o in written if o.port == ports["node2"]]
        assert on_node2 == [], on_node2[:5]
        # Between Patroni's disagreement and the end of maintenance nothing was written.
        during = [o for o in written if o.start >= held and o.end <= unpaused]
        assert during == [], during[:5]
        assert promoted_at < held < unpaused < resumed
