"""Small views: each reports which alias served its reads, so tests can count."""

from __future__ import annotations

from django.db import router
from django.http import HttpRequest, JsonResponse
from router.models import ReplicationModel

import replica_router


def _create(name: str = "t") -> ReplicationModel:
    return ReplicationModel.objects.create(name=name[:10], count=1, average=1.0)


def write(request: HttpRequest) -> JsonResponse:
    obj = _create()
    return JsonResponse({"pk": obj.pk})


def read(request: HttpRequest, pk: int) -> JsonResponse:
    alias = router.db_for_read(ReplicationModel)
    found = ReplicationModel.objects.using(alias).filter(pk=pk).exists()
    return JsonResponse({"alias": alias, "found": found})


def write_then_read(request: HttpRequest) -> JsonResponse:
    obj = _create()
    alias = router.db_for_read(ReplicationModel)
    found = ReplicationModel.objects.using(alias).filter(pk=obj.pk).exists()
    return JsonResponse({"alias": alias, "found": found, "pk": obj.pk})


def status(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"nodes": replica_router.status()})


async def awrite(request: HttpRequest) -> JsonResponse:
    obj = await ReplicationModel.objects.acreate(name="a", count=1, average=1.0)
    return JsonResponse({"pk": obj.pk})


async def aread(request: HttpRequest, pk: int) -> JsonResponse:
    alias = router.db_for_read(ReplicationModel)
    found = await ReplicationModel.objects.using(alias).filter(pk=pk).aexists()
    return JsonResponse({"alias": alias, "found": found})


async def aread_any(request: HttpRequest, pk: int) -> JsonResponse:
    """A routed read (the router picks the node per query, the backend may retry)."""
    found = await ReplicationModel.objects.filter(pk=pk).aexists()
    return JsonResponse({"found": found})


def raw_write_then_read(request: HttpRequest) -> JsonResponse:
    """Writes with an explicit alias (no ``db_for_write``, so no pin), then reads."""
    obj = ReplicationModel.objects.using("default").create(name="raw", count=1, average=1.0)
    alias = router.db_for_read(ReplicationModel)
    found = ReplicationModel.objects.using(alias).filter(pk=obj.pk).exists()
    return JsonResponse({"alias": alias, "found": found, "pk": obj.pk})
