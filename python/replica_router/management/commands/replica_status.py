"""``manage.py replica_status``: the cluster as this process sees it.

Exit codes: 0 every node up in its configured role; 1 the primary is up but a
replica is not (down, lagging, unknown, misconfigured or promoted); 2 the primary is
not up. Usable as a health probe. A lagging replica's row says why (replay paused,
WAL receiver not streaming, over ``MAX_LAG_SECONDS``...).
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand

from replica_router import _runtime
from replica_router.roles import primary_line
from replica_router.states import STATUS_FIELDS
from replica_router.verdict import DEGRADED, EXIT_CODES, OK, UNAVAILABLE, Verdict, verdict

if TYPE_CHECKING:
    from replica_router._core import NodeStatus

#: The last line of the table, per cluster verdict.
SUMMARY: dict[Verdict, str] = {
    OK: "healthy",
    DEGRADED: "degraded: a replica is not serving reads",
    UNAVAILABLE: "primary is not up",
}

#: (key, heading) of each column: the status keys the core's table gives a column.
COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f["name"], f["column"]) for f in STATUS_FIELDS if f["column"] is not None
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def exit_code(nodes: Sequence[Mapping[str, Any]]) -> int:
    """0: healthy; 1: a node other than the primary is not serving; 2: no primary up
    (the cluster verdict's code, :data:`replica_router.verdict.EXIT_CODES`). Roles are
    the observed ones (after a switchover the primary is another node)."""
    return EXIT_CODES[verdict(nodes)]


def prober_line(nodes: list[NodeStatus]) -> str:
    """Which process probes, and how old its last published snapshot is."""
    first = nodes[0]
    pid = first.get("prober_pid")
    if pid is None:
        return "prober: not started"
    who = "shared by this host's workers" if first.get("shared") else "this process only"
    age = first.get("snapshot_age")
    shown = "-" if age is None else f"{age:.3f} s"
    return f"prober: pid {pid} ({who}), snapshot age {shown}"


class Command(BaseCommand):
    help = "Show each database node's health, role, lag and reads, and exit non-zero if unhealthy."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            help="Seconds to wait for first probe answers (default: interval + 2 x timeout).",
        )

    def handle(
        self, *args: Any, json: bool = False, wait: float | None = None, **options: Any
    ) -> None:
        cluster = _runtime.get_cluster()
        cluster.wait_probed(wait)
        nodes = cluster.status()
        word = verdict(nodes)
        code = EXIT_CODES[word]
        roles = dict(cluster.roles())
        if json:
            self.stdout.write(
                _json_dumps(
                    {
                        "nodes": nodes,
                        "decisions": cluster.decisions(),
                        "roles": roles,
                        "exit_code": code,
                    }
                )
            )
        else:
            self._table(nodes)
            self.stdout.write(primary_line(roles))
            self.stdout.write(prober_line(nodes))
            style = self.style.SUCCESS if word == OK else self.style.ERROR
            self.stdout.write(style(f"cluster {SUMMARY[word]}"))
        if code:
            sys.exit(code)

    def _table(self, nodes: list[NodeStatus]) -> None:
        rows = [[title for _, title in COLUMNS]]
        rows += [[_cell(n.get(key)) for key, _ in COLUMNS] for n in nodes]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        for r in rows:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )


def _json_dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
