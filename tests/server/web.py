"""Settings and helpers for the web views' tests (readiness, status page, metrics).

The session's settings have no sessions, admin or templates; these tests add them with
``override_settings`` for their own duration, so the rest of the suite is unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.test import override_settings

WEB_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "replica_router",
    "router",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


@contextlib.contextmanager
def web_settings(*, admin: bool = True, **extra: Any) -> Iterator[None]:
    """Sessions (signed cookies: no table), auth and messages middleware, templates,
    static files and, with ``admin``, ``django.contrib.admin`` mounted at ``/admin/``."""
    apps = WEB_APPS if admin else [a for a in WEB_APPS if a != "django.contrib.admin"]
    with override_settings(
        INSTALLED_APPS=apps,
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            *settings.MIDDLEWARE,
        ],
        TEMPLATES=TEMPLATES,
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        MESSAGE_STORAGE="django.contrib.messages.storage.cookie.CookieStorage",
        STATIC_URL="/static/",
        ROOT_URLCONF="tests.server.web_urls" if admin else "tests.server.urls",
        **extra,
    ):
        yield


METRICS_TOKEN = "test-metrics-token-0123"

_users_lock = threading.Lock()


def user(username: str, *, staff: bool) -> Any:
    """A user on the primary (created once per session), staff or not."""
    from django.contrib.auth.models import User

    with _users_lock:
        u, _ = User.objects.using("default").get_or_create(
            username=username, defaults={"is_staff": staff}
        )
        if u.is_staff != staff:
            u.is_staff = staff
            u.save(using="default")
    return u


@contextlib.contextmanager
def live_server() -> Iterator[str]:
    """Django's live server (a real threaded HTTP server, static files included) in
    this process, so it routes with the cluster the test sees; yields its base URL.
    Use inside :func:`web_settings`. Always stopped."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(timeout=10)
    try:
        if thread.error:
            raise thread.error
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        thread.join(timeout=10)
