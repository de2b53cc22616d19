"""``replica_router.faults`` and the core's failure rules, with no server.

Which statements may run a second time (``is_read_only``), which failures take a
node out (``_core.classify_failure`` through ``node_fault``, and
``Cluster.report_failure`` through ``report``), and which sockets
``interrupt`` shuts down (real socket pairs standing in for connections).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.db import IntegrityError, OperationalError, ProgrammingError

from replica_router import _core, _runtime, faults, node_connections

READS = [
    "SELECT 1",
    "select * from t where x = %s",
    "  \n SELECT count(*) FROM t",
    "(SELECT 1) UNION (SELECT 2)",
    "WITH a AS (SELECT 1) SELECT * FROM a",
    "VALUES (1), (2)",
    "SHOW server_version",
    "TABLE router_replicationmodel",
    "EXPLAIN SELECT 1",
    'SELECT "router_replicationmodel"."id" FROM "router_replicationmodel" LIMIT 21',
]

NOT_READS = [
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET x = 1",
    "DELETE FROM t",
    "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
    "SELECT * INTO new_table FROM t",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT nextval('s')",
    "SELECT setval('s', 1)",
    "SELECT pg_advisory_lock(1)",
    "SELECT set_config('x', 'y', false)",
    "SELECT lo_unlink(1)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE t SET x = 1 RETURNING *) SELECT 1",
    "SET application_name = 'x'",
    "BEGIN",
    "COPY t TO STDOUT",
    "CREATE TABLE t (x int)",
    "TRUNCATE t",
    "LOCK TABLE t",
    "CALL p()",
    "NOTIFY c",
    "ANALYZE t",
    "SELECT dblink_exec('x')",
    "",
]


@pytest.mark.parametrize("sql", READS)
def test_reads_may_be_retried(sql: str) -> None:
    """Proves: plain reads (SELECT, WITH, VALUES, SHOW, TABLE, EXPLAIN) count as
    read-only, so a read that failed for a node fault may run again elsewhere."""
    assert faults.is_read_only(sql) is True


@pytest.mark.parametrize("sql", NOT_READS)
def test_anything_that_may_write_or_lock_is_never_retried(sql: str) -> None:
    """Proves: writes, locking reads, ``SELECT ... INTO``, sequence and advisory-lock
    calls, data-modifying CTEs and every other statement are not read-only."""
    assert faults.is_read_only(sql) is False


#: (sqlstate, message, fault kind or None), the documented rules.
RULES = [
    ("57P01", "terminating connection due to administrator command", "admin_shutdown"),
    ("57P02", "terminating connection due to crash of another server process", "admin_shutdown"),
    ("57P03", "the database system is starting up", "admin_shutdown"),
    ("53300", "sorry, too many clients already", "too_many_connections"),
    (
        None,
        'connection to server at "127.0.0.1", port 1 failed: Connection refused',
        "connection_refused",
    ),
    (None, "server closed the connection unexpectedly", "connection_failure"),
    (None, "Connection reset by peer", "connection_failure"),
    (None, "timeout expired", "timeout"),
    ("08006", "connection failure", "connection_failure"),
    ("23505", "duplicate key value violates unique constraint", None),
    ("23503", "insert or update violates foreign key constraint", None),
    ("40001", "could not serialize access", None),
    ("57014", "canceling statement due to statement timeout", None),
    ("42601", "syntax error at or near", None),
    ("42P01", 'relation "t" does not exist', None),
    # Configuration errors: reported, but as this process's own (never to the host's
    # shared prober); psycopg's connect errors carry no SQLSTATE, only the words.
    ("28P01", "password authentication failed for user", "authentication_failed"),
    ("3D000", 'database "nope" does not exist', "database_missing"),
    ("42501", "permission denied", "insufficient_privilege"),
    (
        None,
        'connection failed: FATAL:  password authentication failed for user "app"',
        "authentication_failed",
    ),
    (None, 'FATAL:  no pg_hba.conf entry for host "127.0.0.1"', "authentication_failed"),
    (None, 'FATAL:  database "nope" does not exist', "database_missing"),
    (None, 'FATAL:  permission denied for database "app"', "insufficient_privilege"),
]


@pytest.mark.parametrize(("sqlstate", "message", "kind"), RULES)
def test_classify_failure(sqlstate: str | None, message: str, kind: str | None) -> None:
    """Proves: admin shutdown, too many connections, refused, reset, lost and timed
    out connections are node faults; application errors (23xxx, 40001, 57014,
    syntax, missing relation) are not; configuration errors (28xxx, 3D000, 42501, and
    their messages without a SQLSTATE) are named, to be kept as this process's own."""
    assert _core.classify_failure(sqlstate, message) == kind


def wrapped(cls: type[Exception], cause: BaseException) -> Exception:
    """A Django exception raised from a driver's, as Django's DatabaseErrorWrapper does."""
    try:
        raise cls(str(cause)) from cause
    except cls as exc:
        return exc


def test_node_fault_reads_django_and_driver_errors() -> None:
    """Proves: ``node_fault`` takes the SQLSTATE and message from the driver's error
    behind Django's, so an admin shutdown is a fault and a wrong password is a
    configuration error;
    only OperationalErrors can be faults, never an IntegrityError or
    ProgrammingError, whatever their message. (psycopg 3's error classes; the
    psycopg2 matrix cell proves the same on real errors in tests/server.)"""
    import psycopg
    import psycopg.errors

    shutdown = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert faults.node_fault(wrapped(OperationalError, shutdown)) == "admin_shutdown"
    assert faults.node_fault(shutdown) == "admin_shutdown"
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert faults.node_fault(wrapped(OperationalError, refused)) == "connection_refused"
    password = psycopg.errors.InvalidPassword("password authentication failed")
    assert faults.node_fault(wrapped(OperationalError, password)) == "authentication_failed"
    duplicate = psycopg.errors.UniqueViolation("server closed the connection unexpectedly")
    assert faults.node_fault(wrapped(IntegrityError, duplicate)) is None
    assert faults.node_fault(ProgrammingError("connection refused")) is None
    assert faults.node_fault(ValueError("connection refused")) is None


def test_note_down_makes_older_connections_stale() -> None:
    """Proves: each time a node goes down its epoch grows, per alias."""
    before = dict(faults.down_epoch)
    faults.note_down("fast-epoch-a")
    faults.note_down("fast-epoch-a")
    faults.note_down("fast-epoch-b")
    assert faults.down_epoch["fast-epoch-a"] == before.get("fast-epoch-a", 0) + 2
    assert faults.down_epoch["fast-epoch-b"] == before.get("fast-epoch-b", 0) + 1


def test_report_without_a_cluster_does_nothing(router_reset: None) -> None:
    """Proves: a fault reported before the cluster exists is classified but dropped
    (no cluster is built on the request path's error branch); an error that is no
    node fault is none either way."""
    assert _runtime.cluster is None
    assert faults.report("default", OperationalError("connection refused")) == "connection_refused"
    assert faults.report("default", IntegrityError("connection refused")) is None
    assert _runtime.cluster is None


class FakeConnection:
    """A driver connection: a real socket's descriptor, open or closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()


class FakeWrapper:
    """A Django connection object, as ``interrupt`` sees it."""

    def __init__(self, sock: socket.socket, *, atomic: bool = False) -> None:
        self.connection: FakeConnection | None = FakeConnection(sock)
        self.in_atomic_block = atomic
        self.autocommit = not atomic


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Socket pairs (our end, the server's end), closed after the test; aliases
    registered by the test are forgotten."""
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()
    for alias in [a for a in node_connections._by_alias if a.startswith("fast-")]:
        del node_connections._by_alias[alias]


def pair(pairs: list[tuple[socket.socket, socket.socket]]) -> tuple[socket.socket, socket.socket]:
    ours, server = socket.socketpair()
    server.settimeout(2)
    pairs.append((ours, server))
    return ours, server


def test_interrupt_shuts_down_live_connections_of_that_alias_only(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Proves: ``interrupt`` shuts down the sockets of the alias's live connections
    (the server's end sees EOF) and leaves the descriptors open; connections of
    another alias, closed ones and ones without a driver connection are untouched."""
    frozen = [pair(pairs) for _ in range(2)]
    elsewhere = pair(pairs)
    closed = pair(pairs)
    wrappers = [FakeWrapper(ours) for ours, _ in frozen]
    other = FakeWrapper(elsewhere[0])
    gone = FakeWrapper(closed[0])
    assert gone.connection is not None
    gone.connection.closed = True
    never = FakeWrapper(pair(pairs)[0])
    never.connection = None
    for w in (*wrappers, gone, never):
        faults.register("fast-frozen", w)
    faults.register("fast-other", other)

    assert faults.interrupt("fast-frozen", primary=False) == 2
    for ours, server in frozen:
        assert server.recv(1) == b""  # EOF: the query waiting on it fails at once
        assert ours.fileno() >= 0  # the descriptor is still its owner's
    elsewhere[1].setblocking(False)
    closed[1].setblocking(False)
    for untouched in (elsewhere[1], closed[1]):
        with pytest.raises(BlockingIOError):
            untouched.recv(1)


def test_interrupt_spares_the_primarys_transactions(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Proves: on the primary, a connection inside a transaction is left alone (a
    write is never failed on the prober's word), one in autocommit is shut down."""
    in_tx = pair(pairs)
    idle = pair(pairs)
    keep = [FakeWrapper(in_tx[0], atomic=True), FakeWrapper(idle[0])]
    for w in keep:
        faults.register("fast-primary", w)
    assert faults.interrupt("fast-primary", primary=True) == 1
    assert idle[1].recv(1) == b""
    in_tx[1].setblocking(False)
    with pytest.raises(BlockingIOError):
        in_tx[1].recv(1)


def test_registered_connections_are_weak(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    """Proves: the registry does not keep connection objects alive."""
    w = FakeWrapper(pair(pairs)[0])
    faults.register("fast-weak", w)
    assert len(node_connections._by_alias["fast-weak"]) == 1
    del w
    assert len(node_connections._by_alias["fast-weak"]) == 0
    assert faults.interrupt("fast-weak", primary=False) == 0
