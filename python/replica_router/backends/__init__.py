"""Database backends of django-replica-router (see ``postgresql``)."""
