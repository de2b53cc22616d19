"""URLs of the ``router`` app."""

from django.urls import path

from . import views

urlpatterns = [
    path("rows/", views.row_list, name="row-list"),
    path("rows/create/", views.row_create, name="row-create"),
    path("status/", views.cluster_status, name="cluster-status"),
]
