"""The numbers of ``benchmarks/failover.py``: one :class:`Result` per run, read from the
load generator's records and gunicorn's log, and the Markdown table."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: The last line of a traceback in gunicorn's log: ``module.Error: message``.
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Transaction)\w*): (.*)$")


@dataclass
class Result:
    """One event under load with one setup and one ``CONN_MAX_AGE``."""

    event: str
    conn_max_age: int
    setup: str
    run_id: int
    requests: int = 0
    reads: int = 0
    writes: int = 0
    failed_reads: int = 0
    failed_writes: int = 0
    #: Event until writes succeed and keep succeeding; None: not back by the end.
    write_outage_s: float | None = None
    #: Event until the new leader answers ``GET /primary`` 200.
    promotion_s: float | None = None
    slowest_read_s: float = 0.0
    slowest_write_s: float = 0.0
    new_primary: str = ""
    final_primary: str = ""
    acked_writes: int = 0
    acked_missing: int | None = None
    missing_names: list[str] = field(default_factory=list)
    event_at: float = 0.0  # time.monotonic(), as in the records
    event_wall: float = 0.0  # time.time(), to find the event in the logs
    failures: dict[str, int] = field(default_factory=dict)
    errors_logged: dict[str, int] = field(default_factory=dict)
    router_log: list[str] = field(default_factory=list)
    per_second: list[dict[str, int]] = field(default_factory=list)
    stale_keepalive_retries: int = 0
    notes: list[str] = field(default_factory=list)
    #: Why the run could not be measured (the setup did not start), if it could not.
    run_error: str = ""
    records: str = ""
    log: str = ""

    def line(self) -> str:
        """A one-line progress report."""
        outage = "not back" if self.write_outage_s is None else f"{self.write_outage_s:.2f} s"
        promo = "-" if self.promotion_s is None else f"{self.promotion_s:.2f} s"
        return (
            f"{self.event} CONN_MAX_AGE={self.conn_max_age} {self.setup}: {self.requests} "
            f"requests, {self.failed_reads} failed reads, {self.failed_writes} failed writes, "
            f"write outage {outage}, promotion {promo}, acked missing {self.acked_missing}"
            + (f" ({'; '.join(self.notes)})" if self.notes else "")
            + (f" RUN FAILED: {self.run_error}" if self.run_error else "")
        )


Record = tuple[float, float, str, str, str]


def read_records(path: Path) -> tuple[list[Record], int]:
    """The load generator's records and its count of stale keep-alive retries."""
    records: list[Record] = []
    stale = 0
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            stale = int(line.rsplit(":", 1)[1])
            continue
        start, duration, kind, outcome, detail = line.split("\t")
        records.append((float(start), float(duration), kind, outcome, detail))
    return records, stale


#: A pause between acknowledged writes longer than this counts as an outage even if
#: no write failed (writes that wait for a primary and then succeed). Under load on a
#: 2-core machine writes are acknowledged every few milliseconds.
GAP = 0.5


def write_outage(records: list[Record], event: float) -> float | None:
    """Seconds from ``event`` until writes succeed and keep succeeding.

    Two ways writes are out, the later end counts: (1) failures: after the last failed
    write (by start), the first write started later that succeeded, at its end; (2)
    waits: a pause longer than :data:`GAP` between acknowledgements after the event
    (from the event itself), until the acknowledgement that ends it. None: no write
    started after the last failed one succeeded (not back).
    """
    writes = [r for r in records if r[2] == "w"]
    failed_starts = [r[0] for r in writes if r[3] != "201" and r[0] + r[1] >= event]
    since = max([event, *failed_starts])
    after = [r[0] + r[1] for r in writes if r[3] == "201" and r[0] >= since]
    if not after:
        return None
    end = min(after)
    previous = event
    for ack in sorted(r[0] + r[1] for r in writes if r[3] == "201" and r[0] + r[1] > event):
        if ack - previous > GAP:
            end = max(end, ack)
        previous = ack
    return end - event


def summarize(res: Result, records_path: Path, log_path: Path, t0: float) -> list[str]:
    """Fill ``res`` from the records and the log; return the acknowledged writes' names."""
    records, res.stale_keepalive_retries = read_records(records_path)
    res.requests = len(records)
    reads = [r for r in records if r[2] == "r"]
    writes = [r for r in records if r[2] == "w"]
    res.reads, res.writes = len(reads), len(writes)
    res.failed_reads = sum(1 for r in reads if r[3] != "200")
    res.failed_writes = sum(1 for r in writes if r[3] != "201")
    acked = [r[4] for r in writes if r[3] == "201"]
    res.acked_writes = len(acked)
    res.write_outage_s = write_outage(records, res.event_at) if res.event_at else None
    res.slowest_read_s = max((r[1] for r in reads), default=0.0)
    res.slowest_write_s = max((r[1] for r in writes), default=0.0)
    res.failures = dict(
        Counter(
            f"{r[2]} {r[3]}" + (f" {r[4].split(' ', 1)[-1]}" if r[3] == "error" else "")
            for r in records
            if r[3] not in ("200", "201")
        )
    )
    seconds: dict[int, Counter[str]] = {}
    for start, duration, kind, outcome, _ in records:
        sec = int((start + duration - res.event_at) // 1)
        ok = outcome in ("200", "201")
        seconds.setdefault(sec, Counter())[f"{kind}_{'ok' if ok else 'failed'}"] += 1
    res.per_second = [
        {"second_from_event": s, **{k: c[k] for k in ("r_ok", "r_failed", "w_ok", "w_failed")}}
        for s, c in sorted(seconds.items())
    ]
    errors: Counter[str] = Counter()
    router_log: list[str] = []
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        m = _EXCEPTION.match(line.strip())
        if m:
            errors[f"{m.group(1)}: {m.group(2)[:120]}"] += 1
        elif " replica_router" in line and ("WARNING" in line or "ERROR" in line):
            router_log.append(line[:300])
    res.errors_logged = dict(errors.most_common(10))
    res.router_log = router_log[:40]
    return acked


def _s(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.2f}"


def table(results: list[Result], labels: dict[str, str]) -> str:
    """The Markdown table of all runs."""
    lines = [
        "| event | CONN_MAX_AGE | setup | requests (reads / writes) | failed reads | "
        "failed writes | write outage s | promotion s | slowest read / write s | "
        "acked writes missing |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.run_error:
            label = labels.get(r.setup, r.setup)
            lines.append(f"| {r.event} | {r.conn_max_age} | {label} | run failed: {r.run_error[:80]} |"
                         " | | | | | |")  # fmt: skip
            continue
        missing = "-" if r.acked_missing is None else f"{r.acked_missing} of {r.acked_writes}"
        lines.append(
            f"| {r.event} | {r.conn_max_age} | {labels.get(r.setup, r.setup)} | "
            f"{r.requests} ({r.reads} / {r.writes}) | {r.failed_reads} | {r.failed_writes} | "
            f"{_s(r.write_outage_s, 'not back')} | {_s(r.promotion_s, '-')} | "
            f"{r.slowest_read_s:.2f} / {r.slowest_write_s:.2f} | {missing} |"
        )
    return "\n".join(lines)
