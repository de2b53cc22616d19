"""Views: readiness for load balancers, a staff status page, Prometheus metrics.

Mount them with ``path("replicas/", include("replica_router.urls"))``; see
:mod:`replica_router.urls` for who may see what. Every view reads this process's
``status()``: no view queries a database.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from replica_router.roles import primary_line, roles
from replica_router.states import ANSWERING, PAGE_COLUMNS, STATUS_FIELDS, WRITES
from replica_router.verdict import UNAVAILABLE, Verdict
from replica_router.verdict import verdict as overall

__all__ = ["Overall", "metrics", "overall", "readiness", "status_page"]

logger = logging.getLogger("replica_router")

#: The one word anonymous callers of the readiness view get: the cluster verdict
#: (:func:`overall` is :func:`replica_router.verdict.verdict`).
Overall = Verdict


def _nodes() -> list[dict[str, Any]]:
    """This process's status; right after a cold start, wait (bounded) for first answers
    so that a new worker does not report ``unavailable`` only because it never probed."""
    from replica_router import _runtime

    cluster = _runtime.get_cluster()
    cluster.wait_probed()
    # Plain dicts from here on: the views read optional keys with .get().
    return [dict(n) for n in cluster.status()]


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@require_safe
@never_cache
def readiness(request: HttpRequest) -> JsonResponse:
    """``200 {"status": "ok"|"degraded"}`` while the primary is up, else
    ``503 {"status": "unavailable"}``. Anonymous callers get that word only; staff also
    get each node's alias, state, roles, lag and why a lagging node is out of reads
    (never a host or an error text)."""
    try:
        nodes = _nodes()
    except ImproperlyConfigured:
        logger.exception("replica_router: readiness cannot build the cluster")
        nodes = []
    word = overall(nodes)
    body: dict[str, Any] = {"status": word}
    if _is_staff(request):
        keys = [f["name"] for f in STATUS_FIELDS if f["ready"]]
        body["nodes"] = [{k: n.get(k) for k in keys} for n in nodes]
    return JsonResponse(body, status=503 if word == UNAVAILABLE else 200)


# ------------------------------------------------------------------ status page


def _bytes(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _when(unix: float | None, now: float) -> str:
    if unix is None:
        return "—"
    at = datetime.fromtimestamp(unix, tz=timezone.utc).strftime("%H:%M:%S UTC")
    return f"{at} ({max(0.0, now - unix):.0f} s ago)"


#: One part of a status page cell: text, in an element (``tag``, ``css``) or bare.
Part = dict[str, Any]


def _el(tag: str, text: Any = "", css: str = "") -> Part:
    return {"tag": tag, "css": css, "text": text}


def _text(text: Any) -> Part:
    return {"tag": "", "css": "", "text": text}


def _muted(text: Any) -> Part:
    return _el("div", text, "rr-muted")


def _live(n: dict[str, Any], value: Any) -> Any:
    # A node that is not answering keeps its last lag in status(); showing it as the
    # current lag would read as "caught up" for a dead standby.
    return value if n.get("state") in ANSWERING else None


def _reasons(value: Any) -> list[Part]:
    reads = sorted(
        ((reason, count) for reason, count in (value or {}).items() if count),
        key=lambda rc: -rc[1],
    )
    return [_muted(f"{reason}: {count}") for reason, count in reads]


#: How the page shows a key (the ``show`` of its ``page`` in the core's table):
#: (value, the node, the key's label, now) -> the cell's parts.
SHOW: dict[str, Callable[[Any, dict[str, Any], str, float], list[Part]]] = {
    "text": lambda v, n, label, now: [_text(v)],
    "address": lambda v, n, label, now: [_muted(f"{v or 'local socket'}:{n.get('port')}")],
    "badge": lambda v, n, label, now: [_el("span", v, f"rr-badge rr-{v}")],
    "flag": lambda v, n, label, now: [_text(" "), _muted_span(f"({label})")] if v else [],
    "reason": lambda v, n, label, now: [_el("div", v, "rr-lag-reason")] if v else [],
    "slash": lambda v, n, label, now: [_text(f" / {v or '—'}")],
    "badge_up": lambda v, n, label, now: (
        [_text(" "), _el("span", label, "rr-badge rr-up")] if v else []
    ),
    "mismatch": lambda v, n, label, now: (
        [_text(" "), _el("span", label, "rr-badge rr-down")]
        if v and not n.get("primary_now")
        else []
    ),
    "connections": lambda v, n, label, now: (
        [_muted(f"connections of {v}")] if v and v != n.get("alias") else []
    ),
    "bytes": lambda v, n, label, now: [_text(_bytes(_live(n, v)))],
    "seconds": lambda v, n, label, now: [_muted(_seconds(_live(n, v)))],
    "ms": lambda v, n, label, now: [_text("—" if v is None else f"{v:.1f} ms")],
    "count": lambda v, n, label, now: [_text(v or 0)],
    "reasons": lambda v, n, label, now: _reasons(v),
    "note": lambda v, n, label, now: [] if v is None else [_muted(f"{label}: {v}")],
    "when": lambda v, n, label, now: [_text(_when(v, now))],
    "strong": lambda v, n, label, now: (
        [_el("strong", v), _el("br")] if v and n.get("last_error") else []
    ),
    "error": lambda v, n, label, now: [_text(v or "—")],
}
#: The class of a cell that shows a key with this ``show``.
CELL_CLASS = {"error": "rr-error"}


def _muted_span(text: str) -> Part:
    return _el("span", text, "rr-muted")


def _row(n: dict[str, Any], now: float) -> dict[str, Any]:
    """One node's row: a cell per page column, each the parts of the keys the core's
    table shows there (``STATUS_FIELDS``), in order."""
    cells = []
    for column in PAGE_COLUMNS:
        parts: list[Part] = []
        css = ""
        for f in STATUS_FIELDS:
            page = f["page"]
            if page is None or page["column"] != column:
                continue
            label = f["name"].replace("_", " ")
            parts += SHOW[page["show"]](n.get(f["name"]), n, label, now)
            css = css or CELL_CLASS.get(page["show"], "")
        cells.append({"parts": parts, "css": css})
    return {"alias": n["alias"], "state": n.get("state"), "cells": cells}


def _admin_context(request: HttpRequest) -> dict[str, Any] | None:
    """The admin's own page context when the admin is installed and its URLs are
    mounted (its base template links to them), else ``None``."""
    if not apps.is_installed("django.contrib.admin"):
        return None
    from django.contrib import admin

    try:
        index = reverse("admin:index")
    except NoReverseMatch:
        return None
    context: dict[str, Any] = admin.site.each_context(request)
    context["admin_index_url"] = index
    return context


def _login_url() -> str | None:
    try:
        url: str = reverse("admin:login")
        return url
    except NoReverseMatch:
        return None


@require_safe
@never_cache
def status_page(
    request: HttpRequest,
    refresh_seconds: float = 5,
    template_name: str | None = None,
) -> HttpResponse:
    """Staff only: one row per node (state, roles, lag, latency, reads by reason, last
    error), refreshing itself every ``refresh_seconds`` (``0``: never).

    In the admin's look (``admin/base_site.html``) when ``django.contrib.admin`` is
    installed and mounted, else a standalone page. Anonymous callers are sent to the
    admin's login when there is one; everyone else who is not staff gets 403.
    """
    if not _is_staff(request):
        user = getattr(request, "user", None)
        login = _login_url()
        if login is not None and (user is None or not user.is_authenticated):
            from django.contrib.auth.views import redirect_to_login

            return redirect_to_login(request.get_full_path(), login)
        raise PermissionDenied("staff only")
    now = time.time()
    try:
        nodes = _nodes()
        decisions: dict[str, int] = _cluster_decisions()
        primary_now: str | None = primary_line(roles())
        error = None
    except ImproperlyConfigured as exc:
        nodes, decisions, primary_now, error = [], {}, None, str(exc)
    word = overall(nodes)
    admin_context = _admin_context(request)
    context: dict[str, Any] = {
        **(admin_context or {}),
        "title": "Database replicas",
        "overall": word,
        "columns": PAGE_COLUMNS,
        "rows": [_row(n, now) for n in nodes],
        "writes": decisions.get(WRITES, 0),
        "primary_now": primary_now,
        "reads_total": sum(v for k, v in decisions.items() if k != WRITES),
        "config_error": error,
        "refresh_seconds": refresh_seconds if refresh_seconds and refresh_seconds > 0 else None,
        "generated_at": datetime.fromtimestamp(now, tz=timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        ),
    }
    if template_name is None:
        template_name = (
            "replica_router/status_admin.html"
            if admin_context is not None
            else "replica_router/status_standalone.html"
        )
    return render(request, template_name, context)


def _cluster_decisions() -> dict[str, int]:
    import replica_router

    return cast("dict[str, int]", replica_router.decisions())


# ------------------------------------------------------------------ metrics

_registry: Any = None
_registry_lock = threading.Lock()


def _metrics_registry() -> Any:
    """A registry of our own, holding only the collector (built on first use)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from prometheus_client import CollectorRegistry

            from replica_router.metrics import register

            r = CollectorRegistry()
            register(r)
            _registry = r
        return _registry


def _client_allowed(request: HttpRequest, allowed_ips: Iterable[str]) -> bool:
    remote = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in allowed_ips)


def _token_ok(request: HttpRequest, bearer_token: str | None) -> bool:
    if not bearer_token:
        return False
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), bearer_token.encode()
    )


@require_safe
@never_cache
def metrics(
    request: HttpRequest,
    allowed_ips: Sequence[str] = (),
    bearer_token: str | None = None,
    registry: Any = None,
) -> HttpResponse:
    """This process's metrics in Prometheus' text format.

    Open to staff, to clients whose ``REMOTE_ADDR`` is in ``allowed_ips`` (addresses or
    networks), and to requests with ``Authorization: Bearer <bearer_token>``; 403 for
    everyone else. Pass these as view kwargs in your URLconf. ``registry`` defaults to
    a private one with only this package's collector. 501 without ``prometheus_client``.
    """
    if not (
        _is_staff(request)
        or _client_allowed(request, allowed_ips)
        or _token_ok(request, bearer_token)
    ):
        # A plain 403, not PermissionDenied: a scraper without its token or an
        # anonymous visitor is no error of the site's, and Django logs an exception's
        # traceback. Django still logs the response itself, as a warning.
        return HttpResponseForbidden(
            "metrics: staff, allowed addresses or bearer token only\n",
            content_type="text/plain; charset=utf-8",
        )
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:
        return HttpResponse(
            "prometheus_client is not installed: pip install 'django-replica-router[prometheus]'\n",
            status=501,
            content_type="text/plain; charset=utf-8",
        )
    body = generate_latest(registry if registry is not None else _metrics_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
