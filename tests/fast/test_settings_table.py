"""The settings table (``src/settings/table.rs``) against what is derived from it on
the Python side: ``RouterSettings``' attributes and their stub, the keys, the
shared-health identity, and docs/settings.md's reference (``make docs``).
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

import pytest

from replica_router import _core, conf
from tests import settings_reference as ref
from tests.snippets import ROOT

if TYPE_CHECKING:
    from replica_router._core import SettingInfo

#: The tutorial's two aliases (nothing needs to listen: settings only).
DATABASES = {
    alias: {"ENGINE": "replica_router.backends.postgresql", "HOST": "127.0.0.1", "PORT": port}
    for alias, port in (("default", "5432"), ("replica", "5433"))
}
ROWS = _core.RouterSettings.reference()
OPTIONS = [r for r in ROWS if r["attribute"] is not None]


def python_blocks_after(text: str, phrase: str) -> list[str]:
    """The first ```python block after each occurrence of ``phrase`` in ``text``."""
    blocks = []
    for match in re.finditer(re.escape(phrase), text):
        block = re.search(r"^```python\n(.*?)^```", text[match.end() :], re.S | re.M)
        if block:
            blocks.append(block.group(1))
    return blocks


def test_docs_reference_is_generated_from_the_table() -> None:
    """Proves: docs/settings.md's defaults block, key table and shared-health note are
    exactly what the settings table renders (else: the expected text, and ``make docs``)."""
    _, current, _ = ref.split_page((ROOT / ref.PAGE).read_text(encoding="utf-8"))
    expected = ref.render(ROWS)
    assert current == expected, (
        f"{ref.PAGE} is out of date with src/settings/table.rs: run `make docs`. "
        f"It should say:\n{expected}"
    )


def test_the_table_lists_the_keys_in_order() -> None:
    """Proves: the keys (``conf.KEYS``, the unknown-key error's list) are the table's
    rows, in order; each attribute is the key in lower case."""
    assert conf.KEYS == tuple(r["key"] for r in ROWS)
    assert [r["attribute"] for r in OPTIONS] == [r["key"].lower() for r in OPTIONS]
    assert {r["key"] for r in ROWS if r["attribute"] is None} == {"PRIMARY", "REPLICAS"}


def test_every_key_the_docs_name_is_in_the_table_with_its_default() -> None:
    """Proves: every key of a ``REPLICA_ROUTER = {...}`` in README.md or docs/ is a
    key of the table, and each block introduced as "the defaults" gives every key it
    lists the table's default (run as written)."""
    defaults = {r["key"]: ast.literal_eval(r["default"]) for r in ROWS}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named: set[str] = set()
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for literal in re.findall(r"^REPLICA_ROUTER = \{\n(.*?)^\}", text, re.S | re.M):
            named |= set(re.findall(r'^ {4}"([A-Z_]+)":', literal, re.M))
        named |= set(re.findall(r'REPLICA_ROUTER\["([A-Z_]+)"\]', text))
        for block in python_blocks_after(text, "These are the defaults"):
            namespace: dict[str, Any] = {}
            exec(compile(block, str(page), "exec"), namespace)
            given = namespace["REPLICA_ROUTER"]
            assert {k: defaults[k] for k in given} == given, page
            checked += 1
    assert named and named <= set(conf.KEYS), named - set(conf.KEYS)
    assert checked >= 1  # docs/settings.md's generated block at least


def test_attributes_are_the_table_defaults_and_the_stub_types_them() -> None:
    """Proves: with no ``REPLICA_ROUTER``, each attribute of ``RouterSettings`` is its
    row's default (``None`` where the row's default is off), and the stub declares it
    as a property of the row's Python type."""
    s = _core.RouterSettings(None, DATABASES)
    for r in OPTIONS:
        assert getattr(s, str(r["attribute"])) == ast.literal_eval(r["default"]), r["key"]
    stub = ast.parse((ROOT / "python/replica_router/_core.pyi").read_text(encoding="utf-8"))
    (cls,) = [n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "RouterSettings"]
    typed = {
        f.name: ast.unparse(f.returns)
        for f in cls.body
        if isinstance(f, ast.FunctionDef) and f.returns is not None
    }
    expected = {str(r["attribute"]): str(r["type"]) for r in OPTIONS}
    missing = {a: t for a, t in expected.items() if typed.get(a) != t}
    lines = "\n".join(f"    @property\n    def {a}(self) -> {t}: ..." for a, t in missing.items())
    assert not missing, f"_core.pyi's RouterSettings should declare:\n{lines}"


def test_every_key_is_in_the_identity_or_says_why_not() -> None:
    """Proves: each key decides whether processes share health, or its row says why it
    does not; what the prober observes or decides by is in it."""
    for r in ROWS:
        assert r["in_identity"] or len(r["identity_note"]) > 10, r
    inside = {r["key"] for r in ROWS if r["in_identity"]}
    prober = {"PROBE_INTERVAL", "PROBE_TIMEOUT", "FALL", "RISE", "MAX_LAG_SECONDS"}
    assert prober | {"MAX_LAG_BYTES", "LAG_CEILING_SECONDS", "REPLICAS"} <= inside


@pytest.mark.parametrize("none_is_off", [False, True])
def test_a_new_row_is_documented_with_no_other_edit(none_is_off: bool) -> None:
    """Proves: the docs' reference is rendered from the rows alone: a new row appears
    in the defaults block, the key table and the shared-health note."""
    new: SettingInfo = {
        "key": "NEW_GRACE_SECONDS",
        "attribute": "new_grace_seconds",
        "type": "float | None" if none_is_off else "float",
        "default": "2.5",
        "accepts": "a number > 0" + (", or `None` (off)" if none_is_off else ""),
        "check_id": "replica_router.E007",
        "doc": "seconds of grace",
        "see": "[lag](lag.md)",
        "in_identity": True,
        "identity_note": "",
    }
    text = ref.render([*ROWS, new])
    assert '    "NEW_GRACE_SECONDS": 2.5,' in text
    assert f"| `NEW_GRACE_SECONDS` | `2.5` | {new['accepts']} | `E007` |" in text
    note = " ".join(text.rsplit("\n\n", 1)[-1].split())
    assert "`LAG_CEILING_SECONDS`, `PATRONI_URLS`, `NEW_GRACE_SECONDS`, and each node's" in note
