"""Org-scoped reads: every view resolves its org here and fetches through `scoped`.

An object in another org, an unknown org, and an org the user is not a member of all answer
404 the same way, so nobody learns that something exists outside their orgs.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Model, QuerySet
from django.http import Http404

from orgs.models import Membership, Organization

M = TypeVar("M", bound=Model)


def memberships_for_user(user: User | AnonymousUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("org").order_by("org__slug")


def get_membership_or_404(*, user: User | AnonymousUser, org_slug: str) -> Membership:
    """The user's membership in the org named by slug; 404 for strangers and unknown slugs."""
    membership = memberships_for_user(user).filter(org__slug=org_slug).first()
    if membership is None:
        raise Http404("No such organisation.")
    return membership


def scoped(source: type[M] | QuerySet[M], *, org: Organization) -> QuerySet[M]:
    """The one org-scoped queryset helper: rows of `source` that belong to `org`."""
    queryset = source if isinstance(source, QuerySet) else source._default_manager.all()
    return queryset.filter(org=org)


def get_scoped_or_404(source: type[M] | QuerySet[M], *, org: Organization, pk: Any) -> M:
    """One object of `org` by id; a malformed id, a missing id and another org's id all 404."""
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        raise Http404("Not found.") from None
    obj = scoped(source, org=org).filter(pk=key).first()
    if obj is None:
        raise Http404("Not found.")
    return obj
