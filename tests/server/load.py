"""Reading and writing threads against the router, for role-change tests.

Each thread has its own Django connections and routing context; every outcome is
recorded with its time, so a test can say when writes came back.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from django.db import connections
from router.models import ReplicationModel

import replica_router

__all__ = ["Load"]


class Load:
    """``writers`` threads inserting rows (each a new value) and ``readers`` threads
    reading, until the ``with`` block ends."""

    def __init__(self, writers: int = 2, readers: int = 2, pause: float = 0.01) -> None:
        self.pause = pause
        self.stop = threading.Event()
        self.lock = threading.Lock()
        #: Values of acknowledged writes, and (time, value) of each.
        self.acked: list[str] = []
        self.acked_at: list[tuple[float, str]] = []
        self.failed_writes: list[tuple[float, str]] = []
        self.failed_reads: list[tuple[float, str]] = []
        self.reads = 0
        self.threads = [
            threading.Thread(target=self._write, args=(i,), name=f"load-writer-{i}", daemon=True)
            for i in range(writers)
        ] + [
            threading.Thread(target=self._read, name=f"load-reader-{i}", daemon=True)
            for i in range(readers)
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _write(self, i: int) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                value = f"w{i}-{n}"
                try:
                    with replica_router.unit_of_work():
                        ReplicationModel.objects.create(name=value, count=n, average=1.0)
                except Exception as exc:
                    with self.lock:
                        self.failed_writes.append((time.monotonic(), repr(exc)[:300]))
                else:
                    with self.lock:
                        self.acked.append(value)
                        self.acked_at.append((time.monotonic(), value))
                time.sleep(self.pause)
        finally:
            connections.close_all()

    def _read(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    with replica_router.unit_of_work():
                        list(ReplicationModel.objects.order_by("-id")[:5])
                    with self.lock:
                        self.reads += 1
                except Exception as exc:
                    with self.lock:
                        self.failed_reads.append((time.monotonic(), repr(exc)[:300]))
                time.sleep(self.pause)
        finally:
            connections.close_all()

    def wait_writes_after(self, t: float, timeout: float, count: int = 10) -> None:
        """Wait until ``count`` writes succeeded after ``t`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                later = sum(1 for at, _ in self.acked_at if at > t)
            if later >= count:
                return
            if time.monotonic() > deadline:
                with self.lock:
                    last = self.failed_writes[-3:]
                raise AssertionError(f"only {later} writes succeeded after the event: {last}")
            time.sleep(0.02)

    def outage_after(self, event: float) -> float:
        """Seconds from ``event`` until writes succeeded and kept succeeding (0: no
        write failed after it)."""
        with self.lock:
            failures = [t for t, _ in self.failed_writes if t >= event]
            if not failures:
                return 0.0
            last = max(failures)
            after = [t for t, _ in self.acked_at if t > last]
        return (min(after) if after else last) - event
