"""Django admin for agents, runs and agent tokens: read-only views, plus token revocation.

Agents and their bindings change through the UI and API only (services check that the person
may use each bound credential, and audit the change); admin shows them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from agents.models import Agent, AgentRun, AgentToken, CredentialBinding
from agents.services import agent_token_revoke
from orgs.admin import OrgScopedAdmin


class _ReadOnly(OrgScopedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class BindingInline(admin.TabularInline):
    model = CredentialBinding
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "slot",
        "credential",
        "placement",
        "target",
        "template",
    )

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Agent)
class AgentAdmin(_ReadOnly):
    list_display = ["name", "org", "tool", "updated_at"]
    list_filter = ["tool", ("org", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "org__slug"]
    fields = readonly_fields = (
        "id",
        "org",
        "name",
        "description",
        "tool",
        "config",
        "created_by",
        "created_at",
        "updated_at",
    )
    inlines = [BindingInline]


@admin.register(AgentRun)
class AgentRunAdmin(_ReadOnly):
    list_display = ["id", "org", "agent", "status", "queued_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "request_id"]
    readonly_fields = [f.name for f in AgentRun._meta.fields]


@admin.register(AgentToken)
class AgentTokenAdmin(_ReadOnly):
    """Metadata only (never the digest), and one action: revoke."""

    list_display = [
        "name",
        "agent",
        "org",
        "display",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at", ("org", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "agent__name", "display"]
    fields = readonly_fields = (
        "id",
        "org",
        "agent",
        "name",
        "display",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke"]

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user = request.user
        assert isinstance(user, User)  # noqa: S101 - admin views need a signed-in user
        count = sum(
            agent_token_revoke(token=token, acting_user=user)
            for token in queryset.filter(revoked_at__isnull=True).select_related("agent", "org")
        )
        self.message_user(request, f"{count} token(s) revoked.")
