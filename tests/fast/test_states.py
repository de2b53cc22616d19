"""The names in :mod:`replica_router.states` against the core's: its state machine's
and its roles' names (read from ``src/``), its ``REASONS`` and ``decisions()``, what a
real ``status()`` reports, and the stub's ``State``, ``Role`` and ``Reason`` types.

No server: the cluster here points at ports where nothing listens (its nodes go
from ``unknown`` to ``down``).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replica_router import _core, states, status_types
from tests.support import ROOT, offline_databases

#: Where the stub's names and TypedDicts are declared (``_core.pyi`` re-exports them).
STUB = Path(status_types.__file__)


def stub_literal(name: str) -> tuple[str, ...]:
    """The values of the stub's ``name = Literal[...]``."""
    for node in ast.parse(STUB.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]
            and isinstance(node.value, ast.Subscript)
        ):
            values = node.value.slice
            elts = values.elts if isinstance(values, ast.Tuple) else [values]
            return tuple(e.value for e in elts if isinstance(e, ast.Constant))
    raise AssertionError(f"no {name} = Literal[...] in {STUB}")


def stub_typed_dict_keys(name: str) -> tuple[str, ...]:
    """The keys of the stub's TypedDict ``name``."""
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return tuple(
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            )
    raise AssertionError(f"no class {name} in {STUB}")


def core_names(enum: str) -> set[str]:
    """The names the core's ``as_str`` gives the variants of the Rust enum ``enum``
    (``State::Up => "up"``), from every source file of the core."""
    pattern = re.compile(rf'\b{enum}::\w+\s*=>\s*"(\w+)"')
    return {m for path in (ROOT / "src").rglob("*.rs") for m in pattern.findall(path.read_text())}


def test_states_are_the_core_state_machines() -> None:
    """Proves: ``STATES`` are exactly the names of the core's node states, and the
    stub's ``State`` type; ``ANSWERING`` are states among them."""
    assert len(set(states.STATES)) == len(states.STATES) == 5
    assert set(states.STATES) == core_names("State")
    assert stub_literal("State") == states.STATES
    assert set(states.ANSWERING) < set(states.STATES)


def test_roles_are_the_cores() -> None:
    """Proves: ``ROLES`` are the core's role names and the stub's ``Role`` type."""
    assert states.ROLES == (states.PRIMARY, states.REPLICA) == ("primary", "replica")
    assert set(states.ROLES) == core_names("Role")
    assert stub_literal("Role") == states.ROLES


def test_reasons_are_the_cores_in_counter_order() -> None:
    """Proves: ``REASONS`` is the core's list in its order, the stub's ``Reason``
    type, and with ``WRITES`` the keys of the stub's ``Decisions``."""
    assert states.REASONS == tuple(_core.REASONS)
    assert stub_literal("Reason") == states.REASONS
    assert stub_typed_dict_keys("Decisions") == (*states.REASONS, states.WRITES)


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


def test_a_running_core_speaks_these_names(cluster: _core.Cluster) -> None:
    """Proves: what a running core reports uses these names: ``decisions()`` has
    one key per reason plus ``WRITES``, ``reads_by_reason`` only reasons, the
    configured roles are ``ROLES``, and states are ``STATES`` (``unknown`` before the
    first probe, ``down`` after unreachable nodes failed FALL probes)."""
    for _ in range(3):
        cluster.read()
    cluster.write()
    assert set(cluster.decisions()) == {*states.REASONS, states.WRITES}
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        nodes = cluster.status()
        seen |= {n["state"] for n in nodes}
        if all(n["state"] == states.DOWN for n in nodes):
            break
        time.sleep(0.05)
    assert seen <= set(states.STATES)
    assert states.DOWN in seen
    for n in cluster.status():
        assert n["configured_role"] in states.ROLES
        assert set(n["reads_by_reason"]) <= set(states.REASONS)
        assert n.get("observed_role") is None  # nothing answered
