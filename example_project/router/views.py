"""Small JSON views over ``ReplicationModel`` and the router's view of the cluster."""

from __future__ import annotations

import json
import os
from typing import Any

from django.db import router
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import replica_router

from .forms import ReplicationForm
from .models import ReplicationModel

MAX_ROWS = 1000


def _row(obj: ReplicationModel) -> dict[str, Any]:
    return {
        "id": obj.pk,
        "name": obj.name,
        "count": obj.count,
        "is_available": obj.is_available,
        "average": obj.average,
        "date_created": obj.date_created.isoformat(),
    }


@require_GET
def row_list(request: HttpRequest) -> JsonResponse:
    """The newest rows (``?limit=``, default 100) and the database alias that served them."""
    try:
        limit = min(max(int(request.GET.get("limit", "100")), 0), MAX_ROWS)
    except ValueError:
        return JsonResponse({"error": "limit must be an integer"}, status=400)
    qs = ReplicationModel.objects.all()
    # QuerySet.db asks the router again on every access, so pin the one answer
    # and query that alias: the reported "db" is then the node that answered.
    alias = qs.db
    rows = [_row(obj) for obj in qs.using(alias).order_by("-id")[:limit]]
    return JsonResponse({"db": alias, "count": len(rows), "rows": rows})


# A JSON API for scripts and curl, not a browser form, so there is no CSRF token to send.
@csrf_exempt
@require_POST
def row_create(request: HttpRequest) -> JsonResponse:
    """Create a row from a JSON object (or form fields); answers 201 with the row."""
    if request.content_type == "application/json":
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "body is not valid JSON"}, status=400)
        if not isinstance(payload, dict):
            return JsonResponse({"error": "body must be a JSON object"}, status=400)
    else:
        payload = request.POST.dict()
    # A form checkbox that is absent means False; for an API it means "use the
    # model's default".
    payload.setdefault("is_available", True)
    form = ReplicationForm(payload)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    obj = form.save()
    return JsonResponse({"db": obj._state.db, "row": _row(obj)}, status=201)


@require_GET
def cluster_status(request: HttpRequest) -> JsonResponse:
    """What replica_router knows about each node (state, role, lag, reads routed), as
    seen by the worker process that answers (``pid``). ``?reads=N`` also routes N
    reads and lists where they went (``routed``)."""
    body: dict[str, Any] = {"pid": os.getpid(), "nodes": replica_router.status()}
    if "reads" in request.GET:
        try:
            count = min(int(request.GET["reads"]), MAX_ROWS)
        except ValueError:
            return JsonResponse({"error": "reads must be an integer"}, status=400)
        body["routed"] = sorted({router.db_for_read(ReplicationModel) for _ in range(count)})
    return JsonResponse(body)
