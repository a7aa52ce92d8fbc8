"""A removed member keeps nothing: their per-credential grants end with the membership."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from credentials.models import CredentialUserObjectPermission
from credentials.services import Grantee, credential_grant
from orgs.models import Membership, Role
from orgs.services import membership_remove, membership_set
from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_a_removed_members_grants_end_with_the_membership(world: World, api_for):
    p = world.p
    credential_grant(
        credential=world.credential,
        permission="use",
        grantee=Grantee.for_user(p.member),
        acting_user=p.admin,
    )
    credential_grant(
        credential=world.foreign_credential,  # a grant in another org stays
        permission="use",
        grantee=Grantee.for_user(p.member),
        acting_user=p.outsider,
    )
    membership_remove(membership=Membership.objects.get(org=p.org, user=p.member))

    remaining = CredentialUserObjectPermission.objects.filter(user=p.member)
    assert [g.content_object_id for g in remaining] == [world.foreign_credential.id]
    revoked = AuditEvent.objects.get(action="credential.grant_revoke", metadata__grantee="member")
    assert revoked.org_id == p.org.id
    grants = api_for(p.admin).get(f"/api/orgs/acme/credentials/{world.credential.id}/grants/")
    assert "member" not in {row["grantee"] for row in grants.json()}
    # Re-added, they start from their role alone.
    membership_set(org=p.org, user=p.member, role=Role.MEMBER)
    assert (
        api_for(p.member).post(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 403
    )


def test_a_removal_that_is_refused_keeps_the_grants(world: World):
    p = world.p
    credential_grant(
        credential=world.credential,
        permission="change",
        grantee=Grantee.for_user(p.owner),
        acting_user=p.admin,
    )
    with pytest.raises(ValidationError, match="at least one owner"):
        membership_remove(membership=Membership.objects.get(org=p.org, user=p.owner))
    assert CredentialUserObjectPermission.objects.filter(user=p.owner).exists()
