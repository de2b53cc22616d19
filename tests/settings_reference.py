"""The settings reference of docs/settings.md, rendered from the core's settings table.

``RouterSettings.reference()`` gives every ``REPLICA_ROUTER`` key as the table
(``src/settings/table.rs``) declares it; this renders the defaults block, the key
table and the shared-health note between two markers of the page. ``make docs``
rewrites them (``python -m tests.settings_reference``); ``tests/fast/
test_settings_table.py`` fails when the page differs, printing what it should say.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from replica_router._core import RouterSettings
from tests.snippets import ROOT

if TYPE_CHECKING:  # a type of the stub only
    from replica_router._core import SettingInfo

PAGE = "docs/settings.md"
START = "<!-- settings-reference: generated from src/settings/table.rs by `make docs` -->"
END = "<!-- end of settings-reference -->"
#: The page's lines (and the defaults block's comments) wrap at this width.
WIDTH = 92


def rows() -> list[SettingInfo]:
    return RouterSettings.reference()


def defaults_block(rows: Sequence[SettingInfo]) -> list[str]:
    """``REPLICA_ROUTER = {...}`` with every default, each commented with its doc."""
    out = ["```python", "REPLICA_ROUTER = {"]
    heads = [f'    "{r["key"]}": {r["default"]},' for r in rows]
    column = max(map(len, heads)) + 1
    for r, head in zip(rows, heads, strict=True):
        comment = r["doc"].replace("`", "")
        wrapped = textwrap.wrap(comment, WIDTH - column - 2) or [""]
        out.append(f"{head:<{column}}# {wrapped[0]}")
        out.extend(f"{'':<{column}}# {more}" for more in wrapped[1:])
    out += ["}", "```"]
    return out


def key_table(rows: Sequence[SettingInfo]) -> list[str]:
    """One row per key: its default, what it accepts, the check id of a bad value."""
    out = ["| key | default | accepts | error | meaning | see |", "|---|---|---|---|---|---|"]
    for r in rows:
        check = r["check_id"].rsplit(".", 1)[-1]
        out.append(
            f"| `{r['key']}` | `{r['default']}` | {r['accepts']} | `{check}` | {r['doc']} "
            f"| {r['see']} |"
        )
    return out


def identity_note(rows: Sequence[SettingInfo]) -> list[str]:
    """Which keys decide whether worker processes share one prober."""
    shared = ", ".join(f"`{r['key']}`" for r in rows if r["in_identity"])
    own = "; ".join(f"`{r['key']}` ({r['identity_note']})" for r in rows if not r["in_identity"])
    text = (
        f"Worker processes share one prober ([shared health](shared-health.md)) only when "
        f"these keys are equal: {shared}, and each node's `DATABASES` connection settings "
        f"(the password included). The others act in each process on its own: {own}."
    )
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False)


def render(rows: Sequence[SettingInfo]) -> str:
    """The generated part of the page, markers included."""
    lines = [START, *defaults_block(rows), "", *key_table(rows), "", *identity_note(rows), END]
    return "\n".join(lines) + "\n"


def split_page(text: str) -> tuple[str, str, str]:
    """The page before the generated part, the part (markers included), and after."""
    start = text.index(START)
    end = text.index(END, start) + len(END) + 1
    return text[:start], text[start:end], text[end:]


def main() -> int:
    """Rewrites the generated part of docs/settings.md; says whether it changed."""
    path = ROOT / PAGE
    before, current, after = split_page(path.read_text(encoding="utf-8"))
    expected = render(rows())
    if current == expected:
        print(f"{PAGE}: the settings reference is up to date")
        return 0
    path.write_text(before + expected + after, encoding="utf-8")
    print(f"{PAGE}: the settings reference was rewritten from the settings table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
