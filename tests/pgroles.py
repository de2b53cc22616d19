"""Role changes on a :class:`~tests.pgcluster.LocalCluster`: switchover and failover.

Additive to ``pgcluster.py`` (which stays as it is for its importers): functions that
take a cluster. Node names stay fixed (``primary``, ``standby``); which of them is
the primary now is observed with :func:`current_primary`.

* :func:`switchover`: the planned change. Stop the primary cleanly, wait until the
  standby has replayed its shutdown checkpoint (so nothing is lost and the old
  primary can follow the new timeline without ``pg_rewind``), promote the standby,
  restart the old primary as a standby of the new one.
* :func:`failover`: the unplanned one. ``stop -m immediate`` of the primary, then
  promote the standby. The old primary stays down (rejoining it would need
  ``pg_rewind``).
"""

from __future__ import annotations

import logging
import os
import time

from tests.pgcluster import (
    HOST,
    NODES,
    REPLICATION_PASSWORD,
    REPLICATION_USER,
    ClusterError,
    LocalCluster,
    Node,
)

__all__ = ["current_primary", "failover", "other", "promote", "rejoin", "switchover"]

logger = logging.getLogger("pgcluster")


def other(node: Node) -> Node:
    """The other node of the two."""
    return "standby" if node == "primary" else "primary"


def current_primary(c: LocalCluster) -> Node:
    """The running node that is not in recovery (raises if there is none)."""
    for node in NODES:
        if c.is_running(node) and c.sql(node, "SELECT pg_is_in_recovery()", timeout=5) == "f":
            return node
    raise ClusterError("no running node is a primary")


def promote(c: LocalCluster, node: Node, timeout: int = 60) -> None:
    """``pg_promote()`` on ``node``, waiting until it is done."""
    done = c.sql(node, f"SELECT pg_promote(true, {int(timeout)})", timeout=timeout + 5)
    if done != "t":
        raise ClusterError(f"pg_promote() on {node} did not finish within {timeout}s")
    logger.info("%s promoted", node)


def _checkpoint_lsn(c: LocalCluster, node: Node) -> str:
    """``Latest checkpoint location`` of a stopped node (its shutdown checkpoint)."""
    out = c._run_server_bin(
        [c._bin("pg_controldata"), "-D", c.data_dir(node)],
        timeout=30,
        what=f"pg_controldata of {node}",
    )
    for line in out.splitlines():
        if line.startswith("Latest checkpoint location:"):
            return line.split(":", 1)[1].strip()
    raise ClusterError(f"no checkpoint location in pg_controldata of {node}")


def _wait(c: LocalCluster, node: Node, query: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if c.sql(node, query, timeout=5) == "t":
                return
        except ClusterError:
            pass
        if time.monotonic() >= deadline:
            raise ClusterError(f"{what} within {timeout:g}s")
        time.sleep(0.02)


def rejoin(c: LocalCluster, node: Node, primary: Node, timeout: float = 60) -> None:
    """Start the stopped ``node`` as a standby streaming from ``primary``."""
    data = c.data_dir(node)
    conninfo = (
        f"host={HOST} port={c.port(primary)} user={REPLICATION_USER} "
        f"password={REPLICATION_PASSWORD} application_name={node}"
    )
    # Later lines win: this overrides whatever an earlier role configured.
    c._write_owned(
        os.path.join(data, "postgresql.conf"),
        f"\n# ---- rejoined as a standby of {primary} by pgroles.py ----\n"
        f"primary_conninfo = '{conninfo}'\nprimary_slot_name = ''\n"
        "hot_standby = on\nwal_retrieve_retry_interval = 500ms\n",
        append=True,
    )
    c._write_owned(os.path.join(data, "standby.signal"), "")
    c.start(node, wait_streaming=False, timeout=timeout)
    _wait(
        c,
        primary,
        f"SELECT count(*) > 0 FROM pg_stat_replication WHERE application_name = '{node}' "
        "AND state = 'streaming'",
        timeout,
        f"{node} did not stream from {primary}",
    )
    logger.info("%s streams from %s", node, primary)


def switchover(c: LocalCluster, *, rejoin_old: bool = True, timeout: float = 60) -> Node:
    """A planned switchover; returns the node that is primary now."""
    old = current_primary(c)
    new = other(old)
    c.stop(old, "fast")
    lsn = _checkpoint_lsn(c, old)
    _wait(
        c,
        new,
        f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn",
        timeout,
        f"{new} did not replay the shutdown checkpoint {lsn} of {old}",
    )
    promote(c, new, int(timeout))
    if rejoin_old:
        rejoin(c, old, new, timeout)
    return new


def failover(c: LocalCluster, *, timeout: float = 60) -> Node:
    """An unplanned failover (the primary crashes); returns the new primary."""
    old = current_primary(c)
    new = other(old)
    c.stop(old, "immediate")
    promote(c, new, int(timeout))
    return new
