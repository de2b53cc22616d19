"""Read-after-write consistency against a real standby whose replay is paused.

With ``pg_wal_replay_pause()`` on the standby, every row written after the pause is
missing there: any read the router sends to ``replica`` right after a write is
stale. Each mode below writes and then reads ``N`` times (``RR_CONSISTENCY_N``,
default 2000) and must see zero stale reads, while reads that need no fresh data
still reach the replica for their weighted share. Measured numbers are attached to
the test report (``user_properties``) and logged on ``tests.consistency``.

A paused standby is lagging under the default lag limits (it leaves weighted reads as
soon as the primary moves on): these tests (and ``test_async.py``) need a stale standby
that still takes its weighted share, so ``replay_paused`` turns the limits off
(``None``) explicitly. The defaults with a paused standby are tested in ``test_lag.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import router, transaction
from django.http import HttpResponse
from django.test import Client, override_settings
from router.models import ReplicationModel

import replica_router
from replica_router import context, middleware
from tests.support import ROUTER_SETTINGS, LocalCluster, wait_all_up, wait_until

#: Write-then-read sequences per mode.
N = int(os.environ.get("RR_CONSISTENCY_N", "2000"))
#: Rows written and replicated before replay is paused (what "old" reads look at).
OLD_ROWS = 20
#: The session's settings with the lag limits off: a stale standby stays in reads.
STALE_OK: dict[str, Any] = {**ROUTER_SETTINGS, "MAX_LAG_SECONDS": None, "MAX_LAG_BYTES": None}
#: Default cookie name (``REPLICA_ROUTER["COOKIE_NAME"]``).
COOKIE = "replica_router_lsn"

Record = Callable[[str, object], None]

logger = logging.getLogger("tests.consistency")


# --------------------------------------------------------------------- helpers


def create_row(name: str = "c") -> ReplicationModel:
    """One row on the primary (callers choose the unit of work around it)."""
    return ReplicationModel.objects.create(name=name[:10], count=1, average=1.0)


def on_replica(pk: int) -> bool:
    """Whether the standby has replayed the row (an explicit ``using``: no routing)."""
    return ReplicationModel.objects.using("replica").filter(pk=pk).exists()


def routed_read(pk: int) -> tuple[str, bool]:
    """Route a read like the ORM does and run it there: (alias, row found)."""
    alias = router.db_for_read(ReplicationModel)
    assert alias is not None
    return alias, ReplicationModel.objects.using(alias).filter(pk=pk).exists()


def spread(count: int = 200) -> Counter[str]:
    """Where ``count`` routing decisions for a read go right now."""
    return Counter(router.db_for_read(ReplicationModel) for _ in range(count))


def delta(before: dict[str, int], after: dict[str, int], reason: str) -> int:
    return after.get(reason, 0) - before.get(reason, 0)


def share(counts: Counter[str], alias: str = "replica") -> float:
    total = sum(counts.values())
    return counts[alias] / total if total else 0.0


def assert_weighted_share(counts: Counter[str], expected: float = 0.5) -> None:
    """The replica's share of ``counts`` is its weight share (1:1 by default), within
    five standard deviations of a binomial plus a little slack: never flaky, yet
    tight at N=2000 (0.5 +- 0.076)."""
    total = sum(counts.values())
    assert total > 0
    tolerance = 5 * math.sqrt(expected * (1 - expected) / total) + 0.02
    assert abs(share(counts) - expected) <= tolerance, (dict(counts), tolerance)


def seed_rows(count: int = OLD_ROWS) -> list[int]:
    """Rows written inside a unit of work, so the caller's context is not pinned."""
    with replica_router.unit_of_work():
        return [create_row("old").pk for _ in range(count)]


@contextmanager
def replay_paused(cluster: LocalCluster) -> Iterator[list[int]]:
    """Replicate a few old rows, then pause replay; yields their pks. Resumes always.
    Runs with ``STALE_OK`` (lag limits off), so the paused standby keeps its share.

    Before yielding it proves the pause works: a row written after it is not on the
    standby, so a read routed there right after a write would be stale.
    """
    with override_settings(REPLICA_ROUTER=STALE_OK):
        old = seed_rows()
        cluster.wait_replayed()
        assert all(on_replica(pk) for pk in old)
        cluster.pause_replay()
        try:
            with replica_router.unit_of_work():
                fresh = create_row("fresh").pk
            time.sleep(0.05)  # the standby receives the WAL, and must not apply it
            assert not on_replica(fresh), "replay is paused, yet the standby has the new row"
            wait_all_up()  # with the lag limits off, a paused standby stays eligible
            yield old
        finally:
            cluster.resume_replay()


@contextmanager
def router_settings(**overrides: Any) -> Iterator[None]:
    """The session's router settings plus ``overrides``; waits until probes see all up."""
    with override_settings(REPLICA_ROUTER={**STALE_OK, **overrides}):
        wait_all_up()
        yield


# ---------------------------------------------------------------- sensitivity


def test_control_reads_right_after_a_write_are_stale_without_protection(
    paused: list[int], record: Record
) -> None:
    """Proves the test bed bites: with no unit of work, no transaction and no pin
    window (PIN_SECONDS 0), a read right after a write is a plain weighted pick, and
    every one routed to the paused replica misses the row. Without this, zero stale
    reads elsewhere would prove nothing."""
    count = min(N, 300)
    served: Counter[str] = Counter()
    stale_by_alias: Counter[str] = Counter()
    with router_settings(PIN_SECONDS=0):
        for _ in range(count):
            pk = create_row("ctl").pk
            alias, found = routed_read(pk)
            served[alias] += 1
            if not found:
                stale_by_alias[alias] += 1
    record("control.sequences", count)
    record("control.stale", sum(stale_by_alias.values()))
    record("control.replica_share", round(share(served), 3))
    assert stale_by_alias["default"] == 0
    assert served["replica"] > 0
    # Every read the replica served was stale: the pause holds for the whole run.
    assert stale_by_alias["replica"] == served["replica"]


# ------------------------------------------------------- 1. same unit of work


def test_request_is_a_unit_of_work(paused: list[int], record: Record) -> None:
    """Proves: an HTTP request is a unit of work through Django's request signals; a
    read after a write in the same request goes to the primary and finds the row,
    N times. The time-window pin is off (PIN_SECONDS 0) and the client's cookie is
    dropped before each request, so only the request's own pin can protect it."""
    client = Client()
    served: Counter[str] = Counter()
    stale = 0
    with router_settings(PIN_SECONDS=0):
        before = replica_router.decisions()
        for _ in range(N):
            client.cookies.clear()
            response = client.post("/write-then-read/")
            assert response.status_code == 200
            body = response.json()
            served[body["alias"]] += 1
            stale += not body["found"]
        after = replica_router.decisions()
    record("request_unit.sequences", N)
    record("request_unit.stale", stale)
    record("request_unit.replica_share", round(share(served), 3))
    assert stale == 0
    assert served == Counter({"default": N})
    assert delta(before, after, "pinned") >= N
    # The request is over: the test's own context is not pinned by it.
    assert context.current() is None or not context.current().is_pinned()  # type: ignore[union-attr]


def test_atomic_requests(paused: list[int], record: Record) -> None:
    """Proves: with ``ATOMIC_REQUESTS = True`` the view runs inside a transaction on
    the primary and its reads go there. The view writes with an explicit alias (no
    ``db_for_write``, hence no pin) and PIN_SECONDS is 0, so only the transaction
    rule protects the read."""
    from django.db import connections

    client = Client()
    served: Counter[str] = Counter()
    stale = 0
    n = max(N // 10, 20)
    db_settings = connections.settings["default"]
    with router_settings(PIN_SECONDS=0):
        before = replica_router.decisions()
        db_settings["ATOMIC_REQUESTS"] = True
        try:
            for _ in range(n):
                client.cookies.clear()
                body = client.post("/raw-write-then-read/").json()
                served[body["alias"]] += 1
                stale += not body["found"]
        finally:
            db_settings["ATOMIC_REQUESTS"] = False
        after = replica_router.decisions()
    record("atomic_requests.sequences", n)
    record("atomic_requests.stale", stale)
    assert stale == 0
    assert served == Counter({"default": n})
    assert delta(before, after, "transaction") >= n
    assert delta(before, after, "pinned") == 0


def test_unit_of_work_block(paused: list[int], record: Record) -> None:
    """Proves: inside ``with replica_router.unit_of_work():`` a read after a write
    goes to the primary and finds the row, N times (PIN_SECONDS 0, so only the
    unit's pin protects it)."""
    served: Counter[str] = Counter()
    stale = 0
    with router_settings(PIN_SECONDS=0):
        before = replica_router.decisions()
        for _ in range(N):
            with replica_router.unit_of_work():
                pk = create_row("uow").pk
                alias, found = routed_read(pk)
            served[alias] += 1
            stale += not found
        after = replica_router.decisions()
    record("unit_of_work.sequences", N)
    record("unit_of_work.stale", stale)
    record("unit_of_work.replica_share", round(share(served), 3))
    assert stale == 0
    assert served == Counter({"default": N})
    assert delta(before, after, "pinned") >= N


def test_unit_pin_ends_with_the_unit(healthy: LocalCluster) -> None:
    """Proves: with the default settings, a write inside a unit pins reads until the
    unit ends, and no longer: right after the block, reads are spread again (no
    time window is left behind by a write made inside a unit)."""
    with replica_router.unit_of_work():
        create_row("uow")
        assert spread() == Counter({"default": 200})
        with replica_router.unit_of_work():  # a nested unit joins the outer one
            assert spread() == Counter({"default": 200})
        assert spread() == Counter({"default": 200})
    assert set(spread()) == {"default", "replica"}


# ---------------------------------------------------------------- 2. atomic


def test_reads_inside_atomic_see_the_write(paused: list[int], record: Record) -> None:
    """Proves: inside ``transaction.atomic()`` reads go to the primary and see the
    transaction's own uncommitted write, N times, both through
    ``router.db_for_read`` + ``using`` and through a plain ORM query. PIN_SECONDS 0
    leaves the transaction rule alone to do it (no pinned decision counted)."""
    served: Counter[str] = Counter()
    stale = 0
    orm_stale = 0
    with router_settings(PIN_SECONDS=0):
        before = replica_router.decisions()
        for _ in range(N):
            with transaction.atomic():
                pk = create_row("atomic").pk
                alias, found = routed_read(pk)
                served[alias] += 1
                stale += not found
                orm_stale += not ReplicationModel.objects.filter(pk=pk).exists()
        after = replica_router.decisions()
    record("atomic.sequences", N)
    record("atomic.stale", stale)
    record("atomic.orm_stale", orm_stale)
    record("atomic.replica_share", round(share(served), 3))
    assert stale == 0
    assert orm_stale == 0
    assert served == Counter({"default": N})
    assert delta(before, after, "transaction") >= 2 * N
    assert delta(before, after, "pinned") == 0


# -------------------------------------------------- 3. across requests (cookie)


def test_cookie_read_your_writes_across_requests(
    paused: list[int], cluster: LocalCluster, record: Record
) -> None:
    """Proves: after a request that wrote, the signed LSN cookie sends the same
    client's next request to a node that has the write (the primary while replay is
    paused): found N times out of N. Another client without the cookie keeps
    getting the replica for its weighted share (1:1 here), so replica reads are not
    given up. Once replay resumes and the replica has passed the cookie's LSN, the
    cookie client is served by the replica again, and finds its row there."""
    client_a = Client()
    client_b = Client()
    served_a: Counter[str] = Counter()
    served_b: Counter[str] = Counter()
    stale_a = 0
    stale_b = 0
    before = replica_router.decisions()
    pk = 0
    for i in range(N):
        response = client_a.post("/write/")
        assert response.status_code == 200
        pk = response.json()["pk"]
        assert COOKIE in client_a.cookies
        body = client_a.get(f"/read/{pk}/").json()
        served_a[body["alias"]] += 1
        stale_a += not body["found"]
        body = client_b.get(f"/read/{paused[i % len(paused)]}/").json()
        served_b[body["alias"]] += 1
        stale_b += not body["found"]
    after = replica_router.decisions()
    assert COOKIE not in client_b.cookies

    record("cookie.sequences", N)
    record("cookie.stale_a", stale_a)
    record("cookie.replica_share_a_paused", round(share(served_a), 3))
    record("cookie.replica_share_b_paused", round(share(served_b), 3))
    assert stale_a == 0
    assert served_a["replica"] == 0  # the replica cannot have replayed the cookie's LSN
    assert stale_b == 0  # old rows were replicated before the pause
    assert_weighted_share(served_b)  # weights 1:1
    assert delta(before, after, "read_your_writes") >= N

    # Replay resumes: once the replica has passed the cookie's LSN, client A's reads
    # are spread again, and the replica serves its row.
    cluster.resume_replay()
    started = time.monotonic()
    after_resume: Counter[str] = Counter()
    stale_after = 0
    deadline = started + 20
    while after_resume["replica"] < 20 and time.monotonic() < deadline:
        body = client_a.get(f"/read/{pk}/").json()
        after_resume[body["alias"]] += 1
        stale_after += not body["found"]
        if not after_resume["replica"]:
            time.sleep(0.01)
    back_after = time.monotonic() - started
    record("cookie.seconds_until_replica_after_resume", round(back_after, 3))
    record("cookie.reads_after_resume", dict(after_resume))
    assert after_resume["replica"] >= 20, after_resume
    assert stale_after == 0


def _tamper(value: str) -> str:
    """The cookie value with one character of its signature changed."""
    last = value[-1]
    return value[:-1] + ("A" if last != "A" else "B")


def test_forged_garbled_or_expired_cookie_is_ignored(paused: list[int], record: Record) -> None:
    """Proves: a cookie with one character changed, a garbage value, a correctly
    signed value that is not an LSN, and an expired cookie are
    all ignored: no exception, 200, and the client's reads are weighted again (some
    reach the replica). The valid cookie, in contrast, keeps them on the primary.
    (COOKIE_MAX_AGE is 3 s: the valid cookie's 20 reads must fit in it on a loaded
    machine.)"""
    with router_settings(COOKIE_MAX_AGE=3):
        client = Client()
        pk = client.post("/write/").json()["pk"]
        valid = client.cookies[COOKIE].value
        before = replica_router.decisions()
        valid_served = Counter(client.get(f"/read/{pk}/").json()["alias"] for _ in range(20))
        assert valid_served == Counter({"default": 20})
        assert delta(before, replica_router.decisions(), "read_your_writes") >= 20

        signed_nonsense = HttpResponse()
        signed_nonsense.set_signed_cookie(COOKIE, "not-an-lsn", salt=middleware._SALT)

        def served_with(value: str) -> Counter[str]:
            served: Counter[str] = Counter()
            for _ in range(100):
                client.cookies[COOKIE] = value
                response = client.get(f"/read/{pk}/")
                assert response.status_code == 200
                served[response.json()["alias"]] += 1
            return served

        tampered = served_with(_tamper(valid))
        garbage = served_with("garbage!")
        nonsense = served_with(signed_nonsense.cookies[COOKIE].value)
        time.sleep(3.5)  # the signature's timestamp is now older than COOKIE_MAX_AGE
        expired = served_with(valid)
    for name, served in (
        ("tampered", tampered),
        ("garbage", garbage),
        ("signed_nonsense", nonsense),
        ("expired", expired),
    ):
        record(f"bad_cookie.{name}.replica_share", round(share(served), 3))
        assert served["replica"] > 0, (name, served)


# ------------------------------------------------------------ 5. use_primary


class _Boom(Exception):
    pass


def test_nested_use_primary_restores_state_exactly(healthy: LocalCluster) -> None:
    """Proves: inside ``use_primary()`` every read goes to the primary; an exception
    raised in a nested block and caught by the outer one leaves the outer block on
    the primary; leaving the outer block restores the previous state exactly (reads
    spread again), also inside a unit of work. The use_primary counter grows."""
    assert set(spread()) == {"default", "replica"}
    before_state = context.current()
    before = replica_router.decisions()
    with replica_router.use_primary():
        assert spread() == Counter({"default": 200})
        with pytest.raises(_Boom), replica_router.use_primary():
            assert spread() == Counter({"default": 200})
            raise _Boom
        assert spread() == Counter({"default": 200})
        try:
            with replica_router.use_primary(), replica_router.use_primary():
                raise _Boom
        except _Boom:
            pass
        assert spread() == Counter({"default": 200})
    assert context.current() is before_state
    assert set(spread()) == {"default", "replica"}
    assert delta(before, replica_router.decisions(), "use_primary") >= 4 * 200

    # The same inside a unit of work: its state comes back field for field.
    with replica_router.unit_of_work():
        outer = repr(context.current())
        with pytest.raises(_Boom), replica_router.use_primary():
            with replica_router.use_primary():
                assert spread(50) == Counter({"default": 50})
            raise _Boom
        assert repr(context.current()) == outer
        assert set(spread()) == {"default", "replica"}
        # A write inside use_primary keeps the unit pinned after the block.
        with replica_router.use_primary():
            create_row("up")
        assert spread() == Counter({"default": 200})
    assert set(spread()) == {"default", "replica"}


def test_use_primary_as_decorator_sync_and_async(healthy: LocalCluster) -> None:
    """Proves: ``@use_primary`` and ``@use_primary()`` route every read of a sync or
    async function to the primary, also when it raises, and restore the caller's
    state afterwards."""

    @replica_router.use_primary
    def bare() -> Counter[str]:
        return spread()

    @replica_router.use_primary()
    def called() -> Counter[str]:
        return spread()

    @replica_router.use_primary
    def failing() -> None:
        assert spread(50) == Counter({"default": 50})
        raise _Boom

    @replica_router.use_primary
    async def abare() -> Counter[str]:
        await asyncio.sleep(0)
        return spread()

    @replica_router.use_primary()
    async def afailing() -> None:
        assert spread(50) == Counter({"default": 50})
        raise _Boom

    async def run_async() -> tuple[Counter[str], Counter[str]]:
        inside = await abare()
        with pytest.raises(_Boom):
            await afailing()
        return inside, spread()

    before = replica_router.decisions()
    assert bare() == Counter({"default": 200})
    assert called() == Counter({"default": 200})
    with pytest.raises(_Boom):
        failing()
    assert set(spread()) == {"default", "replica"}
    inside, after_async = asyncio.run(run_async())
    assert inside == Counter({"default": 200})
    assert set(after_async) == {"default", "replica"}
    assert context.current() is None
    assert set(spread()) == {"default", "replica"}
    assert delta(before, replica_router.decisions(), "use_primary") >= 3 * 200 + 2 * 50


# ------------------------------------------------ 6. pin window outside a unit


def test_write_outside_a_unit_pins_for_pin_seconds(paused: list[int], record: Record) -> None:
    """Proves: a write outside any unit pins this context's reads to the primary for
    PIN_SECONDS (0.5 here): N write-then-read sequences are never stale; and after
    the last write the pin expires no earlier than PIN_SECONDS and reads reach the
    replica again soon after."""
    pin = 0.5
    served: Counter[str] = Counter()
    stale = 0
    with router_settings(PIN_SECONDS=pin):
        before = replica_router.decisions()
        for _ in range(N):
            pk = create_row("pin").pk
            alias, found = routed_read(pk)
            served[alias] += 1
            stale += not found
        after = replica_router.decisions()
        # The last write, timed: the pin starts between these two instants.
        t0 = time.monotonic()
        create_row("pin")
        t1 = time.monotonic()
        while time.monotonic() < t0 + pin * 0.8:
            assert router.db_for_read(ReplicationModel) == "default"
        while router.db_for_read(ReplicationModel) != "replica":
            assert time.monotonic() < t1 + pin + 2.0, "the pin did not expire"
        first_replica = time.monotonic()
    record("pin_window.sequences", N)
    record("pin_window.stale", stale)
    record("pin_window.expired_after_s", round(first_replica - t0, 3))
    assert stale == 0
    assert served == Counter({"default": N})
    assert delta(before, after, "pinned") >= N
    assert first_replica >= t0 + pin


# -------------------------------------------------------- 8. instance hints


def test_instance_loaded_from_replica_hints_reads_to_replica(
    healthy: LocalCluster,
) -> None:
    """Proves: an object loaded from the replica (while it is eligible) has its
    refresh and related-object reads hinted to the replica, every time, counted as
    ``instance_hint``; an object from the primary is hinted to the primary; and
    ``use_primary()`` still wins over the hint."""
    pks = seed_rows(3)
    healthy.wait_replayed()
    before = replica_router.decisions()

    obj = ReplicationModel.objects.using("replica").get(pk=pks[0])
    assert obj._state.db == "replica"
    for _ in range(100):
        obj.refresh_from_db()
        assert obj._state.db == "replica"

    perm_pk = Permission.objects.using("replica").values_list("pk", flat=True)[0]
    for _ in range(50):
        perm = Permission.objects.using("replica").get(pk=perm_pk)
        assert perm.content_type._state.db == "replica"

    primary_obj = ReplicationModel.objects.using("default").get(pk=pks[1])
    for _ in range(50):
        primary_obj.refresh_from_db()
        assert primary_obj._state.db == "default"
    after = replica_router.decisions()
    assert delta(before, after, "instance_hint") >= 200

    with replica_router.use_primary():
        obj.refresh_from_db()
        assert obj._state.db == "default"


def test_instance_hint_is_dropped_when_replica_is_not_eligible(
    paused: list[int],
) -> None:
    """Proves: the hint holds only while the replica is eligible. With
    MAX_LAG_BYTES 1 and replay paused, writes make the replica lag; an object loaded
    from it earlier is then refreshed from the primary, not from the lagging node."""
    obj = ReplicationModel.objects.using("replica").get(pk=paused[0])
    # Not router_settings(): with a lag limit the paused replica never shows "up".
    # No herd policy either: with it a lagging replica still serves plain reads.
    limits = {**STALE_OK, "MAX_LAG_BYTES": 1, "LAG_CEILING_SECONDS": None}
    with override_settings(REPLICA_ROUTER=limits):
        seed_rows(3)

        def replica_lagging() -> bool:
            return {n["alias"]: n["state"] for n in replica_router.status()}["replica"] == "lagging"

        wait_until(replica_lagging, timeout=10)
        before = replica_router.decisions()
        for _ in range(20):
            obj._state.db = "replica"
            obj.refresh_from_db()
            assert obj._state.db == "default"
        assert delta(before, replica_router.decisions(), "instance_hint") == 0
