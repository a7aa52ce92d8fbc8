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
from orgs.models import Membership, Organization, OrgRoleGroup, Role
from orgs.services import membership_set, org_create
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


# --- staff who are not superusers act within the orgs they manage, with their role there --


@pytest.fixture
def staff(world: World, client: Client) -> Client:
    """The acme admin as Django staff holding every model permission of the vault's apps: the
    org scoping, not a missing model permission, is what must stop them."""
    world.p.admin.is_staff = True
    world.p.admin.save()
    world.p.admin.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["orgs", "credentials", "agents", "audit"]
        )
    )
    client.force_login(world.p.admin)
    return client


def test_staff_cannot_add_anyone_to_an_org_they_do_not_manage(world: World, staff):
    form = staff.get("/admin/orgs/membership/add/").content.decode()
    assert "globex" not in form

    response = staff.post(
        "/admin/orgs/membership/add/",
        {"user": str(world.p.admin.pk), "org": str(world.p.other_org.pk), "role": "owner"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert not Membership.objects.filter(org=world.p.other_org, user=world.p.admin).exists()


def test_an_admin_who_is_staff_cannot_make_themselves_owner_or_demote_the_owner(
    world: World, staff
):
    own = Membership.objects.get(org=world.p.org, user=world.p.admin)
    owner = Membership.objects.get(org=world.p.org, user=world.p.owner)
    staff.post(f"/admin/orgs/membership/{own.pk}/change/", {"role": "owner"})
    staff.post(f"/admin/orgs/membership/{owner.pk}/change/", {"role": "member"})
    staff.post(f"/admin/orgs/membership/{owner.pk}/delete/", {"post": "yes"})
    rows = [
        {"user": str(m.user_id), "role": "owner" if m.user_id == world.p.admin.pk else m.role}
        for m in Membership.objects.filter(org=world.p.org).order_by("id")
    ]
    staff.post(f"/admin/orgs/organization/{world.p.org.pk}/change/", _inline_post(world, rows))

    roles = dict(Membership.objects.filter(org=world.p.org).values_list("user__username", "role"))
    assert (roles["admin"], roles["owner"]) == ("admin", "owner")
    assert not AuditEvent.objects.filter(action="membership.role_change").exists()
    assert not AuditEvent.objects.filter(action="membership.remove").exists()
    # What their role allows, admin allows too.
    member = Membership.objects.get(org=world.p.org, user=world.p.member)
    staff.post(f"/admin/orgs/membership/{member.pk}/change/", {"role": "auditor"})
    assert Membership.objects.get(pk=member.pk).role == "auditor"


def test_staff_cannot_grant_another_orgs_credential_nor_see_its_agents(world: World, staff):
    use = Permission.objects.get(codename="use_credential")
    form = staff.get("/admin/credentials/credentialgroupobjectpermission/add/").content.decode()
    assert "globex" not in form
    assert f'value="{world.foreign_agent.principal_id}"' not in form

    agent_grant = staff.post(
        "/admin/credentials/credentialgroupobjectpermission/add/",
        {
            "content_object": str(world.foreign_credential.pk),
            "group": str(world.foreign_agent.principal_id),
            "permission": str(use.pk),
        },
    )
    member_grant = staff.post(
        "/admin/credentials/credentialuserobjectpermission/add/",
        {
            "content_object": str(world.foreign_credential.pk),
            "user": str(world.p.outsider.pk),
            "permission": str(use.pk),
        },
    )

    assert (agent_grant.status_code, member_grant.status_code) == (200, 200)
    assert not AuditEvent.objects.filter(
        action="credential.grant", target_id=str(world.foreign_credential.pk), actor_label="admin"
    ).exists()


def test_staff_see_neither_the_trail_nor_the_names_of_orgs_they_do_not_manage(world: World, staff):
    for url in [
        "/admin/audit/auditevent/",
        "/admin/orgs/membership/",
        "/admin/agents/agent/",
        "/admin/agents/agenttoken/",
        "/admin/agents/agentrun/",
        "/admin/credentials/credential/",
        "/admin/credentials/credentialgroupobjectpermission/",
    ]:
        response = staff.get(url)
        assert response.status_code == 200, url
        assert "globex" not in response.content.decode(), url
    foreign_event = AuditEvent.objects.filter(org=world.p.other_org).first()
    assert foreign_event is not None
    assert staff.get(f"/admin/audit/auditevent/{foreign_event.pk}/change/").status_code == 302


def test_deleting_an_organisation_in_admin_is_for_its_owners(world: World, staff):
    # An org with nothing in it, so only the role can stand in the way.
    empty = org_create(slug="initech", name="Initech", owner=world.p.owner)
    membership_set(org=empty, user=world.p.admin, role=Role.ADMIN)
    response = staff.post(f"/admin/orgs/organization/{empty.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Organization.objects.filter(pk=empty.pk).exists()
    membership_set(org=empty, user=world.p.admin, role=Role.OWNER)
    response = staff.post(f"/admin/orgs/organization/{empty.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Organization.objects.filter(pk=empty.pk).exists()


def test_demoting_the_last_owner_in_admin_is_refused_with_a_message_not_a_500(world: World, root):
    owner = Membership.objects.get(org=world.p.org, user=world.p.owner)
    response = root.post(
        f"/admin/orgs/membership/{owner.pk}/change/", {"role": "member"}, follow=True
    )
    assert response.status_code == 200
    assert "at least one owner" in response.content.decode()
    assert Membership.objects.get(pk=owner.pk).role == "owner"
