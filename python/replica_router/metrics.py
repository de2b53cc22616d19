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
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from replica_router.states import ROLES, STATES, STATUS_FIELDS, WRITES

if TYPE_CHECKING:
    from replica_router._core import StatusMetric

__all__ = ["NODE_STATES", "ROLES", "ReplicaRouterCollector", "register", "serve", "unregister"]

logger = logging.getLogger("replica_router")

#: Every value of a node's ``state``; one series each in ``replica_router_node_state``
#: (``ROLES``, re-exported from :mod:`replica_router.states`: one series each of
#: ``replica_router_node_observed_role``).
NODE_STATES = STATES

PREFIX = "replica_router"


class ReplicaRouterCollector(Collector):
    """A custom collector over this process's cluster.

    Every scrape calls ``replica_router.status()`` and ``replica_router.decisions()``
    (a copy of atomics, no I/O); the first one starts probing if nothing routed yet.
    The families are the core's table of status keys (``STATUS_FIELDS``), and reasons
    are read from what ``status()`` returns, so a key or a reason that the core adds
    is exported without a change here.

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
        """The metric families for one ``status()`` and ``decisions()`` result: one per
        status key with a metric in the core's table (``STATUS_FIELDS``), then writes
        and changes of primary.

        A node family appears when a node has its key (so that a key an older core
        lacks, such as ``passive_faults``, exports nothing), or when ``describe`` asks
        for every family.
        """
        extra = ["pid"] if self.pid_label else []
        extra_values = [str(os.getpid())] if self.pid_label else []
        for field in STATUS_FIELDS:
            spec = field["metric"]
            if spec is None:
                continue
            name = field["name"]
            family = _family(spec, extra)
            for n in nodes:
                _add(family, spec, n.get(name), [str(n["alias"]), *extra_values])
            if describe or family.samples or any(name in n for n in nodes):
                yield family
        writes = CounterMetricFamily(
            f"{PREFIX}_writes", "Writes routed (to the primary).", labels=extra
        )
        if WRITES in decisions:
            writes.add_metric(extra_values, float(decisions[WRITES]))
        yield writes
        role_changes = CounterMetricFamily(
            f"{PREFIX}_role_changes",
            "Changes of primary seen by this process (switchovers and failovers).",
            labels=extra,
        )
        if "role_changes" in decisions:
            role_changes.add_metric(extra_values, float(decisions["role_changes"]))
            yield role_changes
        elif describe:
            yield role_changes


def _family(spec: StatusMetric, extra: list[str]) -> Metric:
    """The empty family of one status key's metric."""
    name, doc, kind = f"{PREFIX}_{spec['name']}", spec["help"], spec["kind"]
    node = ["alias", *extra]
    if kind == "info":
        return InfoMetricFamily(name, doc, labels=node)
    if kind in ("onehot", "per_key"):
        labels = ["alias", spec["label"], *extra]
        if kind == "per_key":
            return CounterMetricFamily(name, doc, labels=labels)
        return GaugeMetricFamily(name, doc, labels=labels)
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=node)
    return GaugeMetricFamily(name, doc, labels=node)


def _add(family: Metric, spec: StatusMetric, value: Any, labels: list[str]) -> None:
    """One node's samples of one status key (none for a gauge or counter while the
    value is unknown)."""
    kind = spec["kind"]
    alias, extra = labels[0], labels[1:]
    if kind == "info":
        cast("InfoMetricFamily", family).add_metric(labels, {spec["label"]: str(value or "")})
    elif kind == "onehot":
        gauge = cast("GaugeMetricFamily", family)
        for v in spec["values"]:
            gauge.add_metric([alias, v, *extra], 1.0 if value == v else 0.0)
    elif kind == "per_key":
        counter = cast("CounterMetricFamily", family)
        for key, count in sorted((value or {}).items()):
            counter.add_metric([alias, str(key), *extra], float(count))
    elif kind == "flag":
        cast("GaugeMetricFamily", family).add_metric(labels, 1.0 if value else 0.0)
    elif value is not None:
        divisor = spec.get("divisor", 1.0)
        cast("GaugeMetricFamily | CounterMetricFamily", family).add_metric(
            labels, float(value) / divisor
        )


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
