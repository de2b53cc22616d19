"""``ReadWriteRouter`` methods that need no query, on a cold cluster (no server).

Nothing listens on the nodes' ports (``offline``), so no replica ever becomes
eligible: every read the router decides goes to the primary, which makes the
rules that do not depend on health exact. Weighted picks, lag and faults need
real servers (``tests/server/test_routing.py`` and others).
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import router
from router.models import ReplicationModel

import replica_router
from replica_router import _core, _runtime, context
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


class Alias(str):
    """A str subclass, as an alias may come from user code."""


class BrokenState:
    """A model whose ``_state`` raises something other than AttributeError."""

    @property
    def _state(self) -> Any:
        raise RuntimeError("broken _state")


def hinted_reads() -> int:
    return _runtime.get_cluster().decisions()["instance_hint"]


def test_the_instance_hint_rule_in_the_core() -> None:
    """Proves: the core reads ``instance._state.db`` as ``getattr(..., None)`` would:
    no ``_state``, no ``db``, or a ``db`` that is not a str reads like no hint; an
    alias equal to a cluster alias is that node even as another str object or a str
    subclass (counted ``instance_hint``); any other alias gets None for reads and
    writes; other hints are accepted and ignored; an error other than
    AttributeError from the object is raised, not swallowed."""
    r, m = ReadWriteRouter(), ReplicationModel
    no_hints = [
        object(),
        SimpleNamespace(_state=SimpleNamespace()),
        SimpleNamespace(_state=SimpleNamespace(db=42)),
    ]
    with replica_router.unit_of_work():
        before = hinted_reads()
        for o in no_hints:
            assert r.db_for_read(m, instance=o) == "default"
        assert hinted_reads() == before
        primary = "".join(["def", "ault"])  # equal to "default", another object
        assert id(primary) != id(_runtime.get_cluster().primary)
        assert r.db_for_read(m, instance=obj(primary)) == "default"
        assert r.db_for_read(m, instance=obj(Alias("default"))) == "default"
        assert hinted_reads() == before + 2
        assert r.db_for_read(m, instance=obj(Alias("other"))) is None
        assert r.db_for_read(m, instance=obj("other"), other_hint=1) is None
        assert r.db_for_read(m, other_hint=1) == "default"
        assert r.db_for_write(m, instance=obj(Alias("other"))) is None
        assert not context.wrote_in_unit()
        with pytest.raises(RuntimeError, match="broken _state"):
            r.db_for_read(m, instance=BrokenState())
        with pytest.raises(RuntimeError, match="broken _state"):
            r.db_for_write(m, instance=BrokenState())
        assert not context.wrote_in_unit()
        assert r.db_for_write(m, instance=object()) == "default"
        assert context.wrote_in_unit()


def test_the_routers_methods_are_the_cores() -> None:
    """Proves: ``ReadWriteRouter`` (the class users list, built by Django with no
    arguments) routes with the core's native functions, which Django's lookup gets
    as they are (no bound method); a subclass can still call them through
    ``super()``."""
    r = ReadWriteRouter()
    assert r.db_for_read is _core.db_for_read
    assert r.db_for_write is _core.db_for_write
    assert isinstance(router.routers[0], ReadWriteRouter)

    class Mine(ReadWriteRouter):
        def db_for_read(self, model: Any, **hints: Any) -> str | None:
            return super().db_for_read(model, **hints)

    with replica_router.unit_of_work():
        assert Mine().db_for_read(ReplicationModel) == "default"
        assert Mine().db_for_read(ReplicationModel, instance=obj("other")) is None


def test_the_native_functions_take_djangos_arguments() -> None:
    """Proves: the native ``db_for_read``/``db_for_write`` take what Django passes:
    the model positionally or by name, ``instance`` (None: no hint) and any other
    hint; a call without a model, or with more than one positional argument, is a
    ``TypeError`` naming the function, not a crash; the signature is introspectable."""
    import inspect

    m = ReplicationModel
    with replica_router.unit_of_work():
        for f in (_core.db_for_read, _core.db_for_write):
            assert f(m) == "default"
            assert f(model=m) == "default"
            assert f(m, instance=None) == "default"
            assert f(m, instance=obj("other"), using="x", extra=[1]) is None
            assert f(m, **{"instance": obj("default")}) == "default"
            name = f.__name__
            for bad_args in ((), (m, m)):
                with pytest.raises(TypeError, match=name):
                    f(*bad_args)
            with pytest.raises(TypeError, match=name):
                f(instance=obj("default"))
            assert str(inspect.signature(f)) == "(model, *, instance=None, **hints)"


def test_the_native_functions_keep_reference_counts() -> None:
    """Proves: the native functions own exactly what they return and borrow the rest:
    after many calls the returned alias, the model, the hinted object and Django's
    hints dict have the reference counts they had before, and ``None`` (returned for
    an object of another database) about the same (no leak, no early release)."""
    import sys

    m, other, mine = ReplicationModel, obj("other"), obj("default")
    hints = {"instance": mine}
    alias = _runtime.get_cluster().primary
    with replica_router.unit_of_work():
        _core.db_for_read(m, **hints)
        watched = (alias, m, other, mine, hints)
        before = [sys.getrefcount(o) for o in watched]
        none_before = sys.getrefcount(None)
        for _ in range(10_000):
            _core.db_for_read(m)
            _core.db_for_read(m, **hints)
            _core.db_for_read(m, instance=other)
            _core.db_for_write(m, instance=mine)
        after = [sys.getrefcount(o) for o in watched]
        none_after = sys.getrefcount(None)
    assert after == before
    # Other code takes and drops references to None meanwhile: a leak per call would
    # show as 10,000 or more.
    assert abs(none_after - none_before) < 100


def test_installed_test_readers_decide_reads() -> None:
    """Proves: with a test runner's readers installed, the router asks them: a plain
    read calls ``read()``, an object of the cluster ``read_hinted(its alias)``, an
    unsaved object ``read()``; an object of another database gets None without
    asking. Writes still count on the cluster and pin."""
    c = _runtime.get_cluster()
    asked: list[str | None] = []

    def read() -> str:
        asked.append(None)
        return "replica"

    def read_hinted(db: str) -> str | None:
        asked.append(db)
        return "replica"

    _core.install_router(c, context.note_write, (read, read_hinted))
    try:
        r, m = ReadWriteRouter(), ReplicationModel
        with replica_router.unit_of_work():
            assert r.db_for_read(m) == "replica"
            assert r.db_for_read(m, instance=obj("default")) == "replica"
            assert r.db_for_read(m, instance=obj(None)) == "replica"
            assert r.db_for_read(m, instance=obj("other")) is None
            assert asked == [None, "default", None]
            writes = c.decisions()["writes"]
            assert r.db_for_write(m) == "default"
            assert c.decisions()["writes"] == writes + 1
            assert context.wrote_in_unit()
    finally:
        _runtime.use_readers()


def test_the_router_builds_the_cluster_again_after_a_reset() -> None:
    """Proves: after ``_runtime.reset()`` (closing the cluster, as a settings change
    does) the router's next call builds a new cluster from the settings and routes
    with it."""
    old = _runtime.get_cluster()
    _runtime.reset()
    assert old.closed and _runtime.cluster is None
    assert ReadWriteRouter().db_for_read(ReplicationModel) == "default"
    new = _runtime.cluster
    assert new is not None and new is not old
    assert sum(v for k, v in new.decisions().items() if k != "writes") == 1
