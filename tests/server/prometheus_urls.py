"""URLs of the django-prometheus test: the web tests' URLs plus django-prometheus' /metrics."""

from __future__ import annotations

from django.urls import include, path

from tests.server.web_urls import urlpatterns as web_urlpatterns

urlpatterns = [*web_urlpatterns, path("", include("django_prometheus.urls"))]
