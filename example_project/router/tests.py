"""Tests of the tutorial's model and the example views, run with ``manage.py test``.

Under the test runner the ``replica`` alias mirrors the primary's test database
(replica_router sets ``TEST["MIRROR"]``), so both aliases may be used here.
"""

from __future__ import annotations

import json
from typing import ClassVar

from django.db import router
from django.test import TestCase
from django.urls import reverse

import replica_router

from .models import ReplicationModel


class ReplicationModelTests(TestCase):
    """The model behaves as in the tutorial and its writes go to the primary."""

    databases: ClassVar[set[str]] = {"default", "replica"}

    def test_create_writes_to_primary(self) -> None:
        obj = ReplicationModel.objects.create(name="test", count=1, average=2.0)
        self.assertEqual(obj._state.db, "default")
        self.assertEqual(router.db_for_write(ReplicationModel), "default")

    def test_field_defaults(self) -> None:
        obj = ReplicationModel.objects.create(name="test", count=1, average=2.0)
        self.assertTrue(obj.is_available)
        self.assertIsNotNone(obj.date_created)
        self.assertIsNotNone(obj.date_created.tzinfo)  # USE_TZ = True

    def test_row_is_read_back(self) -> None:
        ReplicationModel.objects.create(name="readback", count=7, average=0.5)
        row = ReplicationModel.objects.get(name="readback")
        self.assertEqual((row.count, row.average, row.is_available), (7, 0.5, True))

    def test_reads_stay_in_the_cluster(self) -> None:
        self.assertIn(router.db_for_read(ReplicationModel), {"default", "replica"})

    def test_migrations_only_on_primary(self) -> None:
        self.assertTrue(router.allow_migrate_model("default", ReplicationModel))
        self.assertFalse(router.allow_migrate_model("replica", ReplicationModel))

    def test_name_is_limited_to_ten_characters(self) -> None:
        field = ReplicationModel._meta.get_field("name")
        self.assertEqual(field.max_length, 10)


class ViewTests(TestCase):
    """The JSON views of the example."""

    databases: ClassVar[set[str]] = {"default", "replica"}

    def test_create_and_list(self) -> None:
        response = self.client.post(
            reverse("row-create"),
            data=json.dumps({"name": "viaapi", "count": 3, "average": 1.5}),
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 201)
        body = response.json()
        self.assertEqual(body["db"], "default")
        self.assertEqual(body["row"]["name"], "viaapi")
        self.assertTrue(body["row"]["is_available"])
        self.assertTrue(ReplicationModel.objects.filter(name="viaapi").exists())

        listing = self.client.get(reverse("row-list")).json()
        self.assertIn(listing["db"], {"default", "replica"})
        self.assertEqual([row["name"] for row in listing["rows"]], ["viaapi"])

    def test_create_rejects_bad_rows(self) -> None:
        response = self.client.post(
            reverse("row-create"),
            data=json.dumps({"name": "far too long a name", "count": "x"}),
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 400)
        errors = response.json()["errors"]
        self.assertEqual(set(errors), {"name", "count", "average"})
        self.assertFalse(ReplicationModel.objects.exists())

    def test_create_rejects_invalid_json(self) -> None:
        response = self.client.post(
            reverse("row-create"), data="{nope", content_type="application/json"
        )
        self.assertEqual(response.status_code, 400)

    def test_list_requires_get(self) -> None:
        self.assertEqual(self.client.post(reverse("row-list")).status_code, 405)

    def test_status_lists_both_nodes(self) -> None:
        response = self.client.get(reverse("cluster-status"))
        self.assertEqual(response.status_code, 200)
        nodes = {node["alias"]: node for node in response.json()["nodes"]}
        self.assertEqual(set(nodes), {"default", "replica"})
        self.assertEqual(nodes["default"]["configured_role"], "primary")
        self.assertEqual(nodes["replica"]["configured_role"], "replica")

    def test_status_matches_public_api(self) -> None:
        aliases = {node["alias"] for node in replica_router.status()}
        self.assertEqual(aliases, {"default", "replica"})
