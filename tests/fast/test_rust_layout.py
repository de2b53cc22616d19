"""The Rust crate's shape, read from its source: no import circle between its modules,
every file under 400 lines, and PyO3 only in the binding modules.

A module is a file (``src/step.rs`` is ``step``, ``src/shm/mod.rs`` is ``shm``,
``src/step/herd.rs`` is ``step::herd``). Module ``a`` depends on ``b`` when ``a``
names something of ``b``: in a ``use`` (groups expanded), or in a path in the code
(``crate::x::f()``, ``super::T``, ``herd::check_herd``). A path is resolved to the
deepest module file it goes through, so ``crate::shm::clock::now_ns`` is a use of
``shm::clock`` and ``crate::shm::Publisher`` one of ``shm``. A child naming its
parent's items (``super::Event``) is a dependency like any other: deferring a circle
into a child module only hides it. Declaring a child (``mod herd;``) is not a use.
Test code (``#[cfg(test)]`` items and the modules they declare) is left out: tests
may reach anywhere. Comments and string literals are skipped.

Run ``python -m tests.fast.test_rust_layout`` for the graph and any circle.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.fast.test_layout import circles

SRC = Path(__file__).resolve().parents[2] / "src"

# Where PyO3 may be used: the module root, the bindings (``bindings`` and its files)
# and the Python-facing glue. Every other module takes and returns plain values and is
# tested with `cargo test` alone.
PYO3_MODULES = {"crate", "bindings", "context", "django_conn", "py_settings", "router"}


def binds(name: str) -> bool:
    """Whether module ``name`` may use PyO3."""
    return name.split("::")[0] in PYO3_MODULES

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_name(path: Path) -> str:
    """The module path of a source file (``crate`` for ``lib.rs``)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts == ["lib"]:
        return "crate"
    if parts[-1] == "mod":
        parts.pop()
    return "::".join(parts)


def strip(text: str) -> str:
    """The code without comments, string and char literals (each left as ``""``)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not text[i - 1].isalnum()):
            end = text.find('"' + m.group(1), m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and (m := re.compile(r"'(?:\\[^']{1,10}|[^\\'])'").match(text, i)):
            i = m.end()
            out.append('""')
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _item_end(code: str, i: int) -> int:
    """The end of the item starting at ``i``: after its ``;`` or its braced body."""
    depth = 0
    while i < len(code):
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            level = 0
            while i < len(code):
                level += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
                if level == 0:
                    return i
        i += 1
    return i


def without_tests(code: str) -> tuple[str, set[str]]:
    """The code without its ``#[cfg(test)]`` items, and the child modules they declare."""
    test_children: set[str] = set()
    attr = re.compile(r"#\[cfg\(test\)\]\s*")
    while m := attr.search(code):
        start = m.end()
        while other := re.compile(r"#\[[^\]]*\]\s*").match(code, start):
            start = other.end()
        if decl := re.compile(rf"(?:pub(?:\([^)]*\))?\s+)?mod\s+({_IDENT})\s*;").match(code, start):
            test_children.add(decl.group(1))
        code = code[: m.start()] + code[_item_end(code, start) :]
    return code, test_children


def expand_use(tree: str) -> list[str]:
    """The full paths of one ``use`` tree: ``a::{b, c::{d, self}}`` gives ``a::b``,
    ``a::c::d`` and ``a::c``."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(rf"as{_IDENT}$", "", tree).removesuffix("::self")] if tree else []
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    parts, depth, last = [], 0, 0
    for k, c in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            parts.append(inner[last:k])
            last = k + 1
    parts.append(inner[last:])
    return [p for part in parts if part for p in expand_use(prefix + part)]


def resolve(path: list[str], here: str, children: set[str], known: set[str]) -> str | None:
    """The module a path (its segments) names, from module ``here``; ``None`` for a
    path outside the crate."""
    base = [] if here == "crate" else here.split("::")
    head = path[0]
    if head == "crate":
        segments, rest = [], path[1:]
    elif head in ("super", "self"):
        segments, rest = list(base), list(path)
        while rest and rest[0] in ("super", "self"):
            if rest.pop(0) == "super":
                segments.pop()
    elif head in children:
        segments, rest = list(base), list(path)
    else:
        return None
    found = "::".join(segments) or "crate"
    for seg in rest:
        candidate = "::".join([*segments, seg])
        if candidate not in known:
            break
        segments.append(seg)
        found = candidate
    return found


def read_crate() -> tuple[dict[str, set[str]], dict[str, Path], set[str]]:
    """The module graph, each module's file, and the test modules left out."""
    files = {module_name(p): p for p in sorted(SRC.rglob("*.rs"))}
    known = set(files)
    code: dict[str, str] = {}
    tests: set[str] = set()
    for name, path in files.items():
        code[name], test_children = without_tests(strip(path.read_text()))
        prefix = "" if name == "crate" else name + "::"
        tests.update(prefix + c for c in test_children)
        # `#[cfg(test)] #[path = "x_tests.rs"] mod tests;` names its file itself.
        for file in re.findall(r'#\[cfg\(test\)\]\s*#\[path\s*=\s*"([^"]+)"\]', path.read_text()):
            tests.add(module_name(path.parent / file))
    # A test module's own children are test code too.
    tests = {m for m in known if any(m == t or m.startswith(t + "::") for t in tests)}
    graph: dict[str, set[str]] = {}
    for name in sorted(known - tests):
        text = code[name]
        children = set(re.findall(rf"\bmod\s+({_IDENT})\s*;", text))
        paths: list[str] = []
        for use in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand_use(use.group(1)))
        text = re.sub(r"\buse\s+[^;]+;", ";", text)
        heads = "|".join(["crate", "super", "self", *sorted(children)])
        paths.extend(re.findall(rf"(?<![\w:])((?:{heads})(?:::{_IDENT})+)", text))
        targets = {resolve(p.split("::"), name, children, known) for p in paths}
        graph[name] = {t for t in targets if t and t != name and t not in tests}
    return graph, files, tests


def crossing(found: list[list[str]]) -> list[list[str]]:
    """The circles between top-level modules. A circle inside one (``shm`` and
    ``shm::follow``, ``bindings`` and ``bindings::roles``) is one module split into
    files by concern, each part naming the others' items as the compiler sees one
    module; the layering is between top-level modules."""
    return [c for c in found if len({m.split("::")[0] for m in c}) > 1]


def test_the_reader_sees_every_form_of_path() -> None:
    """Proves: the reader resolves the forms the crate uses (groups, ``super``,
    a child's path, inline paths) and skips comments, strings and tests."""
    assert expand_use("crate::a::{b, c::{d, self}, e as f}") == [
        "crate::a::b",
        "crate::a::c::d",
        "crate::a::c",
        "crate::a::e",
    ]
    code = strip('let s = "crate::x::y"; // crate::z\n/* crate::w */ let c = \'"\';')
    assert "crate" not in code
    kept, children = without_tests("fn a() {}\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod t { use crate::x; }\n")
    assert children == {"tests"} and "crate" not in kept and "fn a" in kept
    known = {"crate", "shm", "shm::clock", "shm::follow", "step", "step::herd"}
    assert resolve(["super", "clock", "now_ns"], "shm::follow", set(), known) == "shm::clock"
    assert resolve(["super", "Sharing"], "shm::follow", set(), known) == "shm"
    assert resolve(["herd", "check_herd"], "step", {"herd"}, known) == "step::herd"
    assert resolve(["crate", "shm", "Publisher"], "step", set(), known) == "shm"
    assert resolve(["std", "sync"], "step", set(), known) is None


def test_no_import_circle_in_the_crate() -> None:
    """Proves: no module of the crate depends on one that depends on it back,
    directly or through others (through a child module included)."""
    graph, _, _ = read_crate()
    assert "step" in graph and graph["crate"], "the reader found the crate's modules"
    assert crossing(circles(graph)) == []


def test_a_circle_through_a_child_module_is_found() -> None:
    """Proves: a circle that passes through another module's child is one between
    top-level modules (``a`` uses ``b``, which uses ``a``'s child); one inside a
    module is not."""
    graph = {"a": {"b"}, "b": {"a::c"}, "a::c": {"a"}, "d": {"d::e"}, "d::e": {"d"}}
    assert crossing(circles(graph)) == [["a", "a::c", "b"]]


def test_every_rust_file_is_under_400_lines() -> None:
    """Proves: the house rule on file length holds for the Rust crate (tests too)."""
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.rs")
        if (n := len(p.read_text().splitlines())) >= 400
    }
    assert long == {}


def test_pyo3_only_in_the_bindings() -> None:
    """Proves: the modules outside the bindings (the pure core: step, select, health,
    lag, roles, fault, ...) neither use PyO3 nor depend on a module that does."""
    graph, files, tests = read_crate()
    uses_pyo3 = {
        name
        for name, path in files.items()
        if name not in tests and re.search(r"\bpyo3::", without_tests(strip(path.read_text()))[0])
    }
    assert "bindings" in uses_pyo3, "the reader sees PyO3 where it is"
    assert {name for name in uses_pyo3 if not binds(name)} == set()
    reaching = {name: sorted(filter(binds, graph[name])) for name in graph if not binds(name)}
    assert {k: v for k, v in reaching.items() if v} == {}


def main() -> int:
    """Prints each module's dependencies and the circles; exit status 1 on a circle."""
    graph, _, tests = read_crate()
    for name in sorted(graph):
        print(f"{name} -> {', '.join(sorted(graph[name])) or '-'}")
    print(f"(test modules left out: {len(tests)})")
    found = circles(graph)
    for circle in found:
        allowed = "" if circle in crossing(found) else " (inside one module: allowed)"
        print("CIRCLE:", " <-> ".join(circle) + allowed)
    return 1 if crossing(found) else 0


if __name__ == "__main__":
    sys.exit(main())
