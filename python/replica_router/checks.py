"""System checks. Ids are stable. Settings problems come from the core's one set of
rules (``conf.load()``), each family with its own id (which key is in which family
is a column of its row in the settings table, ``src/settings/table.rs``, shown in
docs/settings.md's reference):

- E001: ``REPLICA_ROUTER`` is not a dict, or has an unknown key.
- E003: ``REPLICAS`` is unset and more than one other PostgreSQL alias exists.
- E005: an alias (``PRIMARY``, ``REPLICAS``) unknown, not PostgreSQL, or listed twice.
- E006: a weight (negative, not a number, every weight 0).
- E007: probing (how often, how long, how many probes change a state).
- E008: a lag limit.
- E009: a TLS option of a node (``OPTIONS["sslmode"]``).
- E010: a node's address (``HOST``, ``PORT``, ``OPTIONS["target_session_attrs"]``).
- E011: another option.

Found by talking to the nodes:

- E002: a node is misconfigured (authentication, missing database); ``--database``.
- E004: the replica taken by default (``REPLICAS`` unset) is not a standby.
- W001: the router is not in ``DATABASE_ROUTERS``.
- W002: a node is down; ``--database``.
- W003: a configured replica answers as a primary (promoted, or not a standby); never
  for a host of a multi-host alias (its role is observed, not configured).
- W004: a cluster alias does not use the router's database backend.
- W005: a router listed after this one in ``DATABASE_ROUTERS`` (never consulted for
  the cluster's models, which this router always answers for).
- W006: the app is not in ``INSTALLED_APPS`` (logged once at the router's first use:
  without the app, this module's checks are not registered).

Under ``manage.py test`` (this app's ``test`` command) and pytest-django (the
``replica_router`` pytest plugin), the settings errors above are raised before any
test database is created: any of them leaves replicas without ``TEST["MIRROR"]``, so
Django would try to create a test database on a hot standby.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from replica_router.states import DOWN, MISCONFIGURED, PRIMARY, REPLICA, UNKNOWN

ROUTER = "replica_router.ReadWriteRouter"
BACKEND = "replica_router.backends.postgresql"


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001, E003, E005-E011: the settings cannot work. W001: the router is not installed."""
    from replica_router import conf

    messages: list[CheckMessage] = []
    try:
        conf.load()
    except conf.SettingsError as exc:
        hint = exc.hint or "See the settings reference in django-replica-router's docs/settings.md."
        if exc.check_id == "replica_router.E003":
            hint = _standbys_hint(hint)
        messages.append(Error(str(exc), hint=hint, id=exc.check_id))

    routers = [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__name__}"
        for r in getattr(settings, "DATABASE_ROUTERS", [])
    ]
    names = (ROUTER, "replica_router.router.ReadWriteRouter")
    ours = [i for i, r in enumerate(routers) if r in names]
    after = [r for r in routers[ours[0] + 1 :] if r not in names] if ours else []
    if not ours:
        messages.append(
            Warning(
                f"{ROUTER!r} is not in DATABASE_ROUTERS, so replica_router routes nothing.",
                hint=f'Add DATABASE_ROUTERS = ["{ROUTER}"].',
                id="replica_router.W001",
            )
        )
    elif after:
        messages.append(
            Warning(
                f"DATABASE_ROUTERS lists {after} after {ROUTER!r}, which answers for every "
                "model: they are never consulted for reads, writes or migrations of any "
                "model (allow_migrate is answered True on the primary for all of them)",
                hint=f"Put {ROUTER!r} last in DATABASE_ROUTERS: the routers before it decide "
                "first, and it routes what they leave to it.",
                id="replica_router.W005",
            )
        )
    return messages


def _standbys_hint(default: str) -> str:
    """E003's hint, naming as an example only aliases that answer as hot standbys:
    one bounded probe round (``PROBE_TIMEOUT`` plus 1 s at most) of every candidate."""
    from replica_router import _core, conf

    router = getattr(settings, "REPLICA_ROUTER", None)
    if not isinstance(router, dict):
        return default
    dbs = conf.core_databases()
    try:
        # Built by the core, so that the primary and the timeout are its defaults too.
        base = {**router, "REPLICAS": [], "SHARE_HEALTH": False}
        # (A weight of 1 on the primary: with no replica, 0 would be refused.)
        primary = _core.RouterSettings({**base, "PRIMARY_READ_WEIGHT": 1}, dbs).primary
        others = [a for a in dbs if a != primary and conf.is_postgres_engine(dbs[a].get("ENGINE"))]
        trial = _core.RouterSettings({**base, "REPLICAS": others}, dbs, conf.captured_databases())
        probe = _core.Cluster(trial)
    except Exception:  # another setting is wrong too: its own error says so
        return default
    nodes = _probe_once(probe, trial.probe_timeout)
    standbys = [n["alias"] for n in nodes[1:] if n.get("observed_role") == REPLICA]
    if not standbys:
        return (
            f"{default} None of {others} answers as a hot standby now; if {primary!r} has "
            'no standby, set REPLICA_ROUTER["REPLICAS"] = [].'
        )
    example = "{" + ", ".join(f"{a!r}: {{'WEIGHT': 1}}" for a in standbys) + "}"
    return (
        f"{default} Of these, {standbys} answer as hot standbys: e.g. REPLICA_ROUTER = "
        f"{{'REPLICAS': {example}}}."
    )


def _probe_once(probe: Any, timeout: float) -> list[Any]:
    """Starts ``probe``, waits for one probe of every node (bounded), closes it."""
    try:
        probe.start()
        # One round, not ``wait_probed``: a node that fails is not waited for until it
        # is down (it is ``--database``'s), so that every command stays quick.
        # A probe ends within PROBE_TIMEOUT; the margin is for a loaded machine.
        deadline = time.monotonic() + timeout + 1.0
        nodes = probe.status()
        while time.monotonic() < deadline and any(n.get("probes", 0) == 0 for n in nodes):
            time.sleep(0.01)
            nodes = probe.status()
    finally:
        probe.close()
    return list(nodes)


@register()
def check_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: the cluster's aliases should use the router's backend, through which it
    sees real traffic (passive health, read retry, bounded connections)."""
    from replica_router import conf

    try:
        s = conf.load()
    except ImproperlyConfigured:
        return []
    missing = [a for a in s.aliases if not _routers_backend(settings.DATABASES[a].get("ENGINE"))]
    if not missing:
        return []
    return [
        Warning(
            f"DATABASES {missing} do not use the router's backend: a node that fails "
            "under real traffic costs failed requests until probes notice it (up to "
            "FALL x PROBE_INTERVAL + PROBE_TIMEOUT), and a frozen node can hold request "
            "threads for as long as it stays frozen",
            hint=f'Set "ENGINE": "{BACKEND}" on {missing} (it is Django\'s PostgreSQL '
            "backend plus passive health, safe read retry and bounded connections).",
            id="replica_router.W004",
        )
    ]


def _routers_backend(engine: object) -> bool:
    """Whether ``engine`` is the router's backend or a subclass of it."""
    if engine == BACKEND:
        return True
    from replica_router import conf

    if not conf.is_postgres_engine(engine):
        return False
    from django.db.utils import load_backend

    from replica_router.backends.postgresql.base import DatabaseWrapper

    return issubclass(load_backend(str(engine)).DatabaseWrapper, DatabaseWrapper)


@register(Tags.database)
def check_nodes(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """With ``check --database``: probe the cluster once and report what it sees.

    E002: a node is misconfigured (authentication, missing database). W002: a node is
    down. (A node in the wrong role is ``check_roles``'s: E004 / W003.)
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
    cluster.wait_probed()
    nodes = cluster.status()
    messages: list[CheckMessage] = []
    for n in nodes:
        where = f"{n['configured_role']} {n['alias']!r} ({n['host']}:{n['port']})"
        if n["state"] == MISCONFIGURED:
            messages.append(
                Error(f"{where} is misconfigured: {n['last_error']}", id="replica_router.E002")
            )
        elif n["state"] in (DOWN, UNKNOWN):
            messages.append(
                Warning(
                    f"{where} is {n['state']}: {n.get('last_error') or 'no answer yet'}",
                    id="replica_router.W002",
                )
            )
    return messages


@register()
def check_roles(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """E004 / W003: a replica that answers as a primary.

    Runs one bounded probe round (at most ``PROBE_TIMEOUT`` plus 1 s) with a
    throwaway cluster object, so that a database taken for a standby by mistake is
    reported before it serves a read. Unreachable nodes are left to ``--database``.
    """
    # Not skipped when ``databases`` is given: Django 6.1 passes every alias to
    # untagged checks on a plain ``manage.py check``.
    from replica_router import _core, conf

    try:
        s = conf.load()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if not s.replicas:
        return []
    nodes = _probe_once(_core.Cluster(s), s.probe_timeout)
    messages: list[CheckMessage] = []
    # After a switchover the configured primary is a standby and a replica is the
    # primary: writes follow it (docs/roles.md), nothing to report.
    switched = nodes[0].get("observed_role") == REPLICA
    # A multi-host alias lists the cluster's servers, whatever their roles now: one
    # of its hosts being the primary is what libpq's form is for.
    multi = set(s.multi_host_aliases)
    for n, configured in zip(nodes[1:], s.nodes[1:], strict=True):
        if n.get("observed_role") != PRIMARY or switched or configured["database"] in multi:
            continue
        where = f"DATABASES[{n['alias']!r}] ({n['host']}:{n['port']})"
        if s.replicas_implicit:
            messages.append(
                Error(
                    f"{where} was taken as the replica of {s.primary!r} because "
                    'REPLICA_ROUTER["REPLICAS"] is not set, but it is not a standby '
                    "(pg_is_in_recovery() is false)",
                    hint=(
                        'Set REPLICA_ROUTER["REPLICAS"] to the standbys of '
                        f"{s.primary!r}, or to [] if it has none."
                    ),
                    id="replica_router.E004",
                )
            )
        else:
            messages.append(
                Warning(
                    f"replica {where} is not in recovery: it was promoted or is not a "
                    f"standby of {s.primary!r}; it takes no replica reads while so",
                    hint='Check REPLICA_ROUTER["REPLICAS"] and the cluster\'s roles.',
                    id="replica_router.W003",
                )
            )
    return messages
