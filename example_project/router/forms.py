"""Validation of rows posted to the create endpoint."""

from django import forms

from .models import ReplicationModel


class ReplicationForm(forms.ModelForm):
    """Fields a client may set; ``date_created`` is filled in by the database layer."""

    class Meta:
        model = ReplicationModel
        fields = ("name", "count", "is_available", "average")
