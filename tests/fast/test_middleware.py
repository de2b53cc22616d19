"""``ReadYourWritesMiddleware`` cookie handling, with Django's ``RequestFactory`` and
no database.

The one query the middleware makes (the primary's WAL position after a request
that wrote) is replaced by a fixed position, so these tests prove the signing and
the parsing: the view sees the position of a valid cookie as its ``min_lsn``, and
a tampered, garbled, foreign or expired cookie is ignored (``min_lsn`` None: reads
go by the usual rules, at worst to the primary), never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http.cookies import Morsel
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from replica_router import context, middleware
from replica_router.middleware import ReadYourWritesMiddleware, parse_lsn
from tests.support import router_settings

pytestmark = pytest.mark.usefixtures("offline")

COOKIE = "replica_router_lsn"
LSN_TEXT = "16/B374D848"
LSN = 0x16_B374D848


@pytest.fixture(autouse=True)
def primary_at_lsn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The primary's ``pg_current_wal_lsn()`` is ``LSN_TEXT``, without a server."""
    monkeypatch.setattr(middleware, "_current_lsn", lambda alias: LSN)


class View:
    """A sync view that records the routing state it ran with; writes on demand."""

    def __init__(self, write: bool = False) -> None:
        self.write = write
        self.min_lsn: list[int | None] = []

    def __call__(self, request: HttpRequest) -> HttpResponse:
        st = context.current()
        self.min_lsn.append(None if st is None else st.min_lsn)
        if self.write:
            context.note_write()  # what db_for_write does
        return HttpResponse("ok")


def get(cookie: str | None = None, name: str = COOKIE) -> HttpRequest:
    request = RequestFactory().get("/")
    if cookie is not None:
        request.COOKIES[name] = cookie
    return request


def cookie_after_write(name: str = COOKIE) -> Morsel[str]:
    """The cookie the middleware sets after a request that wrote."""
    response = ReadYourWritesMiddleware(View(write=True))(get())
    return response.cookies[name]


def seen_with(cookie: str | None, name: str = COOKIE) -> int | None:
    """The ``min_lsn`` a view sees on a request carrying ``cookie``."""
    view = View()
    response = ReadYourWritesMiddleware(view)(get(cookie, name))
    assert response.status_code == 200
    assert name not in response.cookies  # no write, no cookie
    return view.min_lsn[0]


def tamper(value: str) -> str:
    """The cookie value with the last character of its signature changed."""
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def test_parse_lsn() -> None:
    """Proves: ``parse_lsn`` reads PostgreSQL's ``hi/lo`` hex form and refuses
    anything else."""
    assert parse_lsn(LSN_TEXT) == LSN
    assert parse_lsn("0/0") == 0
    assert parse_lsn("FFFFFFFF/FFFFFFFF") == 2**64 - 1
    for bad in ("", "16", "16/", "1/2/3", "zz/1", "100000000/0", "0/-1", "not-an-lsn"):
        with pytest.raises(ValueError):
            parse_lsn(bad)


def test_a_write_sets_a_signed_cookie_that_the_next_request_honours() -> None:
    """Proves: after a request that wrote, the response carries a signed, HttpOnly,
    SameSite=Lax cookie with COOKIE_MAX_AGE; the client's next request runs its
    view with that position as ``min_lsn``; the routing state is restored after."""
    morsel = cookie_after_write()
    assert LSN_TEXT in morsel.value and morsel.value != LSN_TEXT  # signed, not bare
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["max-age"] == 300
    assert seen_with(morsel.value) == LSN
    assert context.current() is None


def test_no_write_no_cookie_and_no_cookie_no_token() -> None:
    """Proves: a request that did not write gets no cookie, and a request without
    the cookie runs with no read-your-writes position."""
    assert seen_with(None) is None


def test_no_cookie_when_the_primary_position_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: when the primary's position cannot be read (``_current_lsn`` gives
    None, as when the primary is unreachable) the write's response sets no cookie."""
    monkeypatch.setattr(middleware, "_current_lsn", lambda alias: None)
    response = ReadYourWritesMiddleware(View(write=True))(get())
    assert response.status_code == 200
    assert COOKIE not in response.cookies


def signed_with(value: str, salt: str) -> str:
    response = HttpResponse()
    response.set_signed_cookie(COOKIE, value, salt=salt)
    return response.cookies[COOKIE].value


BAD_COOKIES: dict[str, Callable[[str], str]] = {
    "tampered": tamper,
    "garbage": lambda valid: "garbage!",
    "empty": lambda valid: "",
    "unsigned-lsn": lambda valid: LSN_TEXT,
    "signed-not-an-lsn": lambda valid: signed_with("not-an-lsn", middleware._SALT),
    "signed-with-another-salt": lambda valid: signed_with(LSN_TEXT, "another.salt"),
}


@pytest.mark.parametrize("make", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
def test_a_bad_cookie_is_ignored(make: Callable[[str], str]) -> None:
    """Proves: a forged, garbled, unsigned or foreign cookie raises nothing, the
    response is 200, and the view runs with no read-your-writes position."""
    assert seen_with(make(cookie_after_write().value)) is None


def test_an_expired_cookie_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: a correctly signed cookie older than COOKIE_MAX_AGE is ignored."""
    with router_settings(COOKIE_MAX_AGE=60):
        fresh = cookie_after_write().value
        with monkeypatch.context() as m:
            m.setattr(
                signing.TimestampSigner,
                "timestamp",
                lambda self: signing.b62_encode(int(time.time()) - 61),
            )
            old = cookie_after_write().value
        assert seen_with(fresh) == LSN
        assert seen_with(old) is None


def test_cookie_name_and_max_age_follow_the_settings() -> None:
    """Proves: COOKIE_NAME and COOKIE_MAX_AGE name and bound the cookie; a cookie
    under the default name is then not read."""
    with router_settings(COOKIE_NAME="rr", COOKIE_MAX_AGE=30):
        morsel = cookie_after_write(name="rr")
        assert morsel["max-age"] == 30
        assert seen_with(morsel.value, name="rr") == LSN
        assert seen_with(morsel.value, name=COOKIE) is None


def test_state_is_restored_when_the_view_raises() -> None:
    """Proves: the routing state is put back even when the view raises."""

    def failing(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("view failed")

    valid = cookie_after_write().value
    with pytest.raises(RuntimeError):
        ReadYourWritesMiddleware(failing)(get(valid))
    assert context.current() is None


def test_async_views_round_trip() -> None:
    """Proves: with an async view the middleware is async too, sets the cookie after
    a write and hands its position to the next request's view."""
    seen: list[Any] = []

    async def awrite(request: HttpRequest) -> HttpResponse:
        context.note_write()
        return HttpResponse("ok")

    async def aread(request: HttpRequest) -> HttpResponse:
        st = context.current()
        seen.append(None if st is None else st.min_lsn)
        return HttpResponse("ok")

    async def main() -> None:
        writer = ReadYourWritesMiddleware(awrite)
        assert iscoroutinefunction(writer)
        value = (await writer(get())).cookies[COOKIE].value
        await ReadYourWritesMiddleware(aread)(get(value))
        await ReadYourWritesMiddleware(aread)(get(tamper(value)))

    asyncio.run(main())
    assert seen == [LSN, None]
