"""Write-only credential forms: the secret goes in and is never rendered back."""

from __future__ import annotations

from typing import Any

from django import forms

from credentials import services
from credentials.models import CredentialKind

# Django's default invalid-choice message quotes the submitted value; ours does not.
_KIND_ERROR = f"Must be one of: {', '.join(CredentialKind.values)}."


class SecretField(forms.CharField):
    """A password input that is empty on every render, never stripped, never echoed.

    `render_value=False` keeps a re-rendered form (any validation error) from putting the
    submitted secret back into the page; `new-password` asks browsers not to autofill the
    user's own site password into it.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(
            strip=False,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        )
        super().__init__(**kwargs)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value in self.empty_values:
            return
        # The service's ValidationError becomes this field's error as is: its messages never
        # contain the value.
        services.validate_secret(value)


class CredentialCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(
        choices=CredentialKind.choices,
        initial=CredentialKind.API_KEY,
        error_messages={"invalid_choice": _KIND_ERROR},
    )
    secret = SecretField(help_text="Stored encrypted. Nobody can read it back, including you.")
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )


class SecretReplaceForm(forms.Form):
    secret = SecretField(
        label="New secret",
        help_text="Replaces the stored secret. A compromised credential becomes active again.",
    )
