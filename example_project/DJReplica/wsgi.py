"""WSGI entry point of the DJReplica example (``gunicorn DJReplica.wsgi``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "DJReplica.settings")

application = get_wsgi_application()
