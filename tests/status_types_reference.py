"""``NodeStatus`` of python/replica_router/status_types.py, rendered from the core's
status table.

``_core.status_fields()`` gives every key of a node's status as the table
(``src/report/fields.rs``) declares it: name, Python type, doc, and whether every
node's dict has it. This renders the two TypedDicts (``_NodeStatusBase``: the keys
every dict has; ``NodeStatus``: those present once the prober started) between two
markers of the module. ``make docs`` rewrites them (``python -m
tests.status_types_reference``); ``tests/fast/test_status_fields.py`` fails when the
module differs, printing what it should say. So a new status key is one table entry
and ``make docs``: nothing to restate by hand.
"""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

from replica_router import _core
from tests.snippets import ROOT

if TYPE_CHECKING:  # a type of the stub only
    from replica_router._core import StatusField

MODULE = "python/replica_router/status_types.py"
START = "# --- NodeStatus: generated from src/report/fields.rs by `make docs` ---"
END = "# --- end of NodeStatus ---"
WIDTH = 92


def _field(f: StatusField) -> list[str]:
    doc = f["doc"].replace("`", "``")
    lines = textwrap.wrap(doc, WIDTH - len("    #: "))
    out = [f"    #: {lines[0]}"] + [f"    #: {more}" for more in lines[1:]]
    return [*out, f"    {f['name']}: {f['type']}"]


def render() -> str:
    """The module's part between the markers (markers included)."""
    fields = _core.status_fields()
    out = [START, "", "", "class _NodeStatusBase(TypedDict):"]
    out.append('    """The keys of every node\'s dict in ``status()``."""')
    out.append("")
    for f in fields:
        if f["required"]:
            out += _field(f)
    out += ["", "", "class NodeStatus(_NodeStatusBase, total=False):"]
    out.append('    """One node in ``status()``. The keys below are present once this process\'s')
    out.append("    prober has started (``state`` is ``\"unknown\"`` without them).\"\"\"")
    out.append("")
    for f in fields:
        if not f["required"]:
            out += _field(f)
    out += ["", "", END]
    return "\n".join(out)


def current() -> str:
    """The module's part between the markers as it is now."""
    text = (ROOT / MODULE).read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def main() -> int:
    path = ROOT / MODULE
    text = path.read_text(encoding="utf-8")
    new = text.replace(current(), render())
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{MODULE}: NodeStatus was rewritten from the status table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
