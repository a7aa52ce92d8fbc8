"""Roles are django-guardian permissions on the organisation; members act on their own
objects and on what they are granted; every role change and grant is audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from guardian.core import ObjectPermissionChecker

from agents.services import BindingSpec, agent_create
from audit.models import AuditEvent
from credentials.services import credential_create
from orgs.models import Membership, OrgRoleGroup, Role
from orgs.permissions import ANY, OWN, RULES, role_permissions
from orgs.services import membership_set, role_groups_sync

pytestmark = pytest.mark.django_db


def test_each_role_group_holds_exactly_the_matrix_permissions_on_the_org(personas):
    for role in Role:
        group = OrgRoleGroup.objects.get(org=personas.org, role=role).group
        held = set(ObjectPermissionChecker(group).get_group_perms(personas.org))
        assert held == set(role_permissions(role)), role
    # ...and not on another organisation.
    owner_group = OrgRoleGroup.objects.get(org=personas.org, role=Role.OWNER).group
    assert not list(ObjectPermissionChecker(owner_group).get_group_perms(personas.other_org))


def test_every_member_sits_in_exactly_their_roles_group(personas):
    for role in Role:
        user = personas.by_role(role.value)
        groups = set(
            OrgRoleGroup.objects.filter(org=personas.org, group__user=user).values_list(
                "role", flat=True
            )
        )
        assert groups == {role.value}


def test_a_role_change_moves_the_user_between_groups_and_is_audited(personas, api_for):
    response = api_for(personas.admin).patch(
        "/api/orgs/acme/members/member/", {"role": "auditor"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["role"] == "auditor"
    assert Membership.objects.get(org=personas.org, user=personas.member).role == "auditor"
    assert (
        api_for(personas.member)
        .post("/api/orgs/acme/credentials/", {"name": "n", "secret": "s3cr3t-v"}, format="json")
        .status_code
        == 403
    )
    event = AuditEvent.objects.filter(action="membership.role_change").get()
    assert (event.actor_label, event.target_label) == ("admin", "member")
    assert event.metadata == {"role": "auditor", "previous_role": "member"}


def test_sync_repairs_a_group_edited_behind_the_services_back(personas):
    group = OrgRoleGroup.objects.get(org=personas.org, role=Role.AUDITOR).group
    personas.auditor.groups.remove(group)
    personas.auditor.groups.add(OrgRoleGroup.objects.get(org=personas.org, role=Role.OWNER).group)
    assert role_groups_sync(org=personas.org) == 2
    test_every_member_sits_in_exactly_their_roles_group(personas)


@pytest.mark.parametrize(
    ("acting", "target", "role", "status"),
    [
        ("admin", "member", "owner", 403),  # only owners grant the owner role
        ("admin", "owner", "member", 403),  # ... or take it away
        ("owner", "member", "owner", 200),
        ("owner", "owner", "admin", 400),  # the last owner cannot step down
    ],
)
def test_only_owners_touch_the_owner_role_and_one_owner_always_remains(
    personas, api_for, acting, target, role, status
):
    response = api_for(personas.by_role(acting)).patch(
        f"/api/orgs/acme/members/{target}/", {"role": role}, format="json"
    )
    assert response.status_code == status, response.content
    expected = role if status == 200 else ("owner" if target == "owner" else "member")
    assert Membership.objects.get(org=personas.org, user=personas.by_role(target)).role == expected


def test_the_last_owner_cannot_be_removed(personas, api_for):
    response = api_for(personas.owner).delete("/api/orgs/acme/members/owner/")
    assert response.status_code == 400
    assert "at least one owner" in response.content.decode()


def test_members_add_and_remove_are_audited(personas, api_for):
    newcomer = User.objects.create_user(username="newcomer")
    admin = api_for(personas.admin)
    assert (
        admin.post(
            "/api/orgs/acme/members/", {"username": "newcomer", "role": "auditor"}, format="json"
        ).status_code
        == 201
    )
    again = admin.post(
        "/api/orgs/acme/members/", {"username": "newcomer", "role": "member"}, format="json"
    )
    assert again.status_code == 400
    assert admin.delete("/api/orgs/acme/members/newcomer/").status_code == 204
    actions = list(
        AuditEvent.objects.filter(target_id=str(newcomer.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["membership.add", "membership.remove"]
    assert not newcomer.groups.exists()


def test_a_member_changes_and_deletes_their_own_credentials_only(personas, api_for):
    mine = credential_create(
        org=personas.org, acting_user=personas.member, name="mine", secret="s3cr3t-1"
    )
    theirs = credential_create(
        org=personas.org, acting_user=personas.admin, name="theirs", secret="s3cr3t-2"
    )
    member = api_for(personas.member)
    for credential, allowed in [(mine, True), (theirs, False)]:
        url = f"/api/orgs/acme/credentials/{credential.id}/"
        assert member.get(url).status_code == 200  # metadata is for every member
        assert member.patch(url, {"description": "x"}, format="json").status_code == (
            200 if allowed else 403
        )
        assert member.put(f"{url}secret", {"secret": "n3w-s3cr3t"}, format="json").status_code == (
            200 if allowed else 403
        )
    assert member.delete(f"/api/orgs/acme/credentials/{theirs.id}/").status_code == 403
    assert member.delete(f"/api/orgs/acme/credentials/{mine.id}/").status_code == 204


def test_a_change_grant_lets_a_member_replace_a_credential_but_not_delete_it(personas, api_for):
    theirs = credential_create(
        org=personas.org, acting_user=personas.admin, name="theirs", secret="s3cr3t-2"
    )
    url = f"/api/orgs/acme/credentials/{theirs.id}/"
    granted = api_for(personas.admin).post(
        f"{url}grants/", {"user": "member", "permission": "change"}, format="json"
    )
    assert granted.status_code == 201
    assert {
        "grantee_type": "user",
        "grantee": "member",
        "grantee_name": "member",
        "permission": "change",
    } in granted.json()
    member = api_for(personas.member)
    assert member.put(f"{url}secret", {"secret": "n3w-s3cr3t"}, format="json").status_code == 200
    assert member.delete(url).status_code == 403
    event = AuditEvent.objects.get(action="credential.grant", metadata__grantee="member")
    assert event.metadata["permission"] == "change"
    assert api_for(personas.admin).delete(f"{url}grants/user/member/change/").status_code == 204
    assert member.put(f"{url}secret", {"secret": "n3w-s3cr3t-2"}, format="json").status_code == 403
    assert AuditEvent.objects.filter(action="credential.grant_revoke").count() == 1


def test_a_member_runs_an_agent_only_with_use_of_every_bound_credential(personas, api_for):
    theirs = credential_create(
        org=personas.org, acting_user=personas.admin, name="theirs", secret="s3cr3t-2"
    )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.admin,
        name="caller",
        config={"url": "https://api.example.com/"},
        bindings=[BindingSpec("auth", theirs.id, "header", "Authorization", "Bearer {secret}")],
    )
    member = api_for(personas.member)
    url = f"/api/orgs/acme/agents/{agent.id}/runs/"
    assert member.post(url).status_code == 403
    api_for(personas.admin).post(
        f"/api/orgs/acme/credentials/{theirs.id}/grants/",
        {"user": "member", "permission": "use"},
        format="json",
    )
    assert member.post(url).status_code == 202


def test_binding_needs_use_and_grants_the_agent_only_when_the_binder_may_grant(personas, api_for):
    theirs = credential_create(
        org=personas.org, acting_user=personas.admin, name="theirs", secret="s3cr3t-2"
    )
    member = api_for(personas.member)
    body: dict[str, Any] = {
        "name": "member-agent",
        "config": {"url": "https://api.example.com/"},
        "bindings": [
            {"slot": "auth", "credential": str(theirs.id), "placement": "header", "target": "X-Key"}
        ],
    }
    refused = member.post("/api/orgs/acme/agents/", body, format="json")
    assert refused.status_code == 403
    assert "may not use credential" in refused.json()["detail"]
    # With a use grant (but no right to grant it on), the binding is made and the agent gets
    # no grant of its own: its runs will fail until an admin grants it.
    api_for(personas.admin).post(
        f"/api/orgs/acme/credentials/{theirs.id}/grants/",
        {"user": "member", "permission": "use"},
        format="json",
    )
    created = member.post("/api/orgs/acme/agents/", body, format="json")
    assert created.status_code == 201
    grants = api_for(personas.admin).get(f"/api/orgs/acme/credentials/{theirs.id}/grants/").json()
    assert [g for g in grants if g["grantee_type"] == "agent"] == []
    # The credential's owner binding it grants the agent at once.
    mine = credential_create(
        org=personas.org, acting_user=personas.member, name="mine", secret="s3cr3t-1"
    )
    body["name"] = "member-agent-2"
    body["bindings"][0]["credential"] = str(mine.id)
    assert member.post("/api/orgs/acme/agents/", body, format="json").status_code == 201
    grants = api_for(personas.member).get(f"/api/orgs/acme/credentials/{mine.id}/grants/").json()
    assert [(g["grantee_type"], g["grantee_name"], g["permission"]) for g in grants] == [
        ("agent", "member-agent-2", "use")
    ]


def test_a_grant_names_only_members_and_agents_of_the_org(personas, api_for):
    theirs = credential_create(
        org=personas.org, acting_user=personas.admin, name="theirs", secret="s3cr3t-2"
    )
    url = f"/api/orgs/acme/credentials/{theirs.id}/grants/"
    admin = api_for(personas.admin)
    outsider = admin.post(url, {"user": "outsider", "permission": "use"}, format="json")
    assert outsider.status_code == 400
    assert outsider.json() == {"user": ["No such member of this organisation."]}
    unknown = admin.post(url, {"user": "nobody-at-all", "permission": "use"}, format="json")
    assert unknown.json() == outsider.json()  # whether the user exists elsewhere stays unsaid


def test_the_same_credential_name_lives_in_two_orgs_and_each_member_sees_their_own(
    personas, api_for
):
    credential_create(
        org=personas.org, acting_user=personas.owner, name="stripe", secret="s3cr3t-a"
    )
    credential_create(
        org=personas.other_org, acting_user=personas.outsider, name="stripe", secret="s3cr3t-b"
    )
    membership_set(org=personas.other_org, user=personas.member, role=Role.AUDITOR)
    member = api_for(personas.member)
    acme = member.get("/api/orgs/acme/credentials/").json()["results"]
    globex = member.get("/api/orgs/globex/credentials/").json()["results"]
    assert [c["name"] for c in acme] == [c["name"] for c in globex] == ["stripe"]
    assert acme[0]["id"] != globex[0]["id"]
    # Member in acme, auditor in globex: the roles do not leak across.
    assert (
        member.post(
            "/api/orgs/acme/credentials/", {"name": "x", "secret": "s3cr3t-x"}, format="json"
        ).status_code
        == 201
    )
    assert (
        member.post(
            "/api/orgs/globex/credentials/", {"name": "x", "secret": "s3cr3t-x"}, format="json"
        ).status_code
        == 403
    )
    orgs = member.get("/api/orgs/").json()
    assert sorted((o["slug"], o["role"]) for o in orgs) == [
        ("acme", "member"),
        ("globex", "auditor"),
    ]


def test_a_superuser_acts_with_their_role_in_the_org(personas, api_for):
    personas.auditor.is_superuser = personas.auditor.is_staff = True
    personas.auditor.save()
    response = api_for(personas.auditor).post(
        "/api/orgs/acme/credentials/", {"name": "n", "secret": "s3cr3t-v"}, format="json"
    )
    assert response.status_code == 403


def test_matrix_scopes_are_any_or_own():
    for rule in RULES:
        assert set(rule.scopes.values()) <= {ANY, OWN}
        assert Role.OWNER in rule.scopes  # owners may do everything there is


@pytest.mark.parametrize("name", ["a\x00b", "\x00"])
def test_a_username_no_account_can_have_is_a_404_not_a_500(world, api_for, name):
    """URL paths carry a username in three places; NUL (no username holds one) must answer
    like any unknown name (PostgreSQL refuses NUL in a query: that was a 500)."""
    from urllib.parse import quote

    client = api_for(world.p.owner)
    member = f"/api/orgs/acme/members/{quote(name)}/"
    assert client.get(member).status_code == 404
    assert client.patch(member, {"role": "auditor"}, format="json").status_code == 404
    assert client.delete(member).status_code == 404
    grant = f"/api/orgs/acme/credentials/{world.credential.id}/grants/user/{quote(name)}/use/"
    response = client.delete(grant)
    assert response.status_code == 400
    assert response.json() == {"user": ["No such member of this organisation."]}
