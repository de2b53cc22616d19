"""Read-your-writes under concurrency: asyncio tasks, threads and async views.

Replay on the standby is paused (see ``tests/server/test_consistency.py``), so a read
routed to ``replica`` right after a write misses the row. Concurrent writers must
read their own writes every time, while concurrent readers that never wrote keep
getting the replica for their weighted share: one context's pin never leaks into
another's (``contextvars``, not thread-locals).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import Counter

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, router
from django.test import AsyncClient
from router.models import ReplicationModel

import replica_router
from replica_router import context
from tests.server.test_consistency import (
    COOKIE,
    N,
    Record,
    assert_weighted_share,
    create_row,
    delta,
    routed_read,
    share,
    spread,
)
from tests.support import LocalCluster

logger = logging.getLogger("tests.async")

TASKS = 50
THREADS = 16


async def aread(pk: int) -> tuple[str, bool]:
    """Route a read from async code (no I/O in the router) and run it there."""
    alias = router.db_for_read(ReplicationModel)
    assert alias is not None
    return alias, await ReplicationModel.objects.using(alias).filter(pk=pk).aexists()


async def close_executor_connections() -> None:
    """Close the connections that ``sync_to_async`` opened in asgiref's shared thread."""
    await sync_to_async(connections.close_all)()


# ------------------------------------------------------------ asyncio tasks


def test_asyncio_tasks_read_their_writes_and_do_not_pin_each_other(
    paused: list[int], record: Record
) -> None:
    """Proves: of 50 concurrent asyncio tasks, the 25 that write
    (``await acreate(...)``, half of them inside ``async with unit_of_work()``) then
    read via ``router.db_for_read`` find their row every time (N sequences in all),
    while the 25 that only read, running at the same time, are not pinned by the
    writers: each gets the replica for a share of its reads."""
    writers = TASKS // 2
    per_writer = max(1, N // writers)
    per_reader = max(per_writer, 40)  # enough for every reader to meet the replica

    async def writer(idx: int, first_write: asyncio.Event) -> tuple[Counter[str], int]:
        served: Counter[str] = Counter()
        stale = 0
        for _ in range(per_writer):
            if idx % 2:
                async with replica_router.unit_of_work():
                    obj = await ReplicationModel.objects.acreate(name="aw", count=1, average=1.0)
                    first_write.set()
                    alias, found = await aread(obj.pk)
            else:
                obj = await ReplicationModel.objects.acreate(name="aw", count=1, average=1.0)
                first_write.set()
                alias, found = await aread(obj.pk)
            served[alias] += 1
            stale += not found
        return served, stale

    async def reader(idx: int, first_write: asyncio.Event) -> tuple[Counter[str], int]:
        await first_write.wait()
        served: Counter[str] = Counter()
        missing = 0
        for i in range(per_reader):
            alias, found = await aread(paused[(idx + i) % len(paused)])
            served[alias] += 1
            missing += not found
        return served, missing

    async def main() -> tuple[list[tuple[Counter[str], int]], list[tuple[Counter[str], int]]]:
        first_write = asyncio.Event()
        try:
            w = [asyncio.create_task(writer(i, first_write)) for i in range(writers)]
            r = [asyncio.create_task(reader(i, first_write)) for i in range(TASKS - writers)]
            return await asyncio.gather(*w), await asyncio.gather(*r)
        finally:
            await close_executor_connections()

    before = replica_router.decisions()
    started = time.monotonic()
    # asyncio.run's main task, and so every task it creates, copies a fresh context.
    w_results, r_results = contextvars.Context().run(asyncio.run, main())
    elapsed = time.monotonic() - started
    after = replica_router.decisions()

    w_served = sum((s for s, _ in w_results), Counter[str]())
    r_served = sum((s for s, _ in r_results), Counter[str]())
    w_stale = sum(st for _, st in w_results)
    r_missing = sum(m for _, m in r_results)
    record("asyncio.write_sequences", writers * per_writer)
    record("asyncio.writer_stale", w_stale)
    record("asyncio.writer_replica_share", round(share(w_served), 3))
    record("asyncio.reader_replica_share", round(share(r_served), 3))
    record("asyncio.seconds", round(elapsed, 2))
    assert w_stale == 0
    assert w_served == Counter({"default": writers * per_writer})
    assert r_missing == 0  # old rows: on both nodes
    assert all(s["replica"] > 0 for s, _ in r_results), [dict(s) for s, _ in r_results]
    assert_weighted_share(r_served)
    assert delta(before, after, "pinned") >= writers * per_writer
    assert context.current() is None


def test_async_use_primary_nested_with_exception(healthy: LocalCluster) -> None:
    """Proves: ``async with use_primary()`` nests and restores the task's state
    exactly, also when the inner block raises; concurrent tasks are unaffected."""

    async def nested(release: asyncio.Event) -> None:
        async with replica_router.use_primary():
            with pytest.raises(KeyError):
                async with replica_router.use_primary():
                    await release.wait()
                    assert spread(50) == Counter({"default": 50})
                    raise KeyError("inner")
            assert spread(50) == Counter({"default": 50})
        assert context.current() is None
        assert set(spread()) == {"default", "replica"}

    async def bystander(release: asyncio.Event) -> Counter[str]:
        await asyncio.sleep(0)  # the other task is inside its blocks now
        served = spread()
        release.set()
        return served

    async def main() -> Counter[str]:
        release = asyncio.Event()
        t = asyncio.create_task(nested(release))
        served = await bystander(release)
        await t
        return served

    assert set(contextvars.Context().run(asyncio.run, main())) == {"default", "replica"}


# ------------------------------------------------------------------ threads


def test_threads_read_their_writes_and_do_not_pin_each_other(
    paused: list[int], record: Record
) -> None:
    """Proves: of 16 threads, the 8 that write then read find their row every time
    (N sequences in all), while the 8 that only read are not pinned by the writers
    nor by the pinned main thread: each gets the replica for a share of its reads."""
    writers = THREADS // 2
    per_thread = max(1, N // writers)
    per_reader = max(per_thread, 60)
    barrier = threading.Barrier(THREADS)
    first_write = threading.Event()
    results: dict[str, tuple[Counter[str], int]] = {}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        served: Counter[str] = Counter()
        stale = 0
        try:
            assert context.current() is None  # a thread starts with an empty context
            barrier.wait(timeout=30)
            for _ in range(per_thread):
                pk = create_row("tw").pk
                first_write.set()
                alias, found = routed_read(pk)
                served[alias] += 1
                stale += not found
            results[name] = (served, stale)
        except BaseException as exc:
            errors.append(exc)
        finally:
            first_write.set()
            connections.close_all()

    def reader(name: str) -> None:
        served: Counter[str] = Counter()
        missing = 0
        try:
            assert context.current() is None
            barrier.wait(timeout=30)
            assert first_write.wait(timeout=30)
            for i in range(per_reader):
                alias, found = routed_read(paused[i % len(paused)])
                served[alias] += 1
                missing += not found
            results[name] = (served, missing)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    # Pin the main thread: threads must not inherit it.
    create_row("main")
    assert spread(20) == Counter({"default": 20})

    threads = [
        threading.Thread(target=writer, args=(f"w{i}",), name=f"rr-writer-{i}")
        for i in range(writers)
    ] + [
        threading.Thread(target=reader, args=(f"r{i}",), name=f"rr-reader-{i}")
        for i in range(THREADS - writers)
    ]
    before = replica_router.decisions()
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    after = replica_router.decisions()
    assert not any(t.is_alive() for t in threads), "threads did not finish in 120 s"
    assert not errors, errors

    w = [results[f"w{i}"] for i in range(writers)]
    r = [results[f"r{i}"] for i in range(THREADS - writers)]
    w_served = sum((s for s, _ in w), Counter[str]())
    r_served = sum((s for s, _ in r), Counter[str]())
    w_stale = sum(st for _, st in w)
    record("threads.write_sequences", writers * per_thread)
    record("threads.writer_stale", w_stale)
    record("threads.writer_replica_share", round(share(w_served), 3))
    record("threads.reader_replica_share", round(share(r_served), 3))
    record("threads.seconds", round(elapsed, 2))
    assert w_stale == 0
    assert w_served == Counter({"default": writers * per_thread})
    assert sum(m for _, m in r) == 0
    assert all(s["replica"] > 0 for s, _ in r), [dict(s) for s, _ in r]
    assert_weighted_share(r_served)
    assert delta(before, after, "pinned") >= writers * per_thread


# ------------------------------------------------- async views + middleware


def test_async_views_cookie_round_trip(paused: list[int], record: Record) -> None:
    """Proves: through the middleware's async path (``AsyncClient``, async views),
    a client that wrote (/awrite/) gets the signed LSN cookie and its next request
    (/aread/<pk>/) finds the row every time, N times, while replay is paused; a
    client without the cookie still gets the replica for its weighted share."""

    async def main() -> tuple[Counter[str], int, Counter[str], int]:
        client_a = AsyncClient()
        client_b = AsyncClient()
        served_a: Counter[str] = Counter()
        served_b: Counter[str] = Counter()
        stale_a = 0
        missing_b = 0
        try:
            for i in range(N):
                response = await client_a.post("/awrite/")
                assert response.status_code == 200
                pk = response.json()["pk"]
                assert COOKIE in client_a.cookies
                response = await client_a.get(f"/aread/{pk}/")
                assert response.status_code == 200
                body = response.json()
                served_a[body["alias"]] += 1
                stale_a += not body["found"]
                body = (await client_b.get(f"/aread/{paused[i % len(paused)]}/")).json()
                served_b[body["alias"]] += 1
                missing_b += not body["found"]
            assert COOKIE not in client_b.cookies
        finally:
            await close_executor_connections()
        return served_a, stale_a, served_b, missing_b

    before = replica_router.decisions()
    started = time.monotonic()
    served_a, stale_a, served_b, missing_b = contextvars.Context().run(asyncio.run, main())
    elapsed = time.monotonic() - started
    after = replica_router.decisions()
    record("async_views.sequences", N)
    record("async_views.stale_a", stale_a)
    record("async_views.replica_share_a", round(share(served_a), 3))
    record("async_views.replica_share_b", round(share(served_b), 3))
    record("async_views.seconds", round(elapsed, 2))
    assert stale_a == 0
    assert served_a["replica"] == 0
    assert missing_b == 0
    assert_weighted_share(served_b)
    assert delta(before, after, "read_your_writes") >= N
