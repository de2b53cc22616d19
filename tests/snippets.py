"""Code blocks of the documentation, as the tests that run them read them.

A block is found by the heading it sits under and its fence's language, so a test
runs exactly what a reader copies, and fails when the block moves or disappears.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^```(\S*)\s*$")


def blocks_under(page: str, heading: str, lang: str) -> list[str]:
    """The ``lang`` code blocks of ``page`` (relative to the repository root) between
    the heading whose text is ``heading`` and the next heading of the same or a
    higher level. Raises ``LookupError`` when the heading or the blocks are missing."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    level = 0
    inside = False
    found: list[str] = []
    current: list[str] | None = None
    current_lang: str | None = None
    for line in lines:
        fence = _FENCE.match(line)
        if current is not None:
            if fence and not fence.group(1):
                if current_lang == lang:
                    found.append("\n".join(current) + "\n")
                current = None
            else:
                current.append(line)
            continue
        if fence:
            current, current_lang = [], fence.group(1)
            if not inside:
                current_lang = None  # a block outside the section: skipped
            continue
        heading_match = re.match(r"^(#+)\s+(.*?)\s*$", line)
        if heading_match:
            hashes, text = heading_match.groups()
            if inside and len(hashes) <= level:
                break
            if text == heading:
                inside, level = True, len(hashes)
    if not inside:
        raise LookupError(f"{page}: no heading {heading!r}")
    if not found:
        raise LookupError(f"{page}: no {lang!r} block under {heading!r}")
    return found


def block_under(page: str, heading: str, lang: str) -> str:
    """The one ``lang`` block under ``heading`` in ``page`` (exactly one must exist)."""
    found = blocks_under(page, heading, lang)
    if len(found) != 1:
        raise LookupError(f"{page}: {len(found)} {lang!r} blocks under {heading!r}, expected 1")
    return found[0]
