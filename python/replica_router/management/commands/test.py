"""``manage.py test``: Django's command, after checking this package's settings.

An app's command takes precedence over Django's own, so installing the app is all it
takes. Django creates test databases before it runs the system checks; a settings
error (such as E003) leaves replicas without ``TEST["MIRROR"]``, and Django would try
to create a test database on a hot standby. So those errors are raised first, with
their check ids, and nothing is created.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.test import Command as DjangoTestCommand

from replica_router import testing


class Command(DjangoTestCommand):
    def handle(self, *test_labels: Any, **options: Any) -> None:
        testing.check_before_test_databases()
        testing.install_hooks()
        super().handle(*test_labels, **options)
