from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from credentials.models import Credential


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """Metadata only. The envelope columns are neither listed, shown nor editable, and no
    admin action exists that could decrypt: secrets are submitted through the UI or API."""

    list_display = ["name", "org", "kind", "status", "key_id", "updated_at", "last_used_at"]
    list_filter = ["kind", "status", "key_id"]
    search_fields = ["name", "org__slug"]
    fields = readonly_fields = (
        "id",
        "org",
        "name",
        "kind",
        "description",
        "status",
        "key_id",
        "format_version",
        "created_by",
        "created_at",
        "updated_at",
        "secret_updated_at",
        "last_used_at",
    )
    actions = None

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("wrapped_data_key", "ciphertext")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
