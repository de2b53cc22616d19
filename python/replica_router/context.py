"""Per-context routing state: pins after writes, ``use_primary``, units of work.

Everything lives in one :class:`contextvars.ContextVar` holding an immutable
:class:`RouteState` (or ``None`` outside any unit of work). Each change sets a new value instead of mutating the
old one, so state follows the flow of control: it never leaks to another thread,
request, asyncio task or ``sync_to_async`` call, and a child task's write does not
pin its siblings. (``asgiref``'s ``sync_to_async`` copies changes back to the
caller, so ``await obj.asave()`` does pin the awaiting code.)
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from replica_router import _core

__all__ = [
    "RouteState",
    "current",
    "note_write",
    "unit_of_work",
    "use_primary",
]

F = TypeVar("F", bound=Callable[..., Any])

# Default pin window after a write made outside any unit of work (seconds); conf may
# change it through REPLICA_ROUTER["PIN_SECONDS"].
pin_seconds: float = 5.0
#: Under a test runner a write outside any unit of work pins until the test ends
#: (``testing.end_test``) instead of for ``pin_seconds``: no pin outlives its test.
test_units: bool = False


#: One context's routing state (frozen; ``replace()`` returns a changed copy). It is
#: a class of the Rust core so that the read path can inspect it without Python code.
RouteState = _core.RouteState


_state: contextvars.ContextVar[RouteState | None] = contextvars.ContextVar(
    "replica_router_state", default=None
)
# Set to its default in the importing context: CPython caches a variable's value per
# thread only when it finds it set, so every context copied from this one (asyncio
# tasks, ``copy_context()``) reads it on the router's hot path from that cache instead
# of searching the context's map for a variable that is not there (a request sets it
# anyway, ``begin_request``). A fresh thread has no context at all: fast either way.
_state.set(None)

#: The hot path reads this directly: ``current()`` is ``_state.get()``.
current = _state.get


def note_write() -> None:
    """Record a write: pin reads to the primary for the rest of the unit of work.

    Outside any unit the pin lasts ``PIN_SECONDS``, so it never stays forever.
    """
    st = _state.get()
    if st is None:
        if test_units:
            _state.set(RouteState(unit=True, pinned=True))
        else:
            _state.set(RouteState(pin_until=time.monotonic() + pin_seconds))
    elif st.unit:
        if not st.pinned:
            _state.set(st.replace(pinned=True))
    else:
        _state.set(st.replace(pin_until=time.monotonic() + pin_seconds))


def wrote_in_unit() -> bool:
    """Whether the current context wrote since its unit of work began (or recently)."""
    st = _state.get()
    return st is not None and st.is_pinned()


def set_min_lsn(lsn: int | None) -> contextvars.Token[RouteState | None]:
    """Require reads to see WAL up to ``lsn``; returns a token for :func:`reset`."""
    st = _state.get() or RouteState()
    return _state.set(st.replace(min_lsn=lsn))


def reset(token: contextvars.Token[RouteState | None]) -> None:
    """Restore the state a token was taken from."""
    try:
        _state.reset(token)
    except ValueError:
        # Created in another context (e.g. a generator resumed elsewhere): restore
        # the value, which is all a reset does.
        old = token.old_value
        _state.set(None if old is contextvars.Token.MISSING else old)


def begin_request() -> None:
    """``request_started`` receiver: every HTTP request is a unit of work."""
    _state.set(RouteState(unit=True))


def end_request() -> None:
    """``request_finished`` receiver: the unit is over, drop its pins."""
    _state.set(None)


def _carry_pin(inner: RouteState | None, outer: RouteState | None) -> RouteState | None:
    """The outer state, with a pin taken inside a block carried out of it."""
    if inner is None or not inner.is_pinned():
        return outer
    if outer is None:
        # A pin outside any unit is a time window.
        until = inner.pin_until if not inner.pinned else time.monotonic() + pin_seconds
        return RouteState(pin_until=until)
    if outer.unit:
        return outer if outer.pinned else outer.replace(pinned=True)
    until = inner.pin_until if not inner.pinned else time.monotonic() + pin_seconds
    return outer.replace(pin_until=max(outer.pin_until, until))


class _Block:
    """A context manager that is also a decorator for sync and async functions.

    Each entry keeps its own token, so one instance may be shared by threads and
    tasks when used as a decorator (every call makes a fresh block).
    """

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[RouteState | None]] = []

    def _enter_state(self, st: RouteState | None) -> RouteState:
        raise NotImplementedError

    def _exit_state(self, inner: RouteState | None, outer: RouteState | None) -> RouteState | None:
        raise NotImplementedError

    def __enter__(self) -> None:
        self._tokens.append(_state.set(self._enter_state(_state.get())))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._tokens.pop()
        inner = _state.get()
        reset(token)
        outer = _state.get()
        after = self._exit_state(inner, outer)
        if after is not outer:
            _state.set(after)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        factory = type(self)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with factory():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with factory():
                return func(*args, **kwargs)

        return cast(F, wrapper)


class _UsePrimary(_Block):
    def _enter_state(self, st: RouteState | None) -> RouteState:
        st = st or RouteState()
        return st.replace(primary_depth=st.primary_depth + 1)

    def _exit_state(self, inner: RouteState | None, outer: RouteState | None) -> RouteState | None:
        return _carry_pin(inner, outer)


class _UnitOfWork(_Block):
    def _enter_state(self, st: RouteState | None) -> RouteState:
        if st is not None and st.unit:
            return st  # nested: join the outer unit
        depth = st.primary_depth if st is not None else 0
        return RouteState(unit=True, primary_depth=depth)

    def _exit_state(self, inner: RouteState | None, outer: RouteState | None) -> RouteState | None:
        if outer is not None and outer.unit:
            return _carry_pin(inner, outer)  # a nested unit's writes pin the outer one
        return outer  # the unit is over: its pins end with it


@overload
def use_primary(func: F, /) -> F: ...
@overload
def use_primary() -> _UsePrimary: ...
def use_primary(func: F | None = None, /) -> F | _UsePrimary:
    """Send every read in the block (or decorated function) to the primary.

    Works as ``with use_primary():``, ``async with use_primary():``, ``@use_primary``
    and ``@use_primary()`` on sync and async functions. Nesting is safe: leaving a
    block restores the outer state exactly, also after an exception; a write made
    inside keeps the unit of work pinned afterwards.
    """
    block = _UsePrimary()
    return block(func) if func is not None else block


@overload
def unit_of_work(func: F, /) -> F: ...
@overload
def unit_of_work() -> _UnitOfWork: ...
def unit_of_work(func: F | None = None, /) -> F | _UnitOfWork:
    """Delimit a unit of work outside HTTP requests (Celery tasks, commands, scripts).

    After a write inside it, reads go to the primary until the unit ends; then the pin
    is dropped. HTTP requests are units of work already (through Django's request
    signals). Nested units join the outer one.
    """
    block = _UnitOfWork()
    return block(func) if func is not None else block
