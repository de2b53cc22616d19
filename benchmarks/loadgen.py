"""HTTP load for ``benchmarks/faults.py``, run as its own process (standard library only).

``python benchmarks/loadgen.py --port 8000 --seconds 13 --out requests.tsv``

Client threads with keep-alive connections send ``GET <path>`` to 127.0.0.1 until the
time is up (the last requests finish within ``--timeout`` after that), then write one
line per request: start (``time.monotonic()``, system-wide on Linux, so comparable
with the driver's clock), duration in seconds, outcome (the HTTP status, or ``error``),
and the database alias the response names (or the error's type). With ``--row-field
NAME``, a fifth column holds that field of the first row of the answer (``rows[0]``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path

# A keep-alive connection the server closed while idle fails before any byte of the
# answer; any HTTP client sends such a request again on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

Record = tuple[float, float, str, str, str]


def client(
    port: int,
    path: str,
    until: float,
    timeout: float,
    out: list[Record],
    stale: list[int],
    row_field: str | None = None,
) -> None:
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < until:
        start = time.monotonic()
        outcome, detail, field = "error", "", ""
        for attempt in (1, 2):
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            c = conn
            try:
                c.request("GET", path)
                resp = c.getresponse()
                body = resp.read()
                outcome = str(resp.status)
                if resp.status == 200:
                    answer = json.loads(body)
                    detail = str(answer.get("db", ""))
                    if row_field and answer.get("rows"):
                        field = str(answer["rows"][0].get(row_field, ""))
                if resp.will_close:
                    c.close()
                    conn = None
                break
            except _STALE as exc:
                c.close()
                conn = None
                detail = type(exc).__name__
                if reused and attempt == 1:
                    stale[0] += 1
                    continue
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                c.close()
                conn = None
                detail = type(exc).__name__
                break
        out.append((start, time.monotonic() - start, outcome, detail, field))
    if conn is not None:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/rows/?limit=1")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, required=True, help="time to send requests")
    parser.add_argument("--timeout", type=float, default=15.0, help="socket timeout per request")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--row-field", help="also record this field of rows[0]")
    args = parser.parse_args(argv)
    until = time.monotonic() + args.seconds
    per_thread: list[list[Record]] = [[] for _ in range(args.threads)]
    stale = [[0] for _ in range(args.threads)]
    threads = [
        threading.Thread(
            target=client,
            args=(
                args.port,
                args.path,
                until,
                args.timeout,
                per_thread[i],
                stale[i],
                args.row_field,
            ),
            daemon=True,
        )
        for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 2 * args.timeout + 5)
    records = sorted(r for recs in per_thread for r in recs)
    with args.out.open("w") as f:
        f.write(f"# stale keep-alive connections retried: {sum(s[0] for s in stale)}\n")
        for start, duration, outcome, detail, field in records:
            extra = f"\t{field}" if args.row_field else ""
            f.write(f"{start:.6f}\t{duration:.6f}\t{outcome}\t{detail}{extra}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
