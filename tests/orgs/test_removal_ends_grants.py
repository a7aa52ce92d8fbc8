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


def test_agent_tokens_a_removed_member_issued_are_revoked_with_the_membership(world: World):
    """The token was shown once, to them: a former member who kept a copy must not go on
    running the agent (which sends the org's credential) and reading its runs."""
    from rest_framework.test import APIClient

    from agents.services import agent_token_issue

    p = world.p
    mine, plaintext = agent_token_issue(agent=world.agent, name="laptop", acting_user=p.member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 200

    membership_remove(membership=Membership.objects.get(org=p.org, user=p.member), actor=None)

    assert client.post(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 401
    assert client.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 401
    mine.refresh_from_db()
    assert mine.revoked_at is not None
    revoked = AuditEvent.objects.get(action="token.revoke", target_id=str(mine.id))
    assert (revoked.org_id, revoked.metadata["kind"]) == (p.org.id, "agent")
    # Tokens others issued for the same agent keep working.
    world.token.refresh_from_db()
    assert world.token.revoked_at is None


def test_a_refused_removal_keeps_the_members_agent_tokens(world: World):
    from agents.services import agent_token_issue

    p = world.p
    token, _ = agent_token_issue(agent=world.agent, name="owner's", acting_user=p.owner)
    with pytest.raises(ValidationError, match="at least one owner"):
        membership_remove(membership=Membership.objects.get(org=p.org, user=p.owner))
    token.refresh_from_db()
    assert token.revoked_at is None
