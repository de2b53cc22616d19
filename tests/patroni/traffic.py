"""Reading and writing threads through the router, as request handlers would be.

Each thread runs "requests" in a loop: Django's ``request_started`` / ``request_finished``
around each one (so ``CONN_MAX_AGE`` and the router's unit of work behave as under a
server), an ORM read (``ReplicationModel`` rows, routed by ``db_for_read``) or an ORM
write (a new row, ``db_for_write``). Every request is recorded with the PostgreSQL port
of the node that served it (the connection's own, so a multi-host alias shows which
host it reached) or the error it raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

from django.core.signals import request_finished, request_started
from django.db import connections, router
from router.models import ReplicationModel

logger = logging.getLogger("tests.patroni")


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended, read or write, where, or its error."""

    start: float
    end: float
    kind: str  # "r" or "w"
    port: int | None
    error: str | None
    name: str = ""


def _port(alias: str) -> int | None:
    conn = connections[alias].connection
    if conn is None:
        return None
    return int(conn.info.port)


class Traffic:
    """``readers`` + ``writers`` threads until :meth:`stop`; rows get ``count`` = ``tag``."""

    def __init__(self, readers: int = 4, writers: int = 2, tag: int = 1) -> None:
        self.tag = tag
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logged = 0
        self._threads = [
            threading.Thread(target=self._run, args=(kind, i), daemon=True, name=f"{kind}{i}")
            for kind, count in (("r", readers), ("w", writers))
            for i in range(count)
        ]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread and wait for it (each closes its own connections)."""
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), f"thread {t.name} did not finish its request in 60 s"

    def _run(self, kind: str, index: int) -> None:
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                name = f"{kind}{index}-{seq}"
                start = time.monotonic()
                port: int | None = None
                error: str | None = None
                try:
                    # Under a server an error here is the request's too (a 500): Django
                    # sends request_started inside the handler, and its receivers may
                    # touch the database (close_old_connections with CONN_MAX_AGE > 0).
                    request_started.send(sender=Traffic)
                    if kind == "w":
                        ReplicationModel.objects.create(name=name, count=self.tag, average=1.0)
                        port = _port(router.db_for_write(ReplicationModel))
                    else:
                        qs = ReplicationModel.objects.all()
                        alias = qs.db
                        list(qs.using(alias).order_by("-id")[:1])
                        port = _port(alias)
                    request_finished.send(sender=Traffic)
                except Exception as exc:  # recorded: the test decides what may fail
                    error = f"{type(exc).__name__}: {exc}"
                    if self._logged < 5:  # where it came from, for the failure report
                        self._logged += 1
                        logger.warning("%s request failed", kind, exc_info=True)
                    with contextlib.suppress(Exception):
                        request_finished.send(sender=Traffic)
                end = time.monotonic()
                with self._lock:
                    self.outcomes.append(Outcome(start, end, kind, port, error, name))
                time.sleep(0.005)
        finally:
            with contextlib.suppress(Exception):
                connections.close_all()

    # ------------------------------------------------------------ questions

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far."""
        with self._lock:
            return list(self.outcomes)

    def failed(self, kind: str) -> list[Outcome]:
        """Failed requests of ``kind``."""
        return [o for o in self.snapshot() if o.kind == kind and o.error is not None]

    def served_since(self, kind: str, since: float, port: int) -> int:
        """Successful requests of ``kind`` started after ``since`` served by ``port``."""
        return sum(
            1
            for o in self.snapshot()
            if o.kind == kind and o.error is None and o.start >= since and o.port == port
        )

    def last_writes(self, count: int) -> list[Outcome]:
        """The ``count`` writes that started last."""
        writes = sorted((o for o in self.snapshot() if o.kind == "w"), key=lambda o: o.start)
        return writes[-count:]


def all_nodes_up() -> bool:
    """Whether this process's router sees every node ``up`` (each probed, its lag
    known): the state of an application that has been running a while, which is
    when a switchover or a failover meets it. Right after start the standbys are
    ``unknown``, or ``lagging`` until the primary's position is known, and an event
    in that first second is a cold start's, not the one these tests measure."""
    import replica_router

    return all(n["state"] == "up" for n in replica_router.status())
