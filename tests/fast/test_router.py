"""``ReadWriteRouter`` methods that need no query, on a cold cluster (no server).

Nothing listens on the nodes' ports (``offline``), so no replica ever becomes
eligible: every read the router decides goes to the primary, which makes the
rules that do not depend on health exact. Weighted picks, lag and faults need
real servers (``tests/server/test_routing.py`` and others).
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import router
from router.models import ReplicationModel

import replica_router
from replica_router import context
from replica_router.router import ReadWriteRouter
from tests.support import router_settings

pytestmark = pytest.mark.usefixtures("offline")


def obj(db: str | None) -> ReplicationModel:
    """An object as if loaded from ``db`` (None: unsaved)."""
    o = ReplicationModel(name="rel", count=1, average=1.0)
    o._state.db = db
    return o


def reads(n: int = 200, **hints: object) -> Counter[str | None]:
    """Where ``n`` read decisions go, in a fresh unit of work."""
    r = ReadWriteRouter()
    with replica_router.unit_of_work():
        return Counter(r.db_for_read(ReplicationModel, **hints) for _ in range(n))


def test_allow_migrate() -> None:
    """Proves: migrations run on the primary, never on a replica; other aliases get
    no opinion (None), whatever the model."""
    r = ReadWriteRouter()
    assert r.allow_migrate("default", "router") is True
    assert r.allow_migrate("default", "router", model_name="replicationmodel") is True
    assert r.allow_migrate("replica", "router") is False
    assert r.allow_migrate("replica", "router", model_name="replicationmodel") is False
    assert r.allow_migrate("other", "router") is None
    assert r.allow_migrate("elsewhere", "router") is None


def test_allow_migrate_follows_the_settings() -> None:
    """Proves: allow_migrate reads PRIMARY and REPLICAS (after override_settings)."""
    with router_settings(PRIMARY="replica", REPLICAS=["default"]):
        r = ReadWriteRouter()
        assert r.allow_migrate("replica", "auth") is True
        assert r.allow_migrate("default", "auth") is False
    with router_settings(REPLICAS=[]):
        assert ReadWriteRouter().allow_migrate("replica", "auth") is None


def test_allow_relation() -> None:
    """Proves: objects of any two cluster nodes may relate; an object from elsewhere
    or unsaved gets no opinion, so Django's own rule (same database) applies."""
    r = ReadWriteRouter()
    for a in ("default", "replica"):
        for b in ("default", "replica"):
            assert r.allow_relation(obj(a), obj(b)) is True
            assert router.allow_relation(obj(a), obj(b)) is True
    assert r.allow_relation(obj("default"), obj("elsewhere")) is None
    assert r.allow_relation(obj("elsewhere"), obj("replica")) is None
    assert r.allow_relation(obj("other"), obj("other")) is None
    assert r.allow_relation(obj(None), obj("default")) is None
    assert router.allow_relation(obj("default"), obj("other")) is False
    assert router.allow_relation(obj("other"), obj("other")) is True


def test_reads_from_a_cold_cluster_go_to_the_primary() -> None:
    """Proves: while no replica has answered a probe, every read goes to the primary
    and never to an alias outside the cluster."""
    assert reads(1000) == Counter({"default": 1000})
    assert Counter(router.db_for_read(Permission) for _ in range(100)) == Counter(
        {"default": 100}
    )


def test_writes_go_to_the_primary_and_pin() -> None:
    """Proves: ``db_for_write`` names the primary, counts a write and pins the
    caller's unit of work (its later reads must see the write)."""
    before = replica_router.decisions()["writes"]
    with replica_router.unit_of_work():
        assert not context.wrote_in_unit()
        assert ReadWriteRouter().db_for_write(ReplicationModel) == "default"
        assert context.wrote_in_unit()
        assert router.db_for_write(Group) == "default"
    assert replica_router.decisions()["writes"] == before + 2


def test_use_primary_reads_are_counted_as_use_primary() -> None:
    """Proves: reads inside ``use_primary()`` go to the primary for that reason
    (counted ``use_primary``), and pinned reads are counted ``pinned``."""
    before = replica_router.decisions()
    with replica_router.use_primary():
        assert reads(50) == Counter({"default": 50})
    with replica_router.unit_of_work():
        ReadWriteRouter().db_for_write(ReplicationModel)
        r = ReadWriteRouter()
        assert {r.db_for_read(ReplicationModel) for _ in range(30)} == {"default"}
    after = replica_router.decisions()
    assert after["use_primary"] - before["use_primary"] == 50
    assert after["pinned"] - before["pinned"] == 30


def test_objects_of_another_database_get_no_opinion() -> None:
    """Proves: for an object loaded from an alias outside the cluster, reads and
    writes get None (Django keeps it on its own database: ``django.db.router``
    answers ``other``), and such a write pins nothing."""
    r = ReadWriteRouter()
    other = obj("other")
    with replica_router.unit_of_work():
        assert r.db_for_read(ReplicationModel, instance=other) is None
        assert r.db_for_write(ReplicationModel, instance=other) is None
        assert not context.wrote_in_unit()
        assert router.db_for_read(ReplicationModel, instance=other) == "other"
        assert router.db_for_write(ReplicationModel, instance=other) == "other"
    assert reads(20, instance=obj("elsewhere")) == Counter({None: 20})


def test_instance_hints_from_the_cluster_on_a_cold_cluster() -> None:
    """Proves: an object from the replica is hinted to it only while it may take
    reads, so on a cold cluster its reads go to the primary; an object from the
    primary reads there; an unsaved object reads like no hint; a write with any
    cluster hint goes to the primary."""
    r = ReadWriteRouter()
    assert reads(50, instance=obj("replica")) == Counter({"default": 50})
    assert reads(50, instance=obj("default")) == Counter({"default": 50})
    assert reads(50, instance=obj(None)) == Counter({"default": 50})
    assert reads(50, instance=None) == Counter({"default": 50})
    with replica_router.unit_of_work():
        assert r.db_for_write(ReplicationModel, instance=obj("replica")) == "default"
        assert r.db_for_write(ReplicationModel, instance=obj(None)) == "default"


def test_status_of_a_cold_cluster() -> None:
    """Proves: ``status()`` lists the primary first, then the replica, with their
    configured roles and weights, and none of them up (nothing answers)."""
    nodes = replica_router.status()
    assert [(n["alias"], n["configured_role"], n["weight"]) for n in nodes] == [
        ("default", "primary", 1.0),
        ("replica", "replica", 1.0),
    ]
    assert all(n["state"] in ("unknown", "down") for n in nodes)
    assert "postgres" not in repr(nodes)  # the password (also user and name)
