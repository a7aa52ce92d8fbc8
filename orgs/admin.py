"""Django admin for organisations, memberships and roles.

Every change goes through orgs.services, so it is audited and the role's django-guardian group
follows the membership. Staff who are not superusers see only the organisations they are an
owner or admin of, can name nothing outside them in a form, and act there with their role (only
owners touch the owner role or delete the organisation); superusers (platform operators) see
all and act as operators.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from audit.services import Actor
from orgs import selectors, services
from orgs.models import Membership, Organization, PersonalToken, Role

# Role groups and agent principal groups are derived from memberships and agents: editing a
# group by hand would grant permissions that no membership explains.
admin.site.unregister(Group)


class OrgScopedAdmin(admin.ModelAdmin):
    """Change lists, lookups and form choices limited to the organisations the staff user
    manages."""

    org_lookup = "org"

    @staticmethod
    def managed_orgs(request: HttpRequest) -> QuerySet[Organization] | None:
        """The organisations a staff user acts in here; None for superusers (all of them)."""
        user = request.user
        if getattr(user, "is_superuser", False):
            return None
        return selectors.orgs_managed_by(user=user)  # type: ignore[arg-type]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        managed = self.managed_orgs(request)
        if managed is None:
            return queryset
        return queryset.filter(**{f"{self.org_lookup}__in": managed})

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        # Scoping the lists is not enough: a form names its choices by id, so the choices
        # themselves (and with them what a POST may name) stay inside the managed orgs.
        managed = self.managed_orgs(request)
        if managed is not None and db_field.related_model is Organization:
            kwargs["queryset"] = managed
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def admin_actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


def admin_acting_role(request: HttpRequest, org: Organization) -> Role | None:
    """The role staff act with in `org`, as in the product (only owners touch the owner role);
    None for superusers, who act as platform operators."""
    if getattr(request.user, "is_superuser", False):
        return None
    membership = Membership.objects.filter(org=org, user=request.user).first()  # type: ignore[misc]
    if membership is None:
        raise PermissionDenied("You do not manage this organisation.")
    return Role(membership.role)


class ServiceRefusalsAsMessages(admin.ModelAdmin):
    """A service's ValidationError (the last owner cannot go) is shown on the page it came
    from instead of a 500; admin's own transaction has rolled the attempt back."""

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ValidationError as exc:
            return self._refused(request, exc)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)
        except ValidationError as exc:
            return self._refused(request, exc)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changelist_view(request, *args, **kwargs)
        except ValidationError as exc:
            return self._refused(request, exc)

    def _refused(self, request: HttpRequest, exc: ValidationError) -> HttpResponse:
        messages.error(request, " ".join(exc.messages))
        return HttpResponseRedirect(request.get_full_path())


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdmin):
    org_lookup = "pk"
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["slug"] if obj is not None else []  # URLs and API clients rely on the slug

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return {} if obj is not None else {"slug": ["name"]}

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Deleting an organisation is its owners' decision (admins manage members, not the
        # org's existence); bulk deletion is for superusers.
        if not super().has_delete_permission(request, obj):
            return False
        if getattr(request.user, "is_superuser", False):
            return True
        return obj is not None and admin_acting_role(request, obj) is Role.OWNER  # type: ignore[arg-type]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            services.org_rename(org=obj, name=obj.name, actor=admin_actor(request))
            return
        created = services.org_create(slug=obj.slug, name=obj.name, actor=admin_actor(request))
        obj.pk = created.pk
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.org_delete(org=obj, actor=admin_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for org in queryset:
            services.org_delete(org=org, actor=admin_actor(request))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        org = form.instance
        actor = admin_actor(request)
        acting_role = admin_acting_role(request, org)
        # Saved through the services, not formset.save(); admin's change message reads these.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        try:
            for inline_form in formset.deleted_forms:
                if inline_form.instance.pk:
                    services.membership_remove(
                        membership=inline_form.instance, actor=actor, acting_role=acting_role
                    )
            for inline_form in formset.forms:
                if inline_form in formset.deleted_forms or not inline_form.has_changed():
                    continue
                data = inline_form.cleaned_data
                if not data or not data.get("user"):
                    continue
                previous_user = inline_form.initial.get("user")
                if inline_form.instance.pk and previous_user not in (None, data["user"].pk):
                    # The row now names another person: that is removing one member and
                    # adding another, and both are recorded as such.
                    services.membership_remove(
                        membership=inline_form.instance, actor=actor, acting_role=acting_role
                    )
                services.membership_set(
                    org=org,
                    user=data["user"],
                    role=Role(data["role"]),
                    actor=actor,
                    acting_role=acting_role,
                )
        except (ValidationError, PermissionDenied) as exc:
            messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))


@admin.register(Membership)
class MembershipAdmin(ServiceRefusalsAsMessages, OrgScopedAdmin):
    list_display = ["user", "org", "role", "created_at"]
    # RelatedOnly: the filter lists the orgs of the rows shown, not every org's name.
    list_filter = ["role", ("org", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "org__slug"]
    autocomplete_fields = ["user"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["user", "org"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        membership = services.membership_set(
            org=obj.org,
            user=obj.user,
            role=Role(obj.role),
            actor=admin_actor(request),
            acting_role=admin_acting_role(request, obj.org),
        )
        obj.pk = membership.pk
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.membership_remove(
            membership=obj,
            actor=admin_actor(request),
            acting_role=admin_acting_role(request, obj.org),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for membership in queryset.select_related("org", "user"):
            self.delete_model(request, membership)


@admin.register(PersonalToken)
class PersonalTokenAdmin(admin.ModelAdmin):
    """Metadata only (never the digest), and one action: revoke."""

    list_display = [
        "name",
        "user",
        "display",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "display"]
    fields = readonly_fields = (
        "id",
        "user",
        "name",
        "display",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    )
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if getattr(request.user, "is_superuser", False):
            return queryset
        return queryset.filter(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoked tokens stay, so the trail can name them

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user = request.user
        assert isinstance(user, User)  # noqa: S101 - admin views need a signed-in user
        active = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        for token in active:
            services.personal_token_revoke(token=token, acting_user=user)
        count = len(active)
        self.message_user(request, f"{count} token(s) revoked.")
