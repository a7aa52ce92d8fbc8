"""HTML form plumbing shared by every app (the UI twin of config.api)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form: on the field it names, else on top.

    Services key errors by their own argument names ("name", "bindings", "config.url"); a key
    the form has no field for becomes a form-wide error instead of a ValueError.
    """
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for field, messages in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)
