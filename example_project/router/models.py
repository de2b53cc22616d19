"""The tutorial's model: one column of each common type."""

from django.db import models


class ReplicationModel(models.Model):
    """A row written to the primary and read back from either node."""

    name = models.CharField(max_length=10)
    count = models.IntegerField()
    is_available = models.BooleanField(default=True)
    average = models.FloatField()
    date_created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"
