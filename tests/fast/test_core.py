"""The built core ``replica_router._core`` against its stub, and ``RouteState``.

The stub ``_core.pyi`` is what mypy and readers trust; these tests prove that every
name it declares exists in the built module with the same kind, and that the
frozen ``RouteState`` behaves as documented. No server: a ``Cluster`` built here
points at ports where nothing listens.
"""

from __future__ import annotations

import ast
import inspect
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replica_router import _core
from tests.support import ROOT, offline_databases

STUB = Path(inspect.getfile(_core)).with_name("_core.pyi")
if not STUB.exists():  # an installed wheel without the stub: read the source tree's
    STUB = ROOT / "python" / "replica_router" / "_core.pyi"


def stub_names() -> tuple[dict[str, str], dict[str, set[str]]]:
    """Top-level names of the stub by kind, and each class's members. TypedDicts
    describe dicts for type checkers only and are not in the module."""
    tree = ast.parse(STUB.read_text())
    top: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    typed_dicts = {"TypedDict"}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id in typed_dicts for b in node.bases
        ):
            typed_dicts.add(node.name)
            continue
        if isinstance(node, ast.FunctionDef):
            top[node.name] = "function"
        elif isinstance(node, ast.ClassDef):
            top[node.name] = "class"
            members[node.name] = {
                n.name if isinstance(n, ast.FunctionDef) else n.target.id  # type: ignore[union-attr]
                for n in node.body
                if isinstance(n, ast.FunctionDef)
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top[node.target.id] = "value"
    return top, members


def test_every_stub_name_exists_in_the_built_module() -> None:
    """Proves: each function, class, constant and class member the stub declares is
    in the built module, as a callable, a class or a value."""
    top, members = stub_names()
    assert {"classify_failure", "Cluster", "RouteState", "ConfigError", "REASONS"} <= set(top)
    for name, kind in top.items():
        assert hasattr(_core, name), name
        value = getattr(_core, name)
        if kind == "function":
            assert callable(value) and not isinstance(value, type), name
        elif kind == "class":
            assert isinstance(value, type), name
            missing = {m for m in members[name] if not hasattr(value, m)} - {"__init__"}
            assert not missing, (name, missing)


def test_version_is_cargos() -> None:
    """Proves: ``__version__`` is the one version, from Cargo.toml."""
    cargo = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.MULTILINE)
    assert match is not None
    assert _core.__version__ == match.group(1)
    import replica_router

    assert replica_router.__version__ == _core.__version__


def test_reasons() -> None:
    """Proves: the read-decision reasons are the documented ones, in counter order."""
    assert _core.REASONS == [
        "weighted",
        "transaction",
        "pinned",
        "use_primary",
        "read_your_writes",
        "instance_hint",
        "lag_fallback",
        "down_fallback",
        "retried",
        "test_primary",
        "lag_tolerated",
    ]


def test_config_error_is_a_value_error() -> None:
    """Proves: a cluster that cannot work raises ``ConfigError`` (a ``ValueError``
    with a dotted module name) saying why."""
    assert issubclass(_core.ConfigError, ValueError)
    assert _core.ConfigError.__module__ == "replica_router._core"
    with pytest.raises(_core.ConfigError, match="PRIMARY") as info:
        _core.RouterSettings({"PRIMARY": "nope"}, {"default": {}})
    assert info.value.check_id == "replica_router.E005"
    assert info.value.hint


def test_route_state_defaults_and_fields() -> None:
    """Proves: a new state is outside any unit, unpinned, at depth 0, with no
    read-your-writes position; fields are typed (a bool must be a bool)."""
    st = _core.RouteState()
    assert (st.primary_depth, st.unit, st.pinned, st.pin_until, st.min_lsn) == (
        0,
        False,
        False,
        0.0,
        None,
    )
    assert not st.is_pinned()
    assert "RouteState(" in repr(st)
    with pytest.raises(TypeError):
        _core.RouteState(unit=1)  # type: ignore[arg-type]


def test_route_state_is_frozen_and_replace_copies() -> None:
    """Proves: fields cannot be assigned; ``replace`` returns a changed copy and
    leaves the original alone; an unknown field is a TypeError naming it."""
    st = _core.RouteState(unit=True)
    with pytest.raises(AttributeError):
        st.pinned = True
    changed = st.replace(pinned=True, min_lsn=42)
    assert changed is not st
    assert (changed.unit, changed.pinned, changed.min_lsn) == (True, True, 42)
    assert (st.pinned, st.min_lsn) == (False, None)
    with pytest.raises(TypeError, match="bogus"):
        st.replace(bogus=1)


def test_route_state_is_pinned() -> None:
    """Proves: a state is pinned by a write in its unit, or until ``pin_until``."""
    now = time.monotonic()
    assert _core.RouteState(unit=True, pinned=True).is_pinned()
    assert _core.RouteState(pin_until=now + 10).is_pinned()
    assert not _core.RouteState(pin_until=now - 1).is_pinned()
    assert not _core.RouteState(unit=True, primary_depth=2).is_pinned()


def offline_settings() -> _core.RouterSettings:
    """Settings for a primary and a replica on ports where nothing listens."""
    dbs = offline_databases()
    return _core.RouterSettings(
        {"PROBE_INTERVAL": 0.1, "PROBE_TIMEOUT": 0.3, "REPLICAS": ["replica"]},
        {
            alias: {**dbs[alias], "PASSWORD": "hunter2-secret"}
            for alias in ("default", "replica")
        },
    )


@pytest.fixture
def cluster() -> Iterator[_core.Cluster]:
    """A core cluster of unreachable nodes, closed after the test."""
    c = _core.Cluster(offline_settings())
    try:
        yield c
    finally:
        c.close()


def test_cluster_lifecycle_and_cold_reads(cluster: _core.Cluster) -> None:
    """Proves: a cluster knows its primary and aliases, reads from a cold cluster go
    to the primary (counted), writes name it, ``close()`` stops it, and no
    password shows in its repr or status."""
    assert cluster.primary == "default"
    assert cluster.aliases == ["default", "replica"]
    assert not cluster.closed
    cluster.start()
    assert cluster.running
    assert {cluster.read() for _ in range(100)} == {"default"}
    assert cluster.write() == "default"
    decisions = cluster.decisions()
    assert decisions["writes"] == 1
    assert sum(decisions[r] for r in _core.REASONS) == 100
    status = cluster.status()
    assert [n["alias"] for n in status] == ["default", "replica"]
    assert "hunter2-secret" not in repr(status) + repr(cluster)
    cluster.close()
    assert cluster.closed and not cluster.running


def test_report_failure_on_an_unknown_node(cluster: _core.Cluster) -> None:
    """Proves: a node fault reported for a node that was not taking reads (cold) is
    classified and says so."""
    assert cluster.report_failure("replica", None, "connection refused") == (
        "connection_refused",
        False,
    )
    assert cluster.retry(["default", "replica"]) is None


def test_wait_probed_until_every_state_is_known(cluster: _core.Cluster) -> None:
    """Proves: ``wait_probed`` starts the prober and returns once no node is
    ``unknown``: unreachable nodes are ``down`` after FALL failed probes (within the
    default bound, PROBE_INTERVAL + 2 x PROBE_TIMEOUT); a NaN bound waits for nothing
    and still says whether every state is known."""
    assert cluster.wait_probed() is True
    status = cluster.status()
    assert [n["state"] for n in status] == ["down", "down"], status
    assert cluster.wait_probed(float("nan")) is True


def test_report_failure_classifies_before_it_reports(cluster: _core.Cluster) -> None:
    """Proves: ``report_failure`` classifies by the rules of ``classify_failure`` in
    the same call: an application error is no fault and reports nothing (no passive
    fault counted); a connect's timeout is a connect failure; a query's stays a
    timeout."""
    assert cluster.report_failure("replica", "23505", "duplicate key") == (None, False)
    assert cluster.report_failure("replica", "57014", "canceling statement") == (None, False)
    assert [n["passive_faults"] for n in cluster.status()] == [0, 0]
    timeout = "connection timeout expired"
    assert cluster.report_failure("replica", None, timeout, connecting=True)[0] == "connection_failure"
    assert cluster.report_failure("replica", None, timeout)[0] == "timeout"
    assert cluster.report_failure("nope", None, timeout) == ("timeout", False)


def test_routing_state_from_a_context_var_or_any_callable() -> None:
    """Proves: the core reads the routing state from a ``ContextVar`` given as its bound
    ``get`` (read through the C API) as it would by calling it: each change is seen by
    the next read, a copied context and another thread see their own value; and any
    other callable is called. Counted by reason (a cold cluster reads from the
    primary either way)."""
    import contextvars
    import threading

    var: contextvars.ContextVar[_core.RouteState | None] = contextvars.ContextVar(
        "test_state", default=None
    )
    forced = _core.RouteState(primary_depth=1)
    pinned = _core.RouteState(unit=True, pinned=True)
    by_var = _core.Cluster(offline_settings(), state_getter=var.get)
    by_call = _core.Cluster(offline_settings(), state_getter=lambda: pinned)
    try:

        def use_primary_reads() -> int:
            by_var.read()
            return int(by_var.decisions()["use_primary"])

        assert use_primary_reads() == 0
        token = var.set(forced)
        assert use_primary_reads() == 1
        assert contextvars.copy_context().run(use_primary_reads) == 2
        outside: list[int] = []
        thread = threading.Thread(target=lambda: outside.append(use_primary_reads()))
        thread.start()
        thread.join()
        assert outside == [2], "a new thread has no value: not use_primary"
        var.reset(token)
        assert use_primary_reads() == 2

        def in_a_new_context() -> int:
            var.set(forced)
            return use_primary_reads()

        assert contextvars.Context().run(in_a_new_context) == 3
        assert use_primary_reads() == 3
        by_call.read()
        assert by_call.decisions()["pinned"] == 1
    finally:
        by_var.close()
        by_call.close()


def test_a_failure_counts_for_every_alias_of_its_server() -> None:
    """Proves: ``default`` and the first host of a multi-host ``replica`` (the same
    address, database and login) are one probe target: a node fault reported through
    either is the server's (both nodes count it, the other host nothing), and a login
    refused to this process leaves its reads through both aliases, not the other
    host's."""
    dbs = offline_databases()
    port, other = dbs["default"]["PORT"], dbs["replica"]["PORT"]
    multi = {
        **dbs["default"],
        "HOST": "127.0.0.1,127.0.0.1",
        "PORT": f"{port},{other}",
        "OPTIONS": {"target_session_attrs": "prefer-standby"},
    }
    settings = _core.RouterSettings(
        {"PROBE_INTERVAL": 60, "PROBE_TIMEOUT": 0.3, "REPLICAS": ["replica"]},
        {"default": dbs["default"], "replica": multi},
    )
    c = _core.Cluster(settings)
    try:
        names = [n["alias"] for n in c.status()]
        assert names == ["default", f"replica@127.0.0.1:{port}", f"replica@127.0.0.1:{other}"]
        assert c.report_failure("replica", None, "connection refused", 1)[0] == (
            "connection_refused"
        )
        assert [n["passive_faults"] for n in c.status()] == [1, 1, 0]
        c.report_failure("default", "28P01", 'password authentication failed for user "x"', 0)
        status = c.status()
        assert [n["state"] for n in status][:2] == ["misconfigured", "misconfigured"]
        assert status[2]["state"] != "misconfigured"
    finally:
        c.close()
