"""URL configuration of the DJReplica example: the ``router`` app, and the router's
readiness view, staff status page and (for local scrapers) Prometheus metrics."""

from django.urls import include, path

from replica_router import views

urlpatterns = [
    path("", include("router.urls")),
    # ready/ for load balancers; the status page for staff (standalone here: no admin).
    path("replicas/", include("replica_router.urls")),
    # Prometheus, from this host only (needs the `prometheus` extra; 501 without it).
    path("metrics", views.metrics, {"allowed_ips": ["127.0.0.1", "::1"]}),
]
