"""Org-scoped reads: every view resolves its org once (orgs.access.access_for) and fetches
through `scoped` / `get_scoped_or_404`.

An object in another org, an unknown org, and an org the user is not a member of all answer
404 the same way, so nobody learns that something exists outside their orgs.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, TypeVar

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Model, QuerySet
from django.http import Http404

from orgs import tokens
from orgs.access import ScopedObjectNotFound
from orgs.models import Membership, Organization, PersonalToken, Role

M = TypeVar("M", bound=Model)


def memberships_for_user(user: User | AnonymousUser | object) -> QuerySet[Membership]:
    if not isinstance(user, User):
        return Membership.objects.none()  # anonymous, or an agent token: no memberships
    return Membership.objects.filter(user=user).select_related("org").order_by("org__slug")


def organization_get_by_slug(*, slug: str) -> Organization | None:
    """For operator commands, which act on any organisation by slug (a slug no organisation
    can have, with a NUL that PostgreSQL refuses in a query, finds none)."""
    if "\x00" in slug:
        return None
    return Organization.objects.filter(slug=slug).first()


def orgs_managed_by(*, user: User) -> QuerySet[Organization]:
    """Organisations in which the user is an owner or admin (Django admin's scope for staff)."""
    return Organization.objects.filter(
        memberships__user=user, memberships__role__in=[Role.OWNER, Role.ADMIN]
    )


def members_list(*, org: Organization) -> QuerySet[Membership]:
    return scoped(Membership, org=org).select_related("user").order_by("user__username")


def member_get(*, org: Organization, username: str) -> Membership | None:
    """The member of `org` with this username, or None. A name no account can have (NUL, from
    a URL path or a raw form field) is None without a query: PostgreSQL refuses NUL."""
    if "\x00" in username:
        return None
    return members_list(org=org).filter(user__username=username).first()


def owners_count(*, org: Organization) -> int:
    return scoped(Membership, org=org).filter(role=Role.OWNER).count()


def scoped(source: type[M] | QuerySet[M], *, org: Organization) -> QuerySet[M]:
    """The one org-scoped queryset helper: rows of `source` that belong to `org`."""
    queryset = source if isinstance(source, QuerySet) else source._default_manager.all()
    return queryset.filter(org=org)


def get_scoped_or_404(source: type[M] | QuerySet[M], *, org: Organization, pk: Any) -> M:
    """One object of `org` by id; a malformed id, a missing id and another org's id all 404."""
    queryset = source if isinstance(source, QuerySet) else source._default_manager.all()
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        raise ScopedObjectNotFound(queryset.model, None, org) from None
    obj = scoped(queryset, org=org).filter(pk=key).first()
    if obj is None:
        raise ScopedObjectNotFound(queryset.model, key, org)
    return obj


def personal_tokens_list(*, user: User) -> QuerySet[PersonalToken]:
    return PersonalToken.objects.filter(user=user).order_by("-created_at")


def personal_token_get(*, user: User, token_id: Any) -> PersonalToken:
    """One of the user's own tokens; anyone else's is a 404 like a missing one."""
    try:
        key = uuid.UUID(str(token_id))
    except ValueError:
        key = None
    token = personal_tokens_list(user=user).filter(pk=key).first() if key else None
    if token is None:
        raise Http404("Not found.")
    return token


def personal_tokens_active_for_members(
    *, org: Organization | None, issued_before: datetime.datetime
) -> QuerySet[PersonalToken]:
    """Active personal tokens issued before a moment, of the members of `org` (None: of
    everyone)."""
    active = PersonalToken.objects.filter(revoked_at__isnull=True, created_at__lt=issued_before)
    if org is not None:
        active = active.filter(user__memberships__org=org)
    return active.distinct()


def personal_token_by_plaintext(plaintext: str) -> PersonalToken | None:
    """The token with this digest (any state), for authentication."""
    return (
        PersonalToken.objects.select_related("user").filter(digest=tokens.digest(plaintext)).first()
    )
