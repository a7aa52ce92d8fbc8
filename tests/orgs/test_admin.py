"""Django admin manages organisations, memberships, roles and per-credential grants through
the audited services; it shows metadata only and, for staff who are not superusers, only the
organisations they manage."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from agents.models import AgentToken
from audit.models import AuditEvent
from credentials.models import CredentialGroupObjectPermission, CredentialUserObjectPermission
from orgs.models import Membership, OrgRoleGroup, Role
from tests.conftest import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("root-admin", "", "pw-root-admin"))
    return client


def _inline_post(world: World, rows: list[dict[str, str]]) -> dict[str, str]:
    memberships = list(Membership.objects.filter(org=world.p.org).order_by("id"))
    data = {
        "name": world.p.org.name,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{i}-{key}"] = value
        if i < len(memberships):
            data[f"memberships-{i}-id"] = str(memberships[i].pk)
            data[f"memberships-{i}-org"] = str(world.p.org.pk)
    return data


def test_a_role_change_in_the_org_inline_is_audited_and_moves_the_group(world: World, root):
    memberships = list(Membership.objects.filter(org=world.p.org).order_by("id"))
    rows = [{"user": str(m.user_id), "role": m.role} for m in memberships]
    member_row = next(i for i, m in enumerate(memberships) if m.user_id == world.p.member.pk)
    rows[member_row]["role"] = "admin"
    response = root.post(
        f"/admin/orgs/organization/{world.p.org.pk}/change/", _inline_post(world, rows)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.get(org=world.p.org, user=world.p.member).role == "admin"
    admin_group = OrgRoleGroup.objects.get(org=world.p.org, role=Role.ADMIN).group
    assert world.p.member.groups.filter(pk=admin_group.pk).exists()
    event = AuditEvent.objects.get(action="membership.role_change")
    assert (event.actor_label, event.target_label, event.metadata["role"]) == (
        "root-admin",
        "member",
        "admin",
    )


def test_removing_a_membership_in_admin_is_audited(world: World, root):
    membership = Membership.objects.get(org=world.p.org, user=world.p.auditor)
    response = root.post(f"/admin/orgs/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action="membership.remove", target_label="auditor").exists()
    assert not world.p.auditor.groups.exists()


def test_a_grant_added_and_revoked_in_admin_is_audited(world: World, root):
    use = Permission.objects.get(codename="use_credential")
    response = root.post(
        "/admin/credentials/credentialuserobjectpermission/add/",
        {
            "content_object": str(world.credential.pk),
            "user": str(world.p.member.pk),
            "permission": str(use.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = CredentialUserObjectPermission.objects.get(user=world.p.member)
    assert AuditEvent.objects.filter(action="credential.grant", metadata__grantee="member").exists()
    response = root.post(
        "/admin/credentials/credentialuserobjectpermission/",
        {"action": "revoke_selected", "_selected_action": [str(grant.pk)]},
    )
    assert response.status_code == 302
    assert not CredentialUserObjectPermission.objects.filter(pk=grant.pk).exists()
    assert AuditEvent.objects.filter(action="credential.grant_revoke").count() == 1


def test_admin_refuses_a_grant_to_someone_outside_the_credentials_org(world: World, root):
    use = Permission.objects.get(codename="use_credential")
    response = root.post(
        "/admin/credentials/credentialuserobjectpermission/add/",
        {
            "content_object": str(world.credential.pk),
            "user": str(world.p.outsider.pk),
            "permission": str(use.pk),
        },
    )
    assert response.status_code == 200
    assert "not a member of the credential" in response.content.decode()
    response = root.post(
        "/admin/credentials/credentialgroupobjectpermission/add/",
        {
            "content_object": str(world.credential.pk),
            "group": str(world.foreign_agent.principal_id),
            "permission": str(use.pk),
        },
    )
    assert response.status_code == 200
    assert (
        not CredentialGroupObjectPermission.objects.filter(group=world.foreign_agent.principal)
        .filter(content_object=world.credential)
        .exists()
    )


def test_admin_pages_show_no_token_digest_and_no_secret(world: World, root, canary):
    pages = [
        "/admin/agents/agenttoken/",
        f"/admin/agents/agenttoken/{world.token.pk}/change/",
        "/admin/orgs/personaltoken/",
        f"/admin/credentials/credential/{world.credential.pk}/change/",
        "/admin/credentials/credentialgroupobjectpermission/",
        "/admin/orgs/organization/",
        f"/admin/orgs/organization/{world.p.org.pk}/change/",
    ]
    for url in pages:
        response = root.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert world.token.digest not in text, url
        assert world.token_plaintext not in text, url
        assert canary not in text, url


def test_revoking_an_agent_token_from_admin_is_audited(world: World, root):
    response = root.post(
        "/admin/agents/agenttoken/",
        {"action": "revoke", "_selected_action": [str(world.token.pk)]},
    )
    assert response.status_code == 302
    assert AgentToken.objects.get(pk=world.token.pk).revoked_at is not None
    assert AuditEvent.objects.get(action="token.revoke").actor_label == "root-admin"


def test_staff_see_only_the_orgs_they_manage(world: World, client):
    world.p.admin.is_staff = True
    world.p.admin.save()
    world.p.admin.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_organization", "view_credential", "view_membership"]
        )
    )
    client.force_login(world.p.admin)
    orgs = client.get("/admin/orgs/organization/").content.decode()
    assert "acme" in orgs
    assert "globex" not in orgs
    credentials = client.get("/admin/credentials/credential/")
    assert credentials.status_code == 200
    assert str(world.foreign_credential.pk) not in credentials.content.decode()
    assert (
        client.get(
            f"/admin/credentials/credential/{world.foreign_credential.pk}/change/"
        ).status_code
        == 302
    )
    assert client.get("/admin/auth/group/").status_code == 404  # role groups are not edited by hand
