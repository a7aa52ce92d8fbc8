from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from agents.models import Agent, AgentRun, CredentialBinding


class BindingInline(admin.TabularInline):
    model = CredentialBinding
    extra = 0
    raw_id_fields = ["credential"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "tool", "updated_at"]
    list_filter = ["tool", "org"]
    search_fields = ["name", "org__slug"]
    inlines = [BindingInline]


@admin.register(AgentRun)
class AgentRunAdmin(admin.ModelAdmin):
    list_display = ["id", "org", "agent", "status", "queued_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "request_id"]
    readonly_fields = [f.name for f in AgentRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
