"""Read-your-writes across requests, by WAL position instead of a guessed time window.

After a request that wrote, the primary's WAL position (``pg_current_wal_lsn()``, one
round trip, only then) goes into a signed cookie. On the client's next requests,
reads go only to replicas whose last probed replay position has reached it, else to
the primary. A forged, expired or garbled cookie is ignored: at worst that client's
reads go to the primary.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponseBase

from replica_router import _runtime, context

__all__ = ["ReadYourWritesMiddleware", "parse_lsn"]

logger = logging.getLogger("replica_router")

_SALT = "replica_router.lsn"


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` -> int. Raises ``ValueError`` on anything else."""
    hi, lo = text.split("/")
    h, low = int(hi, 16), int(lo, 16)
    if not (0 <= h <= 0xFFFFFFFF and 0 <= low <= 0xFFFFFFFF):
        raise ValueError(text)
    return (h << 32) | low


def _current_lsn(alias: str) -> int | None:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            row = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("read-your-writes: could not read the primary's WAL position: %s", exc)
        return None
    return parse_lsn(row[0]) if row else None


class ReadYourWritesMiddleware:
    """Keeps a client's reads on nodes that have its last write. Sync and async."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = self._before(request)
        try:
            response = self.get_response(request)  # type: ignore[misc]
            if context.wrote_in_unit():
                self._after(response, _current_lsn(_runtime.get_settings().primary))
        finally:
            context.reset(token)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        token = self._before(request)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
            if context.wrote_in_unit():
                lsn = await sync_to_async(_current_lsn)(_runtime.get_settings().primary)
                self._after(response, lsn)
        finally:
            context.reset(token)
        return response

    def _before(self, request: HttpRequest) -> Any:
        s = _runtime.get_settings()
        lsn: int | None = None
        if s.cookie_name in request.COOKIES:
            # default=None: a forged, expired or garbled cookie is ignored, never raised.
            value = request.get_signed_cookie(
                s.cookie_name, default=None, salt=_SALT, max_age=s.cookie_max_age
            )
            if value is not None:
                try:
                    lsn = parse_lsn(value)
                except ValueError:
                    lsn = None
        return context.set_min_lsn(lsn)

    def _after(self, response: HttpResponseBase, lsn: int | None) -> None:
        if lsn is None:
            return
        s = _runtime.get_settings()
        text = f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
        response.set_signed_cookie(
            s.cookie_name,
            text,
            salt=_SALT,
            max_age=s.cookie_max_age,
            httponly=True,
            samesite="Lax",
        )
