from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent
from orgs.admin import OrgScopedAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(OrgScopedAdmin):
    """Read-only: the trail is append-only everywhere. Staff who are not superusers read the
    trails of the orgs they manage (not the system trail, which has no org)."""

    list_display = [
        "occurred_at",
        "org",
        "sequence",
        "action",
        "outcome",
        "actor_label",
        "target_label",
    ]
    # Not "action": its filter lists SELECT DISTINCT action over the whole table on every
    # page view. The org's Audit page filters by action on an index.
    list_filter = ["outcome", "actor_type"]
    search_fields = ["request_id", "job_id", "target_id", "actor_label"]
    # A COUNT(*) of millions of rows on every page view is what makes admin lists slow.
    show_full_result_count = False
    ordering = ["-id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
