from __future__ import annotations

import datetime
import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from orgs.permissions import ORG_PERMISSIONS
from orgs.roles import Role

__all__ = [
    "ApiToken",
    "Membership",
    "OrgRoleGroup",
    "Organization",
    "OrganizationGroupObjectPermission",
    "OrganizationUserObjectPermission",
    "PersonalToken",
    "Role",
    "TokenState",
]


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        # Role permissions held on the organisation object (django-guardian), generated from
        # the matrix in orgs.permissions: a changed matrix shows up as a migration.
        permissions = list(ORG_PERMISSIONS)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's role in an organisation. The role's permissions are not stored here but on the
    organisation, for the role's group (OrgRoleGroup); orgs.services keeps the two in step."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "org"], name="membership_one_per_user_org"),
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.org_id}:{self.role}"


class OrgRoleGroup(models.Model):
    """The django-guardian group of one role in one organisation."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="role_groups")
    role = models.CharField(max_length=16, choices=Role.choices)
    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="org_role")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "role"], name="org_role_group_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.org_id}:{self.role}"


# Direct foreign keys instead of guardian's generic tables: real constraints (a grant dies with
# its organisation) and joins the database can index.
class OrganizationUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Organization, on_delete=models.CASCADE)


class OrganizationGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Organization, on_delete=models.CASCADE)


class TokenState(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class ApiToken(models.Model):
    """What agent and personal tokens share: shown once, stored as a SHA-256 digest only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    # SHA-256 of the whole token. The token carries 256 random bits, so a plain digest cannot
    # be brute-forced; a slow password hash would only slow down every API call.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, enough to recognise it in a list ("evh_at_Xy3k…").
    display = models.CharField(max_length=24, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display}…)"

    def state(self, now: datetime.datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return TokenState.EXPIRED
        return TokenState.ACTIVE


class PersonalToken(ApiToken):
    """A person's API token for scripts: acts as that person, with their role in each org."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )

    class Meta(ApiToken.Meta):
        indexes = [models.Index(fields=["user", "-created_at"], name="personal_token_user")]
