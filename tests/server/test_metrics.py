"""Prometheus metrics, scraped over HTTP from running servers against the session's real
primary + standby: Django's live server (the ``metrics`` view) and ``gunicorn -w 2``
with one exporter port per worker. The exposition text is parsed with
``prometheus_client``'s own parser."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import replica_router
from replica_router import metrics
from tests.server.web import live_server, web_settings
from tests.support import FALL, ROUTER_SETTINGS, TIMEOUT, WINDOW, LocalCluster, states, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Exposition text -> {(sample name, labels): value}."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over the series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return parse(resp.read().decode())


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------ registration


def test_nothing_registered_or_started_at_import(cluster: LocalCluster) -> None:
    """``import replica_router`` (and its urls) pulls in neither ``prometheus_client`` nor
    the metrics module; importing and registering the collector starts no probing."""
    code = textwrap.dedent(
        """
        import sys
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["replica_router"], ROOT_URLCONF="replica_router.urls")
        django.setup()
        import replica_router, replica_router.urls
        assert "prometheus_client" not in sys.modules, "prometheus_client imported"
        assert "replica_router.metrics" not in sys.modules, "metrics imported"
        from prometheus_client import REGISTRY
        from replica_router import _runtime, metrics
        metrics.register()
        assert _runtime.cluster is None, "registering started probing"
        assert metrics.register() is metrics.register(), "not idempotent"
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_beside_default_collectors_in_the_global_registry(healthy: LocalCluster) -> None:
    """Registered in ``prometheus_client.REGISTRY`` (what django-prometheus and
    ``start_http_server`` export), our families come out with the default process and
    platform ones, once; a second registration is a no-op."""
    collector = metrics.register()
    try:
        assert metrics.register() is collector
        text = generate_latest(REGISTRY).decode()
        samples = parse(text)
        assert value(samples, "replica_router_node_state", alias="default", state="up") == 1.0
        assert any(n == "python_info" for n, _ in samples)
        assert text.count("# TYPE replica_router_node_state gauge") == 1
    finally:
        metrics.unregister()
    assert "replica_router_" not in generate_latest(REGISTRY).decode()


def test_beside_django_prometheus(healthy: LocalCluster) -> None:
    """django-prometheus installed, with its middleware and its ``/metrics``: after
    ``metrics.register()``, that one endpoint serves its request metrics and ours, each
    family once, with live values."""
    with (
        web_settings(),
        override_settings(
            INSTALLED_APPS=[*settings.INSTALLED_APPS, "django_prometheus"],
            MIDDLEWARE=[
                "django_prometheus.middleware.PrometheusBeforeMiddleware",
                *settings.MIDDLEWARE,
                "django_prometheus.middleware.PrometheusAfterMiddleware",
            ],
            ROOT_URLCONF="tests.server.prometheus_urls",
        ),
        live_server() as url,
    ):
        metrics.register()
        try:
            pk = get(f"{url}/write/")["pk"]
            for _ in range(5):
                get(f"{url}/read/{pk}/")
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        finally:
            metrics.unregister()
    samples = parse(text)
    assert total(samples, "django_http_requests_total_by_method_total", method="GET") >= 6
    assert value(samples, "replica_router_node_state", alias="replica", state="up") == 1.0
    assert total(samples, "replica_router_reads_total") >= 5
    assert total(samples, "replica_router_writes_total") >= 1
    assert text.count("# TYPE replica_router_reads_total counter") == 1


def test_pid_label() -> None:
    """``pid_label=True``: every series carries this process's pid."""
    c = metrics.ReplicaRouterCollector(pid_label=True)
    registry = CollectorRegistry()
    registry.register(c)
    samples = parse(generate_latest(registry).decode())
    assert samples
    assert {dict(ls).get("pid") for _, ls in samples} == {str(os.getpid())}


def test_keys_added_later_are_exported(healthy: LocalCluster) -> None:
    """Reasons are read from ``reads_by_reason`` and ``passive_faults`` from the node's
    dict: the core's ``retried`` reason and ``passive_faults`` key are exported, and
    a node dict without the key (an older core) exports no such series."""
    nodes = replica_router.status()
    decisions = replica_router.decisions()
    plain = parse(_exposition(metrics.ReplicaRouterCollector().build(nodes, decisions)))
    assert value(plain, "replica_router_passive_faults_total", alias="replica") == 0
    assert value(plain, "replica_router_reads_total", alias="replica", reason="retried") == 0
    older = [{k: v for k, v in n.items() if k != "passive_faults"} for n in nodes]
    old = parse(_exposition(metrics.ReplicaRouterCollector().build(older, decisions)))
    assert not any(n.startswith("replica_router_passive_faults") for n, _ in old)
    for i, n in enumerate(nodes):
        n["reads_by_reason"]["retried"] = 7 + i
        n["passive_faults"] = 3 * i
    samples = parse(_exposition(metrics.ReplicaRouterCollector().build(nodes, decisions)))
    assert value(samples, "replica_router_reads_total", alias="replica", reason="retried") == 8
    assert value(samples, "replica_router_passive_faults_total", alias="default") == 0
    assert value(samples, "replica_router_passive_faults_total", alias="replica") == 3


def _exposition(families: Any) -> str:
    class Fixed:
        def collect(self) -> Any:
            return list(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


# ------------------------------------------------------------------ live server


@pytest.fixture
def server(healthy: LocalCluster) -> Iterator[str]:
    """Django's live server with the suite's views, the admin and the metrics views."""
    with web_settings(), live_server() as url:
        yield url


def test_scrape_live_server(server: str, healthy: LocalCluster) -> None:
    """A scrape of the running server: both nodes up (one-hot state), observed roles,
    lag and latency gauges present; then reads and a write through the same server make
    the counters grow by exactly what was routed, and probes keep counting."""
    # The lag gauges appear once a probe round has seen both nodes.
    wait_until(
        lambda: (
            value(
                scrape(f"{server}/metrics-loopback/"),
                "replica_router_node_lag_bytes",
                alias="replica",
            )
            is not None
        ),
        5,
    )
    first = scrape(f"{server}/metrics-loopback/")
    for alias, role in (("default", "primary"), ("replica", "replica")):
        assert value(first, "replica_router_node_state", alias=alias, state="up") == 1.0
        for other in ("down", "lagging", "unknown", "misconfigured"):
            assert value(first, "replica_router_node_state", alias=alias, state=other) == 0.0
        assert value(first, "replica_router_node_observed_role", alias=alias, role=role) == 1.0
        assert value(first, "replica_router_node_role_mismatch", alias=alias) == 0.0
        assert value(first, "replica_router_node_consecutive_failures", alias=alias) == 0.0
        latency = value(first, "replica_router_node_probe_latency_seconds", alias=alias)
        assert latency is not None and 0 < latency < TIMEOUT
        assert (value(first, "replica_router_node_probes_total", alias=alias) or 0) > 0
        info = value(first, "replica_router_node_info", alias=alias, configured_role=role)
        assert info == 1.0
    lag_bytes = value(first, "replica_router_node_lag_bytes", alias="replica")
    lag_seconds = value(first, "replica_router_node_lag_seconds", alias="replica")
    assert lag_bytes is not None and lag_bytes >= 0
    assert lag_seconds is not None and 0 <= lag_seconds < 5

    pk = get(f"{server}/write/")["pk"]
    reads = 30
    served = [get(f"{server}/read/{pk}/")["alias"] for _ in range(reads)]
    second = scrape(f"{server}/metrics-loopback/")

    assert (
        total(second, "replica_router_writes_total") - total(first, "replica_router_writes_total")
        == 1
    )
    grown = total(second, "replica_router_reads_total") - total(first, "replica_router_reads_total")
    assert grown == reads
    for alias in ("default", "replica"):
        by_alias = total(second, "replica_router_reads_total", alias=alias) - total(
            first, "replica_router_reads_total", alias=alias
        )
        assert by_alias == served.count(alias), (alias, served)
    weighted = total(second, "replica_router_reads_total", reason="weighted") - total(
        first, "replica_router_reads_total", reason="weighted"
    )
    assert weighted == reads
    for alias in ("default", "replica"):
        assert (value(second, "replica_router_node_probes_total", alias=alias) or 0) > (
            value(first, "replica_router_node_probes_total", alias=alias) or 0
        )


def test_scrape_shows_a_stopped_standby(server: str, healthy: LocalCluster) -> None:
    """Standby stopped: ``state="down"`` is the one set, failures count up, and the
    state-change time moves."""
    before = scrape(f"{server}/metrics-loopback/")
    healthy.stop("standby")
    wait_until(lambda: states()["replica"] == "down", WINDOW + 5)
    after = scrape(f"{server}/metrics-loopback/")
    assert value(after, "replica_router_node_state", alias="replica", state="down") == 1.0
    assert value(after, "replica_router_node_state", alias="replica", state="up") == 0.0
    assert value(after, "replica_router_node_state", alias="default", state="up") == 1.0
    fails = value(after, "replica_router_node_consecutive_failures", alias="replica")
    assert fails is not None and fails >= FALL
    assert (value(after, "replica_router_node_probe_failures_total", alias="replica") or 0) > (
        value(before, "replica_router_node_probe_failures_total", alias="replica") or 0
    )
    changed = "replica_router_node_last_state_change_timestamp_seconds"
    assert (value(after, changed, alias="replica") or 0) > (
        value(before, changed, alias="replica") or 0
    )


# ------------------------------------------------------------------ gunicorn -w 2

APP = textwrap.dedent(
    """
    \"\"\"Each request routes 100 reads in this worker and says which worker it was.\"\"\"
    import json
    import os

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="metrics-gunicorn-test",
        DATABASES=json.loads(os.environ["RR_TEST_DATABASES"]),
        DATABASE_ROUTERS=["replica_router.ReadWriteRouter"],
        REPLICA_ROUTER=json.loads(os.environ["RR_TEST_ROUTER"]),
        INSTALLED_APPS=["django.contrib.contenttypes", "replica_router"],
        LOGGING_CONFIG=None,
        USE_TZ=True,
    )
    django.setup()

    from django.contrib.contenttypes.models import ContentType
    from django.db import router


    def app(environ, start_response):
        for _ in range(100):
            router.db_for_read(ContentType)
        body = json.dumps(
            {"pid": os.getpid(), "metrics_port": int(os.environ["RR_WORKER_METRICS_PORT"])}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    """
)

GUNICORN_CONF = textwrap.dedent(
    """
    import os


    def post_fork(server, worker):
        # One exporter per worker, on the first free port of the range.
        from replica_router import metrics

        ports = [int(p) for p in os.environ["RR_METRICS_PORTS"].split(",")]
        os.environ["RR_WORKER_METRICS_PORT"] = str(metrics.serve(ports))
    """
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def gunicorn_workers(healthy: LocalCluster, tmp_path: Path) -> Iterator[tuple[int, list[int]]]:
    """``gunicorn -w 2`` with per-worker metrics ports; yields (app port, metrics ports).
    Always stopped: SIGTERM, then SIGKILL to its process group."""
    (tmp_path / "rr_metrics_app.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    app_port, *metrics_ports = _free_ports(3)
    dbs = {
        "default": {**healthy.dsn("primary"), "OPTIONS": {"connect_timeout": 2}},
        "replica": {**healthy.dsn("standby"), "OPTIONS": {"connect_timeout": 2}},
    }
    env = {
        **os.environ,
        "RR_TEST_DATABASES": json.dumps(dbs),
        "RR_TEST_ROUTER": json.dumps(ROUTER_SETTINGS),
        "RR_METRICS_PORTS": ",".join(map(str, metrics_ports)),
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "2",
            "-c",
            str(tmp_path / "gunicorn_conf.py"),
            "-b",
            f"127.0.0.1:{app_port}",
            "--chdir",
            str(tmp_path),
            "--graceful-timeout",
            "3",
            "rr_metrics_app:app",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        yield app_port, metrics_ports
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _try_scrape(url: str) -> Samples | None:
    try:
        return scrape(url)
    except OSError:
        return None


def test_gunicorn_workers_each_export_their_own(
    gunicorn_workers: tuple[int, list[int]], tmp_path: Path
) -> None:
    """``gunicorn -w 2``, each worker serving its metrics on a port of its own
    (``metrics.serve`` in ``post_fork``): both ports answer with both nodes up, and each
    port's reads counter grows by exactly the reads its own worker routed."""
    app_port, ports = gunicorn_workers
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    deadline = time.monotonic() + 30
    first: list[Samples | None] = [None, None]
    while time.monotonic() < deadline:
        first = [_try_scrape(u) for u in urls]
        if all(
            s is not None
            and value(s, "replica_router_node_state", alias="replica", state="up") == 1.0
            and value(s, "replica_router_node_state", alias="default", state="up") == 1.0
            for s in first
        ):
            break
        time.sleep(0.1)
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert all(s is not None for s in first), log[-3000:]
    before = [total(s, "replica_router_reads_total") for s in first if s is not None]

    requests = 40
    served: dict[int, int] = {p: 0 for p in ports}
    for _ in range(requests):
        served[get(f"http://127.0.0.1:{app_port}/")["metrics_port"]] += 1
    after = [total(scrape(u), "replica_router_reads_total") for u in urls]
    for i, port in enumerate(ports):
        assert after[i] - before[i] == 100 * served[port], (port, served, before, after)
    assert sum(after) - sum(before) == 100 * requests
