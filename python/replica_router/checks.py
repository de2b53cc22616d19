"""System checks. Ids are stable: replica_router.E001 ... W002."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

ROUTER = "replica_router.ReadWriteRouter"


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: REPLICA_ROUTER / DATABASES cannot work. W001: the router is not installed."""
    from replica_router import conf

    messages: list[CheckMessage] = []
    try:
        conf.load()
    except ImproperlyConfigured as exc:
        messages.append(
            Error(
                str(exc),
                hint="See the settings reference in django-replica-router's README.",
                id="replica_router.E001",
            )
        )
    routers = [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__name__}"
        for r in getattr(settings, "DATABASE_ROUTERS", [])
    ]
    if not any(r in (ROUTER, "replica_router.router.ReadWriteRouter") for r in routers):
        messages.append(
            Warning(
                f"{ROUTER!r} is not in DATABASE_ROUTERS, so replica_router routes nothing.",
                hint=f'Add DATABASE_ROUTERS = ["{ROUTER}"].',
                id="replica_router.W001",
            )
        )
    return messages


@register(Tags.database)
def check_nodes(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """With ``check --database``: probe the cluster once and report what it sees.

    E002: a node is misconfigured (authentication, missing database). W002: a node is
    down or in the wrong role.
    """
    if not databases:
        return []
    from replica_router import _runtime, conf

    try:
        s = conf.load()
    except ImproperlyConfigured:
        return []  # reported by E001
    if not set(databases) & set(s.aliases):
        return []
    cluster = _runtime.get_cluster()
    deadline = time.monotonic() + s.probe_interval + 2 * s.probe_timeout
    nodes = cluster.status()
    while time.monotonic() < deadline and any(n["state"] == "unknown" for n in nodes):
        time.sleep(0.05)
        nodes = cluster.status()
    messages: list[CheckMessage] = []
    for n in nodes:
        where = f"{n['configured_role']} {n['alias']!r} ({n['host']}:{n['port']})"
        if n["state"] == "misconfigured":
            messages.append(
                Error(f"{where} is misconfigured: {n['last_error']}", id="replica_router.E002")
            )
        elif n["state"] in ("down", "unknown"):
            messages.append(
                Warning(
                    f"{where} is {n['state']}: {n.get('last_error') or 'no answer yet'}",
                    id="replica_router.W002",
                )
            )
        elif n.get("role_mismatch"):
            messages.append(
                Warning(
                    f"{where} reports role {n['observed_role']!r}",
                    id="replica_router.W002",
                )
            )
    return messages
