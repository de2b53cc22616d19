"""The Django app: wiring only (checks, request units of work, test mirrors)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started, setting_changed


class ReplicaRouterConfig(AppConfig):
    name = "replica_router"
    verbose_name = "Replica router"

    def ready(self) -> None:
        from replica_router import checks, conf, context  # noqa: F401 (registers checks)

        request_started.connect(_request_started, dispatch_uid="replica_router.request_started")
        request_finished.connect(_request_finished, dispatch_uid="replica_router.request_finished")
        setting_changed.connect(_setting_changed, dispatch_uid="replica_router.setting_changed")
        conf.capture_databases()
        try:
            settings = conf.load()
        except ImproperlyConfigured:
            return  # the system checks report it with the key and value
        if settings.test_mirror:
            set_test_mirrors(settings)


def set_test_mirrors(settings: Any) -> None:
    """Make replicas mirror the primary under Django's test runner and pytest-django.

    Done at app loading, before any test database exists. Django fills in
    ``TEST["MIRROR"] = None`` by itself, so only a truthy value counts as the user's.
    """
    from django.conf import settings as django_settings

    for alias in settings.replicas:
        db = django_settings.DATABASES[alias]
        test = db.setdefault("TEST", {})
        if not test.get("MIRROR"):
            test["MIRROR"] = settings.primary


def _request_started(sender: Any, **kwargs: Any) -> None:
    from replica_router.context import begin_request

    begin_request()


def _request_finished(sender: Any, **kwargs: Any) -> None:
    from replica_router.context import end_request

    end_request()


def _setting_changed(sender: Any, setting: str, **kwargs: Any) -> None:
    if setting in ("REPLICA_ROUTER", "DATABASES"):
        from replica_router import _runtime, conf

        if setting == "DATABASES":
            conf.forget_captured_databases()
        _runtime.reset()
