"""Views used by the consistency tests (request units, read-your-writes cookie)."""

from __future__ import annotations

from django.urls import include, path

from tests.server import views

urlpatterns = [
    path("write/", views.write),
    path("read/<int:pk>/", views.read),
    path("write-then-read/", views.write_then_read),
    path("raw-write-then-read/", views.raw_write_then_read),
    path("status/", views.status),
    path("awrite/", views.awrite),
    path("aread/<int:pk>/", views.aread),
    path("aread-any/<int:pk>/", views.aread_any),
    path("replicas/", include("replica_router.urls")),
]
