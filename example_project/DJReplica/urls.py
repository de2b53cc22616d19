"""URL configuration of the DJReplica example: everything lives in the ``router`` app."""

from django.urls import include, path

urlpatterns = [
    path("", include("router.urls")),
]
