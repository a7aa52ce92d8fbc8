"""Where an agent sends its credentials, and who may run it unattended, are decided by people
who may use those credentials.

A member owns (`agent.change`, `agent.tokens`: own) the agents they created, but a credential
bound to such an agent may be someone else's: an admin bound it, or the member's own use grant
was revoked later. Changing the agent's config (its URL, its headers) would send that
credential wherever the member likes, and an agent token would run it without asking whether
its holder may use the credential: both need `credential.use` on every bound credential.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from agents.models import Agent, AgentToken
from agents.services import BindingSpec, agent_create, agent_grantee
from audit.models import AuditEvent
from credentials.services import Grantee, credential_grant, credential_revoke_grant
from tests.conftest import World

pytestmark = pytest.mark.django_db

ELSEWHERE = {"method": "GET", "url": "https://collector.example.net/"}


def _bind_as_admin(world: World, agent: Agent, api_for) -> None:
    response = api_for(world.p.admin).patch(
        f"/api/orgs/acme/agents/{agent.id}/",
        {
            "bindings": [
                {
                    "slot": "auth",
                    "credential": str(world.credential.id),
                    "placement": "header",
                    "target": "X-Api-Key",
                }
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.json()


@pytest.fixture
def members_agent(world: World, api_for) -> Agent:
    agent = agent_create(
        org=world.p.org,
        acting_user=world.p.member,
        name="members-agent",
        config={"method": "GET", "url": "https://api.example.com/v1/ping"},
    )
    _bind_as_admin(world, agent, api_for)
    return agent


def test_a_member_cannot_point_their_agent_elsewhere_while_it_holds_a_credential_they_may_not_use(
    world: World, members_agent: Agent, api_for
):
    response = api_for(world.p.member).patch(
        f"/api/orgs/acme/agents/{members_agent.id}/", {"config": ELSEWHERE}, format="json"
    )

    assert response.status_code == 403
    assert "billing" in response.json()["detail"]
    members_agent.refresh_from_db()
    assert members_agent.config["url"] == "https://api.example.com/v1/ping"
    denied = AuditEvent.objects.get(action="access.denied")
    assert (denied.actor_label, denied.metadata["reason"]) == ("member", "role")
    assert not AuditEvent.objects.filter(action="agent.update", actor_label="member").exists()


def test_a_revoked_use_grant_also_ends_the_members_say_over_where_their_agent_sends_it(
    world: World, api_for
):
    p = world.p
    credential_grant(
        credential=world.credential,
        permission="use",
        grantee=Grantee.for_user(p.member),
        acting_user=p.admin,
    )
    created = api_for(p.member).post(
        "/api/orgs/acme/agents/",
        {
            "name": "granted",
            "config": {"method": "GET", "url": "https://api.example.com/v1/ping"},
            "bindings": [
                {
                    "slot": "auth",
                    "credential": str(world.credential.id),
                    "placement": "header",
                    "target": "X-Api-Key",
                }
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    agent = Agent.objects.get(pk=created.json()["id"])
    credential_grant(
        credential=world.credential,
        permission="use",
        grantee=agent_grantee(agent),
        acting_user=p.admin,
    )
    credential_revoke_grant(
        credential=world.credential,
        permission="use",
        grantee=Grantee.for_user(p.member),
        acting_user=p.admin,
    )

    member = api_for(p.member)
    repointed = member.patch(
        f"/api/orgs/acme/agents/{agent.id}/", {"config": ELSEWHERE}, format="json"
    )
    issued = member.post(f"/api/orgs/acme/agents/{agent.id}/tokens/", {"name": "t"}, format="json")

    assert (repointed.status_code, issued.status_code) == (403, 403)
    agent.refresh_from_db()
    assert agent.config["url"] == "https://api.example.com/v1/ping"
    assert not AgentToken.objects.filter(agent=agent).exists()


def test_a_member_cannot_issue_a_token_for_an_agent_they_may_not_run(
    world: World, members_agent: Agent, api_for
):
    api = api_for(world.p.member).post(
        f"/api/orgs/acme/agents/{members_agent.id}/tokens/", {"name": "unattended"}, format="json"
    )
    browser = Client()
    browser.force_login(world.p.member)
    page = browser.post(f"/orgs/acme/agents/{members_agent.id}/tokens/new", {"name": "unattended"})

    assert (api.status_code, page.status_code) == (403, 403)
    assert not AgentToken.objects.filter(agent=members_agent).exists()
    # ...and the agent's page does not offer the form it would refuse.
    shown = browser.get(f"/orgs/acme/agents/{members_agent.id}/").content.decode()
    assert "Issue token" not in shown
    assert "needs the right to run this agent" in shown
    # Listing and revoking stay with the agent's owner (revoking is how a breach is contained).
    listed = api_for(world.p.member).get(f"/api/orgs/acme/agents/{members_agent.id}/tokens/")
    assert listed.status_code == 200


def test_renaming_stays_with_the_agents_owner_and_admins_may_still_repoint_it(
    world: World, members_agent: Agent, api_for
):
    renamed = api_for(world.p.member).patch(
        f"/api/orgs/acme/agents/{members_agent.id}/", {"name": "renamed"}, format="json"
    )
    repointed = api_for(world.p.admin).patch(
        f"/api/orgs/acme/agents/{members_agent.id}/", {"config": ELSEWHERE}, format="json"
    )

    assert (renamed.status_code, repointed.status_code) == (200, 200)
    members_agent.refresh_from_db()
    assert (members_agent.name, members_agent.config["url"]) == ("renamed", ELSEWHERE["url"])


def test_a_member_changes_and_issues_tokens_for_an_agent_of_their_own_credentials(
    world: World, api_for
):
    member = api_for(world.p.member)
    own = member.post(
        "/api/orgs/acme/credentials/", {"name": "mine", "secret": "s3cr3t-value"}, format="json"
    )
    agent = agent_create(
        org=world.p.org,
        acting_user=world.p.member,
        name="own",
        config={"method": "GET", "url": "https://api.example.com/"},
        bindings=[BindingSpec("auth", uuid.UUID(own.json()["id"]), "header", "X-Api-Key")],
    )

    repointed = member.patch(
        f"/api/orgs/acme/agents/{agent.id}/", {"config": ELSEWHERE}, format="json"
    )
    issued = member.post(f"/api/orgs/acme/agents/{agent.id}/tokens/", {"name": "t"}, format="json")

    assert (repointed.status_code, issued.status_code) == (200, 201)
