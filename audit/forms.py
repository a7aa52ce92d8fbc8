"""The audit trail's filters and page cursor, shared by the API and the UI page."""

from __future__ import annotations

from typing import Any

from django import forms

from audit.models import ActorType, AuditEvent

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def _column_length(name: str) -> int | None:
    # A value longer than its column cannot match anything: say so instead of searching.
    return getattr(AuditEvent._meta.get_field(name), "max_length", None)


class AuditFilterForm(forms.Form):
    action = forms.CharField(max_length=_column_length("action"), required=False)
    actor_type = forms.ChoiceField(
        choices=[("", "Any actor"), *ActorType.choices],
        required=False,
        label="Actor type",
        # Django's default message repeats the submitted value; this one does not.
        error_messages={"invalid_choice": "Not a known actor type."},
    )
    actor_id = forms.CharField(
        max_length=_column_length("actor_id"), required=False, label="Actor ID"
    )
    actor_label = forms.CharField(
        max_length=_column_length("actor_label"), required=False, label="Actor name"
    )
    target_id = forms.CharField(
        max_length=_column_length("target_id"),
        required=False,
        label="Credential / target ID",
    )
    request_id = forms.CharField(
        max_length=_column_length("request_id"), required=False, label="Request ID"
    )
    job_id = forms.CharField(max_length=_column_length("job_id"), required=False, label="Job ID")

    def filters(self) -> dict[str, str]:
        """The filters that were given (call after is_valid())."""
        return {name: value for name, value in self.cleaned_data.items() if value}


class AuditCursorForm(forms.Form):
    """Keyset paging on the chain's sequence: `before` gives older events, `after` newer."""

    before = forms.IntegerField(min_value=1, required=False)
    after = forms.IntegerField(min_value=1, required=False)
    limit = forms.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("before") is not None and cleaned.get("after") is not None:
            raise forms.ValidationError("Give either before or after, not both.")
        return cleaned
