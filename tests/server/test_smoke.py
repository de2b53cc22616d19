"""The basics against the real primary + standby."""

from __future__ import annotations

from django.db import router
from router.models import ReplicationModel

import replica_router
from tests.support import LocalCluster, wait_all_up


def test_writes_go_to_primary_and_reads_reach_both(healthy: LocalCluster) -> None:
    wait_all_up()
    with replica_router.unit_of_work():
        obj = ReplicationModel.objects.create(name="smoke", count=1, average=2.0)
        assert obj._state.db == "default"
        assert router.db_for_write(ReplicationModel) == "default"
    # The unit is over: its pin is gone and reads are spread again.
    seen = {router.db_for_read(ReplicationModel) for _ in range(200)}
    assert seen == {"default", "replica"}
