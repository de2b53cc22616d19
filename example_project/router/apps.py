"""App configuration of the ``router`` app."""

from django.apps import AppConfig


class RouterConfig(AppConfig):
    """The tutorial's app; named ``router`` like in the tutorial (it holds no router code)."""

    name = "router"
    verbose_name = "DJReplica router demo"
