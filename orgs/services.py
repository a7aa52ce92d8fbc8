from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from orgs.models import Membership, Organization, Role


@transaction.atomic
def org_create(*, slug: str, name: str, owner: User | None = None) -> Organization:
    org = Organization.objects.create(slug=slug, name=name)
    if owner is not None:
        Membership.objects.create(user=owner, org=org, role=Role.OWNER)
    return org


def membership_set(*, org: Organization, user: User, role: Role) -> Membership:
    membership, _ = Membership.objects.update_or_create(org=org, user=user, defaults={"role": role})
    return membership
