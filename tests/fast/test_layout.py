"""The package's shape, read from its source: no import circle between its modules,
and every file under 400 lines.

Imports are read with ``ast``, wherever they sit (module level, inside a function,
under ``TYPE_CHECKING``): an import deferred into a function is still a dependency,
and deferring one only hides a circle. ``from replica_router import conf`` is an
import of ``replica_router.conf``; ``from replica_router import decisions`` is one
of the package's ``__init__``. The compiled core (``_core``) is a module too, read
from its stub.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "replica_router"
NAME = PACKAGE.name


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name: its Python files, and the compiled
    core by its stub (``_core.pyi``)."""
    found: dict[str, Path] = {}
    sources = sorted(PACKAGE.rglob("*.py"))
    stubs = [p for p in sorted(PACKAGE.rglob("*.pyi")) if not p.with_suffix(".py").exists()]
    for path in sources + stubs:
        parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's), and
    modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_circles() -> None:
    """Proves: the check below can fail (a circle of three and one of two are found,
    a chain is not)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(circles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_deferred_and_from_imports() -> None:
    """Proves: the graph holds imports made inside functions and ``from package
    import module`` (the forms the old circles used)."""
    graph = import_graph()
    assert f"{NAME}._runtime" in graph[f"{NAME}.faults"]  # from replica_router import _runtime
    assert f"{NAME}.roles" in graph[f"{NAME}.faults"]  # inside node_fault()
    assert f"{NAME}.checks" in graph[f"{NAME}.testing"]  # inside a function
    assert f"{NAME}._core" in graph[f"{NAME}.faults"]  # the compiled core, by its stub


def test_no_import_circle() -> None:
    """Proves: no module of the package imports one that imports it back, directly
    or through others."""
    assert circles(import_graph()) == []


def test_every_file_is_under_400_lines() -> None:
    """Proves: the house rule on file length holds for the Python package."""
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py*")
        if p.suffix in (".py", ".pyi") and (n := len(p.read_text().splitlines())) >= 400
    }
    assert long == {}
