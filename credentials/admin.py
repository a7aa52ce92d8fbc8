"""Django admin: credential metadata (read-only) and per-credential grants.

No page shows a secret or its envelope, and no admin action can decrypt: secrets are
submitted through the UI or API. Grants are added and removed through credentials.services,
so each one is audited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db.models import ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from credentials.models import (
    Credential,
    CredentialGroupObjectPermission,
    CredentialUserObjectPermission,
)
from credentials.services import (
    GRANT_PERMISSIONS,
    Grantee,
    credential_grant,
    credential_revoke_grant,
)
from orgs.admin import OrgScopedAdmin, admin_actor
from orgs.models import Membership

_GRANT_CODENAMES = {codename: name for name, codename in GRANT_PERMISSIONS.items()}


def _grant_permissions() -> QuerySet[Permission]:
    return Permission.objects.filter(
        content_type__app_label="credentials", codename__in=list(_GRANT_CODENAMES)
    )


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class MemberGrantInline(_ReadOnlyInline):
    model = CredentialUserObjectPermission
    fields = readonly_fields = (
        "user",
        "permission",
    )
    verbose_name = verbose_name_plural = "Grants to members (manage them under Credential grants)"


class AgentGrantInline(_ReadOnlyInline):
    model = CredentialGroupObjectPermission
    fields = readonly_fields = (
        "group",
        "permission",
    )
    verbose_name = verbose_name_plural = "Grants to agents (manage them under Credential grants)"


@admin.register(Credential)
class CredentialAdmin(OrgScopedAdmin):
    """Metadata only. The envelope columns are neither listed, shown nor editable."""

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
    inlines = [MemberGrantInline, AgentGrantInline]
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("wrapped_data_key", "ciphertext")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MemberGrantForm(forms.ModelForm):
    class Meta:
        model = CredentialUserObjectPermission
        fields = ["content_object", "user", "permission"]
        labels = {"content_object": "Credential"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["permission"].queryset = _grant_permissions()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        credential, user = data.get("content_object"), data.get("user")
        if (
            credential is not None
            and user is not None
            and not Membership.objects.filter(org_id=credential.org_id, user=user).exists()
        ):
            raise forms.ValidationError(
                "The user is not a member of the credential's organisation."
            )
        return data


class AgentGrantForm(forms.ModelForm):
    class Meta:
        model = CredentialGroupObjectPermission
        fields = ["content_object", "group", "permission"]
        labels = {"content_object": "Credential", "group": "Agent (its principal group)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["permission"].queryset = _grant_permissions()  # type: ignore[attr-defined]
        self.fields["group"].queryset = self.fields["group"].queryset.filter(agent__isnull=False)  # type: ignore[attr-defined]
        self.fields["group"].label_from_instance = lambda g: f"{g.agent.org.slug} / {g.agent.name}"  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        credential, group = data.get("content_object"), data.get("group")
        if credential is not None and group is not None and group.agent.org_id != credential.org_id:
            raise forms.ValidationError("The agent is not in the credential's organisation.")
        return data


class _GrantAdmin(OrgScopedAdmin):
    org_lookup = "content_object__org"
    raw_id_fields = ["content_object"]
    actions = ["revoke_selected"]

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a grant is added or revoked, never edited

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        # The credential is named by its id (raw id field): only the managed orgs' ids count.
        managed = self.managed_orgs(request)
        if managed is not None and db_field.name == "content_object":
            kwargs["queryset"] = Credential.objects.filter(org__in=managed).defer(
                "wrapped_data_key", "ciphertext"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would bypass the audited service
        return actions

    def _grantee(self, obj: Any) -> Grantee:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        credential_grant(
            credential=obj.content_object,
            permission=_GRANT_CODENAMES[obj.permission.codename],
            grantee=self._grantee(obj),
            acting_user=None,
            actor=admin_actor(request),
        )
        saved = self._rows_like(obj).first()
        if saved is not None:
            obj.pk = saved.pk
            obj._state.adding = False

    def _rows_like(self, obj: Any) -> QuerySet[Any]:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        credential_revoke_grant(
            credential=obj.content_object,
            permission=_GRANT_CODENAMES[obj.permission.codename],
            grantee=self._grantee(obj),
            acting_user=None,
            actor=admin_actor(request),
        )

    @admin.action(description="Revoke selected grants", permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        rows = list(queryset.select_related("content_object__org", "permission"))
        for row in rows:
            self.delete_model(request, row)
        self.message_user(request, f"{len(rows)} grant(s) revoked.")


@admin.register(CredentialUserObjectPermission)
class MemberGrantAdmin(_GrantAdmin):
    form = MemberGrantForm
    list_display = ["content_object", "user", "permission"]
    search_fields = ["content_object__name", "user__username"]
    autocomplete_fields = ["user"]

    def _grantee(self, obj: Any) -> Grantee:
        return Grantee.for_user(obj.user)

    def _rows_like(self, obj: Any) -> QuerySet[Any]:
        return CredentialUserObjectPermission.objects.filter(
            content_object=obj.content_object, user=obj.user, permission=obj.permission
        )


@admin.register(CredentialGroupObjectPermission)
class AgentGrantAdmin(_GrantAdmin):
    form = AgentGrantForm
    list_display = ["content_object", "agent_name", "permission"]
    search_fields = ["content_object__name", "group__agent__name"]

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        managed = self.managed_orgs(request)
        if managed is not None and db_field.name == "group":
            kwargs["queryset"] = Group.objects.filter(agent__org__in=managed)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Agent")
    def agent_name(self, obj: Any) -> str:
        agent = getattr(obj.group, "agent", None)
        return agent.name if agent is not None else obj.group.name

    def _grantee(self, obj: Any) -> Grantee:
        agent = obj.group.agent
        return Grantee("agent", str(agent.id), agent.name, group=obj.group)

    def _rows_like(self, obj: Any) -> QuerySet[Any]:
        return CredentialGroupObjectPermission.objects.filter(
            content_object=obj.content_object, group=obj.group, permission=obj.permission
        )
