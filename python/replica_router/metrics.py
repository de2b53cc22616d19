"""Prometheus metrics: a collector that reads ``status()`` and ``decisions()`` at scrape time.

Needs the optional extra ``django-replica-router[prometheus]`` (``prometheus_client``).
Nothing is registered at import: call :func:`register` (for the default registry,
which django-prometheus and ``prometheus_client.start_http_server`` export), mount
``replica_router.urls`` (its ``metrics/`` view has a private registry of its own), or
serve each worker's metrics on a port of its own with :func:`serve`.

Every value is this process's: the prober, its health view and its counters live in
the process. Under a server with several worker processes (gunicorn ``-w N``), scrape
each worker (:func:`serve` from a ``post_fork`` hook, or django-prometheus's
``PROMETHEUS_METRICS_EXPORT_PORT_RANGE``); ``prometheus_client``'s multiprocess mode
cannot carry a custom collector.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any, cast

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["NODE_STATES", "ROLES", "ReplicaRouterCollector", "register", "serve", "unregister"]

logger = logging.getLogger("replica_router")

#: Every value of a node's ``state``; one series each in ``replica_router_node_state``.
NODE_STATES = ("up", "down", "lagging", "unknown", "misconfigured")
#: Every value of a node's ``observed_role``.
ROLES = ("primary", "replica")

PREFIX = "replica_router"


class ReplicaRouterCollector(Collector):
    """A custom collector over this process's cluster.

    Every scrape calls ``replica_router.status()`` and ``replica_router.decisions()``
    (a copy of atomics, no I/O); the first one starts probing if nothing routed yet.
    Reasons and optional keys are read from what ``status()`` returns, so counters that
    the core adds later (a reason, ``passive_faults``) are exported without a change
    here.

    ``pid_label=True`` adds a ``pid`` label (this process's id at scrape time) to every
    series, for setups where several processes' scrapes end up in one job.
    """

    def __init__(self, *, pid_label: bool = False) -> None:
        self.pid_label = pid_label

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so that registering never builds the cluster."""
        return list(self.build([], {}, describe=True))

    def collect(self) -> Iterable[Metric]:
        """One scrape: every family, with this process's current values."""
        import replica_router

        try:
            nodes = replica_router.status()
            decisions: dict[str, int] = dict(cast("dict[str, int]", replica_router.decisions()))
            from replica_router.roles import roles

            decisions["role_changes"] = int(roles()["role_changes"])
        except Exception:
            # A scrape must not turn a settings error into a 500 for the whole
            # registry (django-prometheus exports its own metrics through it too).
            logger.exception("replica_router: metrics could not read the cluster status")
            return []
        return list(self.build([dict(n) for n in nodes], decisions))

    def build(
        self,
        nodes: list[dict[str, Any]],
        decisions: dict[str, int],
        *,
        describe: bool = False,
    ) -> Iterator[Metric]:
        """The metric families for one ``status()`` and ``decisions()`` result.

        Families of optional keys (``passive_faults``) appear only when a node has the
        key, or when ``describe`` asks for every family.
        """
        extra = ["pid"] if self.pid_label else []
        extra_values = [str(os.getpid())] if self.pid_label else []
        node = ["alias", *extra]

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(
                f"{PREFIX}_{name}", doc, labels=node if labels is None else labels
            )

        def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(
                f"{PREFIX}_{name}", doc, labels=node if labels is None else labels
            )

        info = InfoMetricFamily(
            f"{PREFIX}_node",
            "Configuration of a node: its configured role.",
            labels=node,
        )
        state = gauge(
            "node_state",
            "1 for the node's current state (up, down, lagging, unknown, misconfigured), "
            "0 for the others.",
            ["alias", "state", *extra],
        )
        role = gauge(
            "node_observed_role",
            "1 for the role the last probe saw (primary: not in recovery; replica: in "
            "recovery), 0 for the other; both 0 while no probe answered.",
            ["alias", "role", *extra],
        )
        mismatch = gauge(
            "node_role_mismatch",
            "1 when the observed role differs from the configured one (a promoted replica).",
        )
        weight = gauge("node_weight", "Configured read weight of the node.")
        lag_bytes = gauge(
            "node_lag_bytes",
            "Replication lag in bytes of WAL (absent while unknown, e.g. primary down).",
        )
        lag_seconds = gauge(
            "node_lag_seconds",
            "Replication lag in seconds (absent while unknown).",
        )
        latency = gauge("node_probe_latency_seconds", "Latency of the node's last probe.")
        failures = gauge(
            "node_consecutive_failures", "Failed probes in a row since the last good one."
        )
        probes = counter("node_probes", "Probes of the node in this process.")
        failed = counter("node_probe_failures", "Failed probes of the node in this process.")
        changed = gauge(
            "node_last_state_change_timestamp_seconds",
            "Unix time of the node's last state change.",
        )
        age = gauge(
            "node_last_good_probe_age_seconds",
            "Seconds since the node last answered a probe (absent before its first answer).",
        )
        reads = counter(
            "reads",
            "Reads routed to the node, by reason of the decision.",
            ["alias", "reason", *extra],
        )
        passive = counter(
            "passive_faults",
            "Faults of the node seen on the request path (passive health).",
        )
        writes = counter("writes", "Writes routed (to the primary).", extra)
        primary_now = gauge(
            "node_primary_now",
            "1 for the node that is the primary now (observed: writes go to it), else 0.",
        )
        role_changes = counter(
            "role_changes",
            "Changes of primary seen by this process (switchovers and failovers).",
            extra,
        )

        def optional(family: GaugeMetricFamily, labels: list[str], value: Any) -> None:
            if value is not None:
                family.add_metric(labels, float(value))

        has_passive = False
        for n in nodes:
            alias = str(n["alias"])
            lv = [alias, *extra_values]
            info.add_metric(lv, {"configured_role": str(n.get("configured_role", ""))})
            for s in NODE_STATES:
                state.add_metric([alias, s, *extra_values], 1.0 if n.get("state") == s else 0.0)
            observed = n.get("observed_role")
            for r in ROLES:
                role.add_metric([alias, r, *extra_values], 1.0 if observed == r else 0.0)
            mismatch.add_metric(lv, 1.0 if n.get("role_mismatch") else 0.0)
            optional(weight, lv, n.get("weight"))
            optional(lag_bytes, lv, n.get("lag_bytes"))
            optional(lag_seconds, lv, n.get("lag_seconds"))
            ms = n.get("latency_ms")
            optional(latency, lv, None if ms is None else ms / 1000.0)
            optional(failures, lv, n.get("consecutive_failures"))
            if n.get("probes") is not None:
                probes.add_metric(lv, float(n["probes"]))
            if n.get("failed_probes") is not None:
                failed.add_metric(lv, float(n["failed_probes"]))
            optional(changed, lv, n.get("last_state_change"))
            optional(age, lv, n.get("last_good_probe_age"))
            for reason, count in sorted((n.get("reads_by_reason") or {}).items()):
                reads.add_metric([alias, str(reason), *extra_values], float(count))
            if "passive_faults" in n:
                has_passive = True
                passive.add_metric(lv, float(n["passive_faults"] or 0))
            if "primary_now" in n:
                primary_now.add_metric(lv, 1.0 if n["primary_now"] else 0.0)
        if "writes" in decisions:
            writes.add_metric(extra_values, float(decisions["writes"]))

        yield from (info, state, role, mismatch, weight, lag_bytes, lag_seconds, latency)
        yield from (failures, probes, failed, changed, age, reads)
        if has_passive or describe:
            yield passive
        yield writes
        if nodes or describe:
            yield primary_now
        if "role_changes" in decisions:
            role_changes.add_metric(extra_values, float(decisions["role_changes"]))
            yield role_changes
        elif describe:
            yield role_changes


_registered: dict[int, ReplicaRouterCollector] = {}
_lock = threading.Lock()


def register(
    registry: CollectorRegistry = REGISTRY, *, pid_label: bool = False
) -> ReplicaRouterCollector:
    """Register the collector in ``registry`` (default: ``prometheus_client.REGISTRY``,
    which django-prometheus exports). Idempotent per registry; returns the collector.

    Call it from your ``AppConfig.ready()``, a settings-free place that runs once per
    process; it does not start probing (that waits for the first scrape or route).
    """
    with _lock:
        existing = _registered.get(id(registry))
        if existing is not None:
            return existing
        collector = ReplicaRouterCollector(pid_label=pid_label)
        registry.register(collector)
        _registered[id(registry)] = collector
        return collector


def unregister(registry: CollectorRegistry = REGISTRY) -> None:
    """Undo :func:`register` for ``registry`` (no-op when not registered)."""
    with _lock:
        collector = _registered.pop(id(registry), None)
        if collector is not None:
            registry.unregister(collector)


def serve(
    ports: Iterable[int], addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> int:
    """Serve ``registry`` (with the collector registered) over HTTP on the first free
    port of ``ports``, from a daemon thread of this process; returns the port.

    Meant for a gunicorn ``post_fork`` hook: each worker takes a port of its own, and
    Prometheus scrapes them all (give as many ports as workers). Raises ``OSError``
    when every port is taken.
    """
    register(registry)
    last: OSError | None = None
    for port in ports:
        try:
            start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            last = exc
            continue
        logger.info("replica_router: metrics of pid %d on %s:%d", os.getpid(), addr, port)
        return port
    raise OSError(f"no free port for metrics in the given range ({last})")
