"""ASGI entry point of the DJReplica example."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "DJReplica.settings")

application = get_asgi_application()
