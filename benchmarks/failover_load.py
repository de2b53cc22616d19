"""Reads and writes over HTTP for ``benchmarks/failover.py``, run as its own process.

``python benchmarks/failover_load.py --port 8000 --seconds 18 --run-id 3 --out r.tsv``

Client threads with keep-alive connections send, at random, a write (``POST
/rows/create/``, a new row named ``<thread>-<seq>`` with ``count`` = the run id) for
``--write-share`` of the requests and a read (``GET /rows/?limit=1``) for the rest,
until the time is up. One line per request: start (``time.monotonic()``, comparable
with the driver's clock), duration, ``r`` or ``w``, outcome (HTTP status or
``error``), and the alias that answered, the error's type, or for a write the row's
name (so that acknowledged writes can be looked for on the final primary).
Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from pathlib import Path

# A keep-alive connection the server closed while idle fails before any byte of the
# answer; HTTP clients send such a request again on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
READ_PATH = "/rows/?limit=1"
WRITE_PATH = "/rows/create/"

Record = tuple[float, float, str, str, str]


def _one(conn: http.client.HTTPConnection, write: bool, name: str, run_id: int) -> tuple[str, str]:
    if write:
        body = json.dumps({"name": name, "count": run_id, "average": 1.0})
        conn.request("POST", WRITE_PATH, body, {"Content-Type": "application/json"})
    else:
        conn.request("GET", READ_PATH)
    resp = conn.getresponse()
    raw = resp.read()
    if resp.will_close:
        conn.close()
    detail = name if write else ""
    if not write and resp.status == 200:
        detail = str(json.loads(raw).get("db", ""))
    return str(resp.status), detail


def client(
    index: int, args: argparse.Namespace, until: float, out: list[Record], stale: list[int]
) -> None:
    rng = random.Random(index * 7919 + args.run_id)
    conn: http.client.HTTPConnection | None = None
    seq = 0
    while time.monotonic() < until:
        write = rng.random() < args.write_share
        seq += 1
        name = f"{index}-{seq}"
        start = time.monotonic()
        outcome, detail = "error", name if write else ""
        for attempt in (1, 2):
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
            c = conn
            try:
                outcome, detail = _one(c, write, name, args.run_id)
                if c.sock is None:
                    conn = None
                break
            except _STALE as exc:
                c.close()
                conn = None
                detail = f"{name} {type(exc).__name__}" if write else type(exc).__name__
                if reused and attempt == 1:
                    stale[0] += 1
                    continue
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                c.close()
                conn = None
                detail = f"{name} {type(exc).__name__}" if write else type(exc).__name__
                break
        out.append((start, time.monotonic() - start, "w" if write else "r", outcome, detail))
    if conn is not None:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, required=True, help="time to send requests")
    parser.add_argument("--write-share", type=float, default=0.25)
    parser.add_argument("--run-id", type=int, required=True, help="the rows' count column")
    parser.add_argument("--timeout", type=float, default=30.0, help="socket timeout per request")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    until = time.monotonic() + args.seconds
    per_thread: list[list[Record]] = [[] for _ in range(args.threads)]
    stale = [[0] for _ in range(args.threads)]
    threads = [
        threading.Thread(target=client, args=(i, args, until, per_thread[i], stale[i]), daemon=True)
        for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 2 * args.timeout + 5)
    records = sorted(r for recs in per_thread for r in recs)
    with args.out.open("w") as f:
        f.write(f"# stale keep-alive connections retried: {sum(s[0] for s in stale)}\n")
        for start, duration, kind, outcome, detail in records:
            f.write(f"{start:.6f}\t{duration:.6f}\t{kind}\t{outcome}\t{detail}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
