"""URLs of the web views' tests: the suite's own, the admin, and test-only helpers."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path

from replica_router import views as rr_views
from tests.server.urls import urlpatterns as suite_urlpatterns
from tests.server.web import METRICS_TOKEN


def login_as(request: HttpRequest) -> HttpResponse:
    """Test-only: log in as ``?u=<username>``, then go to ``?next=`` (a browser started
    from the command line has no other way to carry a session)."""
    login(request, User.objects.get(username=request.GET["u"]))
    return redirect(request.GET.get("next", "/"))


urlpatterns = [
    *suite_urlpatterns,
    path("admin/", admin.site.urls),
    path("login-as/", login_as),
    path("replicas-fast/", rr_views.status_page, {"refresh_seconds": 2}),
    path("replicas-still/", rr_views.status_page, {"refresh_seconds": 0}),
    path("metrics-loopback/", rr_views.metrics, {"allowed_ips": ["127.0.0.0/8", "::1"]}),
    path("metrics-token/", rr_views.metrics, {"bearer_token": METRICS_TOKEN}),
]
