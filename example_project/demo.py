#!/usr/bin/env python
"""The DJReplica tutorial, told again against a real primary and hot standby.

Run it from the repository root (``make demo`` does the same)::

    python example_project/demo.py

It starts a PostgreSQL primary and a streaming hot standby on free loopback
ports (see ``tests/pgcluster.py``), points the DJReplica settings at them, and walks
through the tutorial's steps with ``replica_router.ReadWriteRouter`` in place
of the tutorial's router: migrate, write, balanced reads, a refused write on
the standby, the primary going down, the standby going down. Every claim is
checked; the exit status is non-zero if any check fails. The cluster is always
torn down.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgcluster import LocalCluster

HERE = Path(__file__).resolve().parent

# Fast probing so that the failure steps take seconds, not minutes.
PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 0.5
# Polling a deadline on a busy 2-core machine: extra time allowed on top of
# the router's own detection window before a wait counts as failed.
WAIT_SLACK = 3.0
# A measured detection time may exceed the window by this much (poll period,
# scheduling noise) and still count as "within the window".
MEASURE_SLACK = 0.5
ROUTING_SAMPLES = 3000
REAL_READS = 600
FAILOVER_READS = 200
SHARE_TOLERANCE_POINTS = 5.0


class StepFailed(Exception):
    """Raised to abandon the rest of the story when a step cannot go on."""


@dataclass
class Story:
    """Prints the numbered steps and records every checked fact."""

    step_number: int = 0
    facts: list[tuple[int, str, bool]] = field(default_factory=list)

    def step(self, number: int, title: str) -> None:
        """Start step ``number``."""
        self.step_number = number
        print(f"\n{number}. {title}")

    def check(self, ok: bool, text: str) -> bool:
        """Print and record one checked fact; return ``ok``."""
        print(f"   [{'ok' if ok else 'FAIL'}] {text}")
        self.facts.append((self.step_number, text, ok))
        return ok

    def note(self, text: str) -> None:
        """Print an unchecked detail."""
        print(f"          {text}")

    @property
    def failures(self) -> list[tuple[int, str, bool]]:
        """The facts that did not hold."""
        return [fact for fact in self.facts if not fact[2]]


def wait_for(
    predicate: Callable[[], bool], timeout: float, poll: float = 0.01
) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(poll)


def node_states() -> dict[str, str]:
    """Alias -> state, as replica_router currently sees the cluster."""
    import replica_router

    return {node["alias"]: node["state"] for node in replica_router.status()}


def print_status(story: Story) -> None:
    """One line per node from ``replica_router.status()``."""
    import replica_router

    for node in replica_router.status():
        story.note(
            f"{node['alias']:<8} configured={node['configured_role']:<8} "
            f"observed={node.get('observed_role')!s:<8} state={node['state']:<8} "
            f"weight={node.get('weight')} reads_routed={node.get('reads_routed')}"
        )


@contextmanager
def queries_by_alias() -> Iterator[Counter[str]]:
    """Count the SQL statements each database alias actually executes."""
    from django.db import connections

    served: Counter[str] = Counter()

    def counter(alias: str) -> Callable[..., Any]:
        def wrapper(
            execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
        ) -> Any:
            served[alias] += 1
            return execute(sql, params, many, context)

        return wrapper

    with ExitStack() as stack:
        for alias in ("default", "replica"):
            stack.enter_context(connections[alias].execute_wrapper(counter(alias)))
        yield served


def replication_model() -> Any:
    """The tutorial's ``ReplicationModel``, once Django is set up."""
    from django.apps import apps

    return apps.get_model("router", "ReplicationModel")


def real_reads(count: int, expected_rows: int) -> tuple[Counter[str], list[str]]:
    """Run ``count`` routed ``list(ReplicationModel.objects.all())``; return who served and errors."""
    from django.db import DatabaseError

    model = replication_model()

    errors: list[str] = []
    with queries_by_alias() as served:
        for _ in range(count):
            try:
                rows = list(model.objects.all())
            except DatabaseError as exc:
                errors.append(f"{type(exc).__name__}: {first_line(exc)}")
                continue
            if len(rows) != expected_rows:
                errors.append(f"saw {len(rows)} rows instead of {expected_rows}")
    return served, errors


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def share_check(
    story: Story,
    what: str,
    counts: Counter[str],
    weights: dict[str, float],
    tolerance: float,
) -> None:
    """Compare each node's share of ``counts`` with its share of ``weights``."""
    total = sum(counts.values())
    weight_sum = sum(weights.values())
    for alias, weight in weights.items():
        share = 100.0 * counts.get(alias, 0) / total if total else 0.0
        expected = 100.0 * weight / weight_sum
        story.check(
            abs(share - expected) <= tolerance,
            f"{what}: {alias:<7} {counts.get(alias, 0):>5}/{total} = {share:5.1f}% "
            f"(expected {expected:.1f}% +/- {tolerance:.1f})",
        )
    strays = set(counts) - set(weights)
    if strays:
        story.check(
            False,
            f"{what}: reads went to aliases outside the cluster: {sorted(strays)}",
        )


def sampling_tolerance(samples: int, weights: dict[str, float]) -> float:
    """Allowed deviation in percentage points: at least 5, else five standard deviations.

    A few hundred real queries are a small sample; five sigma keeps the check
    honest without making the demo flaky.
    """
    total = sum(weights.values())
    worst = max(
        math.sqrt((w / total) * (1 - w / total) / samples) for w in weights.values()
    )
    return max(SHARE_TOLERANCE_POINTS, 100.0 * 5 * worst)


def setup_django(cluster: LocalCluster) -> None:
    """Point DJReplica at the cluster (before Django reads its settings) and set Django up."""
    os.environ.update(cluster.env_vars())
    os.environ["DJREPLICA_PROBE_INTERVAL"] = str(PROBE_INTERVAL)
    os.environ["DJREPLICA_PROBE_TIMEOUT"] = str(PROBE_TIMEOUT)
    os.environ["DJANGO_SETTINGS_MODULE"] = "DJReplica.settings"
    import django

    django.setup()


# ---------------------------------------------------------------- the steps


def step_migrate(story: Story, cluster: LocalCluster) -> None:
    """1. migrate runs on the primary; the tables replicate to the standby."""
    from django.core.management import call_command
    from django.db import router

    model = replication_model()

    story.step(
        1, "migrate: tables are created on the primary and replicate to the standby"
    )
    out = io.StringIO()
    call_command("migrate", interactive=False, verbosity=1, stdout=out)
    applied = out.getvalue().count("Applying ")
    story.check(
        applied > 0, f"migrate applied {applied} migrations on 'default' (the primary)"
    )
    story.check(
        router.allow_migrate_model("default", model)
        and not router.allow_migrate_model("replica", model),
        "the router allows migrations on 'default' only; the read-only standby gets them by replication",
    )
    table_query = "SELECT to_regclass('public.router_replicationmodel') IS NOT NULL"
    story.check(
        cluster.sql("primary", table_query) == "t",
        "router_replicationmodel exists on the primary",
    )
    cluster.wait_replayed()
    story.check(
        cluster.sql("standby", table_query) == "t",
        "router_replicationmodel exists on the standby too",
    )
    tables = cluster.sql(
        "standby",
        "SELECT string_agg(tablename, ', ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    )
    story.note(f"tables on the standby: {tables}")


def step_writes(story: Story, cluster: LocalCluster) -> int:
    """2. Writes go to the primary. Returns how many rows exist."""
    from django.db import router

    import replica_router

    model = replication_model()

    story.step(2, "create ReplicationModel rows: every write goes to the primary")
    rows = [
        {"name": "test", "count": 1, "is_available": True, "average": 2.0},
        {"name": "second", "count": 2, "is_available": False, "average": 3.5},
        {"name": "third", "count": 3, "is_available": True, "average": 0.25},
        {"name": "fourth", "count": 4, "is_available": True, "average": 10.0},
        {"name": "fifth", "count": 5, "is_available": False, "average": -1.5},
    ]
    # A unit of work scopes the read-your-writes pin, as a request would: after it,
    # reads are spread again. (A write outside any unit pins reads for PIN_SECONDS.)
    with replica_router.unit_of_work():
        story.check(
            router.db_for_write(model) == "default",
            "db_for_write(ReplicationModel) -> 'default'",
        )
        created = [model.objects.create(**row) for row in rows]
        dbs = Counter(obj._state.db for obj in created)
        story.check(
            dbs == Counter({"default": len(rows)}),
            f"{len(rows)} rows created, all on {dict(dbs)}",
        )
        pinned = {router.db_for_read(model) for _ in range(50)}
        story.check(
            pinned == {"default"},
            f"reads right after the writes, same unit of work -> {sorted(pinned)}",
        )
    on_primary = cluster.sql("primary", "SELECT count(*) FROM router_replicationmodel")
    story.check(on_primary == str(len(rows)), f"the primary holds {on_primary} rows")
    return len(rows)


def step_balanced_reads(
    story: Story, cluster: LocalCluster, expected_rows: int
) -> None:
    """3. Reads are spread over both nodes by weight."""
    from django.conf import settings
    from django.db import router

    model = replication_model()

    story.step(3, "reads are balanced between the primary and the standby by weight")
    conf = settings.REPLICA_ROUTER
    weights = {
        "default": float(conf.get("PRIMARY_READ_WEIGHT", 1)),
        "replica": float(conf["REPLICAS"]["replica"]["WEIGHT"]),
    }
    waited = wait_for(lambda: set(node_states().values()) == {"up"}, 15.0, poll=0.05)
    story.check(
        waited is not None,
        f"replica_router reports both nodes up ({waited or 0:.2f}s after setup)",
    )
    if waited is None:
        print_status(story)
        raise StepFailed("nodes never came up")
    print_status(story)
    cluster.wait_replayed()

    picks = Counter(router.db_for_read(model) for _ in range(ROUTING_SAMPLES))
    share_check(story, "db_for_read", picks, weights, SHARE_TOLERANCE_POINTS)

    served, errors = real_reads(REAL_READS, expected_rows)
    story.check(
        not errors,
        f"{REAL_READS} real reads returned all {expected_rows} rows" + _errors(errors),
    )
    share_check(
        story, "real queries", served, weights, sampling_tolerance(REAL_READS, weights)
    )


def step_write_on_replica(
    story: Story, cluster: LocalCluster, expected_rows: int
) -> None:
    """4. The standby refuses a write forced onto it."""
    from django.db import DatabaseError, connections

    model = replication_model()

    story.step(4, "a write forced onto the replica is refused by PostgreSQL")
    try:
        model.objects.using("replica").create(
            name="test", count=1, is_available=True, average=2.0
        )
    except DatabaseError as exc:
        story.check(
            "read-only transaction" in str(exc),
            f"using('replica').create(...) raised {type(exc).__name__}: {first_line(exc)}",
        )
    else:
        story.check(False, "using('replica').create(...) was accepted by the standby")
    connections["replica"].close()
    on_primary = cluster.sql("primary", "SELECT count(*) FROM router_replicationmodel")
    story.check(
        on_primary == str(expected_rows), f"still {on_primary} rows on the primary"
    )


def step_primary_down(story: Story, cluster: LocalCluster, expected_rows: int) -> None:
    """5. With the primary stopped, every read is served by the standby."""
    from django.conf import settings
    from django.db import connections, router

    model = replication_model()

    story.step(5, "the primary goes down: the standby keeps serving reads")
    conf = settings.REPLICA_ROUTER
    window = conf["FALL"] * PROBE_INTERVAL + PROBE_TIMEOUT
    cluster.stop("primary")
    story.note("primary stopped (pg_ctl stop -m fast)")
    connections.close_all()  # its sockets are dead; never reuse them

    took = wait_for(lambda: node_states().get("default") == "down", window + WAIT_SLACK)
    if took is None:
        story.check(
            False,
            f"replica_router never marked the primary down within {window + WAIT_SLACK:.1f}s",
        )
        print_status(story)
        raise StepFailed("primary not detected as down")
    story.check(
        True,
        f"replica_router marked the primary down after {took:.2f}s (window FALL*INTERVAL+TIMEOUT = {window:.2f}s)",
    )
    print_status(story)

    picks = Counter(router.db_for_read(model) for _ in range(1000))
    story.check(
        picks == Counter({"replica": 1000}), f"db_for_read x1000 -> {dict(picks)}"
    )
    served, errors = real_reads(FAILOVER_READS, expected_rows)
    story.check(
        not errors,
        f"{FAILOVER_READS} real reads succeeded with all {expected_rows} rows"
        + _errors(errors),
    )
    story.check(
        served == Counter({"replica": FAILOVER_READS}),
        f"served by {dict(served)}",
    )

    cluster.start("primary")
    cluster.wait_streaming()
    rise_window = conf["RISE"] * PROBE_INTERVAL + PROBE_TIMEOUT
    back = wait_for(
        lambda: node_states().get("default") == "up", rise_window + WAIT_SLACK
    )
    story.check(
        back is not None,
        f"primary restarted; replica_router sees it up again after {back or 0:.2f}s",
    )
    connections.close_all()


def step_standby_down(story: Story, cluster: LocalCluster, expected_rows: int) -> None:
    """6. With the standby stopped, reads leave it within the detection window."""
    from django.conf import settings
    from django.db import connections, router

    model = replication_model()

    story.step(6, "the standby goes down: reads leave it within the detection window")
    conf = settings.REPLICA_ROUTER
    window = conf["FALL"] * PROBE_INTERVAL + PROBE_TIMEOUT

    def replica_out_of_rotation() -> bool:
        # One "default" answer proves nothing at weight 2:1; fifty in a row do
        # (chance (1/3)**50 while the replica is still in rotation).
        return all(router.db_for_read(model) != "replica" for _ in range(50))

    story.check(
        not replica_out_of_rotation(), "before: the standby is in the read rotation"
    )
    asked = time.monotonic()
    cluster.stop("standby")
    stopped = time.monotonic()
    story.note(f"standby stopped (pg_ctl stop -m fast took {stopped - asked:.2f}s)")
    took = wait_for(replica_out_of_rotation, window + WAIT_SLACK)
    if took is None:
        story.check(
            False,
            f"db_for_read still returned 'replica' {window + WAIT_SLACK:.1f}s after the stop",
        )
        print_status(story)
        raise StepFailed("standby never left the read rotation")
    story.check(
        took <= window + MEASURE_SLACK,
        f"db_for_read stopped returning 'replica' {took:.2f}s after the standby was down "
        f"(window FALL*INTERVAL+TIMEOUT = {window:.2f}s)",
    )
    print_status(story)
    connections.close_all()

    served, errors = real_reads(FAILOVER_READS, expected_rows)
    story.check(
        not errors,
        f"{FAILOVER_READS} real reads succeeded with all {expected_rows} rows"
        + _errors(errors),
    )
    story.check(
        served == Counter({"default": FAILOVER_READS}), f"served by {dict(served)}"
    )

    cluster.start("standby")
    rise_window = conf["RISE"] * PROBE_INTERVAL + PROBE_TIMEOUT
    back = wait_for(
        lambda: router.db_for_read(model) == "replica",
        rise_window + WAIT_SLACK,
    )
    story.check(
        back is not None,
        f"standby restarted and streaming; back in the read rotation after {back or 0:.2f}s",
    )
    connections.close_all()


def _errors(errors: list[str]) -> str:
    if not errors:
        return ""
    common = Counter(errors).most_common(1)[0][0]
    return f" -- {len(errors)} failed, e.g. {common}"


# ------------------------------------------------------------------- main


def main() -> int:
    """Run the story; return the exit status (0 only if every fact held)."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(
            line_buffering=True
        )  # interleave sanely with log lines on stderr
    # DJReplica's settings, and the cluster tool (tests/pgcluster.py).
    for path in (str(HERE), str(HERE.parent / "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from pgcluster import ClusterError, LocalCluster

    story = Story()
    print(
        "DJReplica demo: the tutorial's primary + hot standby, routed by replica_router"
    )
    if importlib.util.find_spec("replica_router") is None:
        # Checked before starting servers: without the router there is no story.
        print("   [FAIL] replica_router is not importable: build and install it first")
        return 1
    try:
        cluster = LocalCluster()
    except ClusterError as exc:
        print(f"   [FAIL] {exc}")
        return 1

    django_ready = False
    try:
        story.step(0, "bring up the tutorial's cluster with PostgreSQL's own binaries")
        started = time.monotonic()
        cluster.up()
        story.check(
            True,
            f"primary on 127.0.0.1:{cluster.primary_port}, hot standby on 127.0.0.1:{cluster.standby_port} "
            f"streaming through slot standby_replication_slot (up in {time.monotonic() - started:.1f}s)",
        )
        try:
            setup_django(cluster)
        except ImportError as exc:
            story.check(
                False,
                f"Django setup failed: {exc} (is replica_router built and installed?)",
            )
            raise StepFailed("no Django") from None
        django_ready = True
        story.note(
            f"settings: PROBE_INTERVAL={PROBE_INTERVAL}s PROBE_TIMEOUT={PROBE_TIMEOUT}s, "
            f"DATABASE_ROUTERS={['replica_router.ReadWriteRouter']}"
        )

        step_migrate(story, cluster)
        rows = step_writes(story, cluster)
        step_balanced_reads(story, cluster, rows)
        step_write_on_replica(story, cluster, rows)
        step_primary_down(story, cluster, rows)
        step_standby_down(story, cluster, rows)
    except StepFailed as exc:
        story.note(f"stopping the story here: {exc}")
    except Exception as exc:
        story.check(
            False,
            f"step {story.step_number} crashed: {type(exc).__name__}: {first_line(exc)}",
        )
        traceback.print_exc()
    finally:
        if django_ready:
            from django.db import connections

            connections.close_all()
        story.step(7, "tear down")
        cluster.down()
        story.check(
            not cluster.is_running("primary") and not cluster.is_running("standby"),
            "both servers stopped",
        )
        story.check(not os.path.exists(cluster.base_dir), f"{cluster.base_dir} removed")

    failures = story.failures
    print()
    if failures:
        print(f"FAIL: {len(failures)} of {len(story.facts)} checks failed:")
        for number, text, _ in failures:
            print(f"  step {number}: {text}")
        return 1
    print(f"PASS: all {len(story.facts)} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
