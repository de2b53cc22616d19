"""``replica_router.context``: use_primary, units of work and pins, with no server.

The routing state is one ``ContextVar`` holding a frozen ``RouteState``; these
tests read it directly (``context.current()``), so they need no database and no
cluster: what a read would do with each state is the core's rule, tested in Rust
and, against real servers, in ``tests/server``.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
from asgiref.sync import sync_to_async

from replica_router import context, unit_of_work, use_primary
from replica_router.context import RouteState


class Boom(Exception):
    pass


def depth() -> int:
    st = context.current()
    return 0 if st is None else st.primary_depth


def pinned() -> bool:
    st = context.current()
    return st is not None and st.is_pinned()


@pytest.fixture(autouse=True)
def no_test_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production behaviour: a write outside a unit pins for ``PIN_SECONDS``."""
    monkeypatch.setattr(context, "test_units", False)
    monkeypatch.setattr(context, "pin_seconds", 5.0)


def test_use_primary_nests_and_restores_the_outer_state_exactly() -> None:
    """Proves: each nested ``use_primary()`` adds one level; leaving a block, also by
    an exception caught outside it, gives back the very state object it started
    from."""
    assert context.current() is None
    with use_primary():
        outer = context.current()
        assert depth() == 1
        with pytest.raises(Boom), use_primary():
            assert depth() == 2
            with use_primary():
                assert depth() == 3
            assert depth() == 2
            raise Boom
        assert context.current() is outer
        try:
            with use_primary(), use_primary():
                raise Boom
        except Boom:
            pass
        assert context.current() is outer
    assert context.current() is None


def test_use_primary_inside_a_unit_restores_the_unit() -> None:
    """Proves: inside a unit of work, a ``use_primary()`` block that raises gives the
    unit back field for field, still unpinned."""
    with unit_of_work():
        before = context.current()
        with pytest.raises(Boom), use_primary():
            raise Boom
        assert context.current() is before
        assert before is not None and before.unit and not before.is_pinned()


def test_use_primary_as_decorator_sync_and_async() -> None:
    """Proves: ``@use_primary`` and ``@use_primary()`` put sync and async functions
    in a block for each call, also when they raise, and leave no state behind."""

    @use_primary
    def bare() -> int:
        return depth()

    @use_primary()
    def called() -> int:
        return depth()

    @use_primary
    def failing() -> None:
        raise Boom

    @use_primary
    async def abare() -> int:
        await asyncio.sleep(0)
        return depth()

    @use_primary()
    async def afailing() -> None:
        raise Boom

    async def run_async() -> int:
        inside = await abare()
        with pytest.raises(Boom):
            await afailing()
        assert context.current() is None
        return inside

    assert (bare(), called()) == (1, 1)
    with pytest.raises(Boom):
        failing()
    assert asyncio.run(run_async()) == 1
    with use_primary():
        assert bare() == 2
    assert context.current() is None
    assert bare.__name__ == "bare" and abare.__name__ == "abare"


def test_async_with_use_primary() -> None:
    """Proves: ``async with use_primary():`` nests and restores like ``with``."""

    async def main() -> None:
        async with use_primary():
            assert depth() == 1
            with pytest.raises(Boom):
                async with use_primary():
                    assert depth() == 2
                    raise Boom
            assert depth() == 1
        assert context.current() is None

    asyncio.run(main())


def test_a_write_in_a_unit_pins_until_the_unit_ends() -> None:
    """Proves: a write inside ``unit_of_work()`` pins the unit (without a time
    window), a nested unit joins the outer one, and the pin ends with the unit."""
    with unit_of_work():
        assert not pinned()
        context.note_write()
        st = context.current()
        assert st is not None and st.unit and st.pinned and st.pin_until == 0.0
        with unit_of_work():
            assert context.current() is st
        assert pinned()
    assert context.current() is None


def test_a_write_in_a_nested_unit_or_use_primary_pins_the_outer_unit() -> None:
    """Proves: a write inside a nested unit, or inside ``use_primary()`` within a
    unit, keeps the outer unit pinned after the inner block."""
    with unit_of_work():
        with unit_of_work():
            context.note_write()
        assert pinned()
    with unit_of_work():
        with use_primary():
            context.note_write()
        assert pinned() and depth() == 0
    assert context.current() is None


def test_unit_of_work_as_decorator() -> None:
    """Proves: ``@unit_of_work`` gives each call its own unit (a pin made by one call
    is gone at the next) and leaves nothing behind, for sync and async functions."""
    seen: list[bool] = []

    @unit_of_work
    def task(write: bool) -> None:
        seen.append(pinned())
        if write:
            context.note_write()
        seen.append(pinned())

    @unit_of_work()
    async def atask() -> bool:
        context.note_write()
        return pinned()

    task(True)
    task(False)
    assert seen == [False, True, False, False]
    assert asyncio.run(atask()) is True
    assert context.current() is None


def test_a_write_outside_any_unit_pins_for_pin_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: a write outside any unit pins this context for ``PIN_SECONDS`` only:
    pinned at once, no longer after the window."""
    monkeypatch.setattr(context, "pin_seconds", 0.05)
    before = time.monotonic()
    context.note_write()
    st = context.current()
    assert st is not None and not st.unit and not st.pinned
    assert before + 0.05 <= st.pin_until <= time.monotonic() + 0.05
    assert pinned()
    time.sleep(0.06)
    assert not pinned()


def test_a_pin_taken_inside_use_primary_outside_a_unit_outlives_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proves: a write inside ``use_primary()`` with no unit around it leaves a time
    pin after the block (reads after it must still see the write)."""
    monkeypatch.setattr(context, "pin_seconds", 5.0)
    with use_primary():
        context.note_write()
    st = context.current()
    assert st is not None and st.primary_depth == 0 and st.is_pinned()
    assert st.pin_until > time.monotonic() + 4


def test_under_a_test_runner_a_write_pins_until_the_test_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proves: with ``test_units`` (set under Django's test runners) a write outside
    any unit pins like a unit (no time window), and ``end_request`` ends it."""
    monkeypatch.setattr(context, "test_units", True)
    context.note_write()
    st = context.current()
    assert st is not None and st.unit and st.pinned and st.pin_until == 0.0
    context.end_request()
    assert context.current() is None


def test_request_signals_make_each_request_a_unit() -> None:
    """Proves: ``begin_request`` starts an unpinned unit and ``end_request`` drops
    it with its pins."""
    context.begin_request()
    st = context.current()
    assert st is not None and st.unit and not st.is_pinned()
    context.note_write()
    assert context.wrote_in_unit()
    context.end_request()
    assert context.current() is None and not context.wrote_in_unit()


def test_min_lsn_token_restores_the_state() -> None:
    """Proves: ``set_min_lsn`` adds the read-your-writes position to the state and
    ``reset(token)`` restores the previous state, also when the token was taken
    in another context (a generator or callback resumed elsewhere)."""
    with unit_of_work():
        outer = context.current()
        token = context.set_min_lsn(0x16_B374D848)
        st = context.current()
        assert st is not None and st.min_lsn == 0x16_B374D848 and st.unit
        context.reset(token)
        assert context.current() is outer

    token = contextvars.copy_context().run(context.set_min_lsn, 7)
    context.set_min_lsn(9)
    context.reset(token)  # taken in another context: the old value comes back
    assert context.current() is None


def test_asyncio_tasks_do_not_pin_each_other() -> None:
    """Proves: a write in one asyncio task pins neither its sibling nor its parent;
    each task starts from a copy of the parent's state."""

    async def writer() -> bool:
        context.note_write()
        await asyncio.sleep(0.01)
        return pinned()

    async def reader(started: asyncio.Event) -> bool:
        started.set()
        await asyncio.sleep(0.02)  # the writer has written by now
        return pinned()

    async def main() -> tuple[bool, bool, bool, int]:
        with unit_of_work(), use_primary():
            started = asyncio.Event()
            wrote, read = await asyncio.gather(writer(), reader(started))
            return wrote, read, pinned(), depth()

    assert asyncio.run(main()) == (True, False, False, 1)


def test_sync_to_async_carries_a_pin_back_to_the_awaiting_code() -> None:
    """Proves: a write in code run by ``sync_to_async`` (how ``await obj.asave()``
    runs) pins the awaiting unit: asgiref copies the context back."""

    async def main() -> tuple[bool, bool]:
        with unit_of_work():
            before = pinned()
            await sync_to_async(context.note_write)()
            return before, pinned()

    assert asyncio.run(main()) == (False, True)


def test_threads_do_not_share_state() -> None:
    """Proves: a new thread starts with no state whatever the spawning thread holds,
    and its writes and blocks never reach the spawning thread."""
    seen: dict[str, object] = {}

    def work() -> None:
        seen["start"] = context.current()
        with unit_of_work():
            context.note_write()
            seen["pinned"] = pinned()
        context.note_write()  # a time pin, in this thread only

    with unit_of_work(), use_primary():
        mine = context.current()
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert context.current() is mine
    assert seen == {"start": None, "pinned": True}
    assert context.current() is None


def test_one_decorator_instance_is_safe_across_threads() -> None:
    """Proves: a function decorated once and called from 8 threads at a time gets a
    fresh block per call: every call sees depth 1, none is left behind."""
    barrier = threading.Barrier(8)
    depths: list[int] = []
    lock = threading.Lock()

    @use_primary
    def work() -> None:
        barrier.wait(timeout=5)
        with lock:
            depths.append(depth())
        barrier.wait(timeout=5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert depths == [1] * 8


def test_route_state_is_the_cores_class() -> None:
    """Proves: the context's state is the core's frozen ``RouteState`` (the read
    path inspects it without Python code)."""
    from replica_router import _core

    assert RouteState is _core.RouteState
    with unit_of_work():
        assert isinstance(context.current(), _core.RouteState)
