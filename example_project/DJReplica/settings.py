"""Settings of the DJReplica example: the tutorial's primary + hot standby, routed by replica_router.

Without any environment variable this is the tutorial's layout: ``default`` is
the primary on 127.0.0.1:5432 and ``replica`` the hot standby on 127.0.0.1:5433,
both database ``postgres`` with user and password ``postgres``. The ``DJREPLICA_*``
variables below point it elsewhere, e.g. at a cluster started with
``python tests/pgcluster.py up``.

For comparisons (``benchmarks/faults.py``) three more variables swap parts out:

* ``DJREPLICA_ROUTER``: ``ours`` (default, ``replica_router.ReadWriteRouter``),
  ``tutorial`` (``tutorial_router.CursorCheckRouter`` from ``benchmarks/``, which
  must then be on ``PYTHONPATH``) or ``multidb`` (django-multidb-router's
  ``multidb.ReplicaRouter``, replica ``replica``).
* ``DJREPLICA_ENGINE``: ``backend`` (default, ``replica_router.backends.postgresql``)
  or ``django`` (``django.db.backends.postgresql``).
* ``DJREPLICA_CONN_MAX_AGE``: Django's ``CONN_MAX_AGE`` for both aliases (default 0).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _number(var: str, default: float) -> float:
    """A number from the environment, or an error that names the variable.

    Whole numbers stay ``int`` so that a weight reads as ``2``, not ``2.0``.
    """
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{var} must be a number, got {raw!r}") from None


def _flag(var: str, default: bool) -> bool:
    raw = os.environ.get(var)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


# Development only: the fallback key is public, so never deploy without
# DJREPLICA_SECRET_KEY (it also signs the read-your-writes cookie).
SECRET_KEY = os.environ.get(
    "DJREPLICA_SECRET_KEY", "django-insecure-djreplica-example-only-do-not-deploy"
)
DEBUG = _flag("DJREPLICA_DEBUG", True)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "replica_router",
    "router",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that it sees whether the view wrote and can tag the response.
    "replica_router.middleware.ReadYourWritesMiddleware",
]

ROOT_URLCONF = "DJReplica.urls"
# For replica_router's status page (its templates ship in the package).
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
WSGI_APPLICATION = "DJReplica.wsgi.application"
ASGI_APPLICATION = "DJReplica.asgi.application"

_DB_HOST = os.environ.get("DJREPLICA_DB_HOST", "127.0.0.1")


def _choice(var: str, choices: dict[str, str], default: str) -> str:
    """The value that ``var``'s name stands for, or an error that lists the names."""
    raw = os.environ.get(var, "").strip().lower() or default
    try:
        return choices[raw]
    except KeyError:
        raise ImproperlyConfigured(
            f"{var} must be one of {', '.join(sorted(choices))}, got {raw!r}"
        ) from None


_ENGINE = _choice(
    "DJREPLICA_ENGINE",
    {
        # Django's PostgreSQL backend plus what the router needs on the request
        # path: node faults reported at once, failed reads retried on another node,
        # bounded connects and keepalives.
        "backend": "replica_router.backends.postgresql",
        # Django's own backend, as the tutorial has it.
        "django": "django.db.backends.postgresql",
    },
    "backend",
)


def _node(port: str) -> dict[str, object]:
    node: dict[str, object] = {
        "ENGINE": _ENGINE,
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "postgres",
        "HOST": _DB_HOST,
        "PORT": port,
    }
    if os.environ.get("DJREPLICA_CONN_MAX_AGE", "").strip():
        node["CONN_MAX_AGE"] = _number("DJREPLICA_CONN_MAX_AGE", 0)
    return node


DATABASES = {
    # The primary (the tutorial's primary_db): every write goes here.
    "default": _node(os.environ.get("DJREPLICA_PRIMARY_PORT", "5432")),
    # The hot standby (the tutorial's secondary_db): read-only, serves reads.
    "replica": _node(os.environ.get("DJREPLICA_REPLICA_PORT", "5433")),
}

DATABASE_ROUTERS = [
    _choice(
        "DJREPLICA_ROUTER",
        {
            "ours": "replica_router.ReadWriteRouter",
            "tutorial": "tutorial_router.CursorCheckRouter",
            "multidb": "multidb.ReplicaRouter",
        },
        "ours",
    )
]
# django-multidb-router's list of replicas (read only by DJREPLICA_ROUTER=multidb).
REPLICA_DATABASES = ["replica"]

REPLICA_ROUTER = {
    "PRIMARY": "default",
    "REPLICAS": {"replica": {"WEIGHT": _number("DJREPLICA_REPLICA_WEIGHT", 2)}},
    "PRIMARY_READ_WEIGHT": 1,
    "PROBE_INTERVAL": _number("DJREPLICA_PROBE_INTERVAL", 1.0),
    "PROBE_TIMEOUT": _number("DJREPLICA_PROBE_TIMEOUT", 1.0),
    "FALL": 2,
    "RISE": 2,
    # One prober per host, its health shared by the worker processes (Linux).
    "SHARE_HEALTH": _flag("DJREPLICA_SHARE_HEALTH", True),
}
# Lag settings for benchmarks/lag.py: a number, or "none" to turn one off; unset, the
# router's defaults apply (MAX_LAG_SECONDS 5, MAX_LAG_BYTES 64 MiB, ceiling 30 s).
for _key in ("MAX_LAG_SECONDS", "MAX_LAG_BYTES", "LAG_CEILING_SECONDS"):
    _raw = os.environ.get(f"DJREPLICA_{_key}", "").strip()
    if _raw:
        REPLICA_ROUTER[_key] = None if _raw.lower() == "none" else _number(f"DJREPLICA_{_key}", 0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# LiveServerTestCase serves static files from here (none exist; the URL must be set).
STATIC_URL = "static/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "short": {
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            "datefmt": "%H:%M:%S",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "short"},
    },
    "loggers": {
        # A request that failed (500) is logged with its traceback, DEBUG or not.
        "django.request": {
            "handlers": ["console"],
            "level": "ERROR",
            "propagate": False,
        },
        # Node state changes (down, up, lagging, promoted) are logged here.
        "replica_router": {
            "handlers": ["console"],
            "level": os.environ.get("DJREPLICA_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
