"""The one table of a node's status (``_core.status_fields()``) against everything
that restates or consumes it: ``NodeStatus`` (``status_types.py``, which the stub
re-exports), what a running core's
``status()`` returns, the metrics' families, ``replica_status``'s columns, the
readiness view's staff keys, the status page's cells and the docs' snippet; and
``status(wait=...)``, the one wait for first probes.

The literal lists below pin what users see (metric names, column headings): a
change to the table that changes them fails here, on purpose.

No server: the cluster here points at ports where nothing listens.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.template import Context, Engine

from replica_router import _core, states, status_types
from replica_router.management.commands import replica_status
from tests.snippets import blocks_under
from tests.status_types_reference import current, render
from tests.support import ROOT, offline_databases

FIELDS = states.STATUS_FIELDS
#: Where ``NodeStatus`` is declared (``_core.pyi`` re-exports it).
TYPES = Path(status_types.__file__)
TEMPLATES = Path(states.__file__).with_name("templates")


def stub_node_status() -> dict[str, tuple[str, bool]]:
    """The stub's ``NodeStatus`` keys: name -> (type as spelled, required)."""
    classes = {
        node.name: node
        for node in ast.parse(TYPES.read_text()).body
        if isinstance(node, ast.ClassDef)
    }
    keys: dict[str, tuple[str, bool]] = {}
    for cls, required in (("_NodeStatusBase", True), ("NodeStatus", False)):
        for item in classes[cls].body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                keys[item.target.id] = (ast.unparse(item.annotation), required)
    return keys


def test_the_stub_is_the_table() -> None:
    """Proves: the stub's ``NodeStatus`` has exactly the table's keys, each with the
    table's type, required exactly when the table says it is in every dict."""
    table = {f["name"]: (f["type"], f["required"]) for f in FIELDS}
    assert stub_node_status() == table
    assert len(table) == len(FIELDS)


def fits(value: Any, ty: str) -> bool:
    """Whether ``value`` is of the stub type ``ty``."""
    base, _, none = ty.partition(" | ")
    if value is None:
        return none == "None"
    kinds: dict[str, Any] = {
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "dict[str, int]": dict,
    }
    if base == "State":
        return value in states.STATES
    if base == "Role":
        return value in states.ROLES
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kinds[base])


@pytest.fixture
def cluster() -> Iterator[_core.Cluster]:
    """A started core cluster of unreachable nodes, closed after the test."""
    dbs = offline_databases()
    c = _core.Cluster(
        _core.RouterSettings(
            {"PROBE_INTERVAL": 0.1, "PROBE_TIMEOUT": 0.3, "REPLICAS": ["replica"]},
            {alias: dbs[alias] for alias in ("default", "replica")},
        )
    )
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_status_is_built_from_the_table(cluster: _core.Cluster) -> None:
    """Proves: a running core's ``status()`` has the table's keys in its order, each
    value of its declared type, before and after the nodes were probed."""
    names = [f["name"] for f in FIELDS]
    deadline = time.monotonic() + 10
    while True:
        nodes = cluster.status()
        for n in nodes:
            assert list(n) == names
            for f in FIELDS:
                assert fits(n[f["name"]], f["type"]), (f["name"], n[f["name"]])  # type: ignore[literal-required]
        if all(n["probes"] > 0 for n in nodes) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(n["probes"] > 0 for n in nodes)


#: Every metric family, as the metrics documentation lists them.
METRIC_FAMILIES = [
    "replica_router_node",
    "replica_router_node_observed_role",
    "replica_router_node_state",
    "replica_router_node_weight",
    "replica_router_node_lag_bytes",
    "replica_router_node_lag_seconds",
    "replica_router_node_probe_latency_seconds",
    "replica_router_node_consecutive_failures",
    "replica_router_reads",
    "replica_router_passive_faults",
    "replica_router_node_primary_now",
    "replica_router_node_role_mismatch",
    "replica_router_node_probes",
    "replica_router_node_probe_failures",
    "replica_router_node_last_state_change_timestamp_seconds",
    "replica_router_node_last_good_probe_age_seconds",
    "replica_router_node_server_start_timestamp_seconds",
    "replica_router_writes",
    "replica_router_role_changes",
]


def test_metrics_are_the_tables() -> None:
    """Proves: the collector's families are the table's metrics (plus writes and
    changes of primary), under their documented names, and the documentation's
    table of metrics lists each of them."""
    if importlib.util.find_spec("prometheus_client") is None:
        # A matrix cell without the optional ``prometheus`` extra: no collector there.
        # The table's own metric names are still the pinned families, in order, and
        # documented; ``make test`` (with the extra) checks the collector itself.
        table = [f"replica_router_{f['metric']['name']}" for f in FIELDS if f["metric"]]
        assert table == [n for n in METRIC_FAMILIES if n in table], table
        assert table, "the table exports no metric"
        documented = (ROOT / "docs" / "observability.md").read_text()
        assert all(n in documented for n in table), table
        return
    from replica_router.metrics import ReplicaRouterCollector

    families = [m.name for m in ReplicaRouterCollector().describe()]
    assert families == METRIC_FAMILIES
    documented = (ROOT / "docs" / "observability.md").read_text()
    for name in families:
        kind = {m.name: m.type for m in ReplicaRouterCollector().describe()}[name]
        shown = f"{name}_total" if kind == "counter" else f"{name}_info" if kind == "info" else name
        assert f"`{shown}`" in documented, shown


def test_replica_status_and_readiness_columns_are_the_tables() -> None:
    """Proves: ``replica_status``'s columns and the readiness view's staff keys are the
    table's, unchanged, and the readiness keys show no address and no error text."""
    assert replica_status.COLUMNS == (
        ("alias", "alias"),
        ("configured_role", "role"),
        ("observed_role", "seen as"),
        ("state", "state"),
        ("weight", "weight"),
        ("lag_bytes", "lag B"),
        ("lag_seconds", "lag s"),
        ("latency_ms", "probe ms"),
        ("consecutive_failures", "fails"),
        ("reads_routed", "reads"),
        ("last_error", "last error"),
        ("lag_reason", "why lagging"),
    )
    ready = {f["name"] for f in FIELDS if f["ready"]}
    assert ready == {
        "alias",
        "state",
        "configured_role",
        "observed_role",
        "lag_bytes",
        "lag_seconds",
        "lag_reason",
    }


def page(nodes: list[dict[str, Any]]) -> str:
    """The status table rendered for ``nodes`` (with Django's template engine, no
    settings needed)."""
    from replica_router import views

    engine = Engine(dirs=[str(TEMPLATES)])
    context = {
        "overall": "degraded",
        "columns": states.PAGE_COLUMNS,
        "rows": [views._row(n, 1_764_750_060.0) for n in nodes],
        "writes": 1,
        "reads_total": 2,
        "generated_at": "now",
    }
    return engine.get_template("replica_router/_status_table.html").render(Context(context))


def test_the_page_shows_every_part_the_table_gives_it() -> None:
    """Proves: the page's columns are the table's, in order, and a node with every
    key set shows each part the page always showed: address, state badge, stale,
    why lagging, roles with their badges and the alias it serves, weight, lag in
    bytes and seconds, latency, failures, reads by reason, passive faults, the
    time of the last change, the error's class and text."""
    assert states.PAGE_COLUMNS == (
        "Alias",
        "State",
        "Role (configured / observed)",
        "Weight",
        "Lag",
        "Probe latency",
        "Failures in a row",
        "Reads by reason",
        "Last state change",
        "Last error",
    )
    node = {
        "alias": "replica",
        "host": "db2",
        "port": 5433,
        "state": "lagging",
        "stale": True,
        "lag_reason": "replay paused, 10 bytes behind the primary",
        "configured_role": "replica",
        "observed_role": "primary",
        "primary_now": False,
        "role_mismatch": True,
        "connected_as": "default",
        "weight": 2.0,
        "lag_bytes": 1536,
        "lag_seconds": 1.5,
        "latency_ms": 2.25,
        "consecutive_failures": 3,
        "reads_routed": 7,
        "reads_by_reason": {"weighted": 5, "lag_fallback": 2, "pinned": 0},
        "passive_faults": 2,
        "last_state_change": 1_764_750_000.0,
        "error_class": "timeout",
        "last_error": "probe timed out",
    }
    html = page([node])
    headings = re.findall(r'<th scope="col">([^<]*)</th>', html)
    assert tuple(h.replace("&amp;", "&") for h in headings) == states.PAGE_COLUMNS
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>\n", html.split("<tbody>")[1])
    assert cells == [
        'replica<div class="rr-muted">db2:5433</div>',
        '<span class="rr-badge rr-lagging">lagging</span> <span class="rr-muted">(stale)</span>'
        '<div class="rr-lag-reason">replay paused, 10 bytes behind the primary</div>',
        'replica / primary <span class="rr-badge rr-down">role mismatch</span>'
        '<div class="rr-muted">connections of default</div>',
        "2.0",
        '1.5 KiB<div class="rr-muted">1.50 s</div>',
        "2.2 ms",
        "3",
        '7<div class="rr-muted">weighted: 5</div><div class="rr-muted">lag_fallback: 2</div>'
        '<div class="rr-muted">passive faults: 2</div>',
        "08:20:00 UTC (60 s ago)",
        "<strong>timeout</strong><br>probe timed out",
    ]
    assert '<td class="rr-error"><strong>' in html
    # Not answering: no lag shown; the primary now gets its badge, not a mismatch.
    down = {**node, "state": "down", "stale": False, "primary_now": True, "last_error": None}
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>\n", page([down]).split("<tbody>")[1])
    assert cells[4] == '—<div class="rr-muted">—</div>'
    assert cells[2].startswith('replica / primary <span class="rr-badge rr-up">primary now</span>')
    assert cells[9] == "—"
    # Before the prober started: the required keys only.
    cold = {f["name"]: node[f["name"]] for f in FIELDS if f["required"] and f["name"] in node}
    assert "rr-badge rr-unknown" in page([{**cold, "state": "unknown"}])


def test_the_docs_snippet_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    """Proves: ``docs/observability.md``'s snippet runs as written and prints one line
    per status key, the new ``server_started`` with its metric among them."""
    (block,) = [
        b
        for b in blocks_under("docs/observability.md", "`status()` and `decisions()`", "python")
        if "STATUS_FIELDS" in b
    ]
    exec(compile(block, "observability.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f["name"] for f in FIELDS]
    started = "server_started float | None node_server_start_timestamp_seconds"
    assert started in lines


def test_status_waits_until_no_node_is_unknown(cluster: _core.Cluster) -> None:
    """Proves: ``status(wait=...)``, the one "wait until probed" (the readiness view,
    ``replica_status`` and ``check --database`` use it), returns once no node is
    ``unknown``: here both unreachable nodes are down after FALL failed probes."""
    nodes = cluster.status(wait=10)
    assert [n["state"] for n in nodes] == ["down", "down"]
    assert all(n["consecutive_failures"] >= 1 for n in nodes)


def test_node_status_types_are_generated_from_the_table() -> None:
    """Proves: ``NodeStatus`` in ``status_types.py`` is what ``make docs`` renders from
    the core's table (``tests/status_types_reference.py``): a new status key is one
    table entry, and this fails until the module is regenerated."""
    expected = render()
    assert current() == expected, (
        "status_types.py's NodeStatus differs from the status table: run `make docs`. "
        f"It should read:\n{expected}"
    )
