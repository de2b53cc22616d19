"""URLs to include: ``path("replicas/", include("replica_router.urls"))``.

- ``ready/``: readiness for load balancers; anyone; 200 ``{"status": "ok"}`` or
  ``"degraded"``, 503 ``"unavailable"``; no node details unless staff.
- ```` (the prefix itself): the status page; staff only.
- ``metrics/``: Prometheus text format; staff only here. For a scraper, mount
  :func:`replica_router.views.metrics` yourself with ``allowed_ips`` or
  ``bearer_token`` (see docs/observability.md).

Names live in the ``replica_router`` namespace (``replica_router:ready``, ...).
"""

from __future__ import annotations

from django.urls import path

from replica_router import views

app_name = "replica_router"

urlpatterns = [
    path("", views.status_page, name="status"),
    path("ready/", views.readiness, name="ready"),
    path("metrics/", views.metrics, name="metrics"),
]
