"""Django settings for ``benchmarks/failover.py``: the DJReplica example's, with the
aliases and router of one compared setup.

``benchmarks/failover.py`` passes them as JSON in the environment:

* ``RR_FAILOVER_DATABASES``: the whole ``DATABASES`` (a node per alias, libpq
  multi-host aliases, or HAProxy's listeners);
* ``RR_FAILOVER_REPLICA_ROUTER``: keys merged into the example's ``REPLICA_ROUTER``.

``DJREPLICA_ROUTER`` (``ours`` or ``tutorial``) is read by the example's settings. The
tutorial's router runs without this project's app and middleware, as a project that
does not use it would (the app checks ``DATABASES`` at start-up).
"""

from __future__ import annotations

import json
import os

from DJReplica.settings import *  # noqa: F403  (the example's settings, then ours)
from DJReplica.settings import INSTALLED_APPS as _EXAMPLE_APPS
from DJReplica.settings import MIDDLEWARE as _EXAMPLE_MIDDLEWARE
from DJReplica.settings import REPLICA_ROUTER as _EXAMPLE_ROUTER

DATABASES = json.loads(os.environ["RR_FAILOVER_DATABASES"])
REPLICA_ROUTER = {
    **_EXAMPLE_ROUTER,
    **json.loads(os.environ.get("RR_FAILOVER_REPLICA_ROUTER", "{}")),
}

if os.environ.get("DJREPLICA_ROUTER", "ours") != "ours":
    INSTALLED_APPS = [a for a in _EXAMPLE_APPS if a != "replica_router"]
    MIDDLEWARE = [m for m in _EXAMPLE_MIDDLEWARE if not m.startswith("replica_router.")]
