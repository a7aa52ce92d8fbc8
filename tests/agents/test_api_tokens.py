"""Agent and personal API tokens: shown once, stored as digests, scoped, revocable, and
every failure looks the same from outside while the audit trail says which it was."""

from __future__ import annotations

import datetime
import hashlib
import re

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import AgentRun, AgentToken
from agents.services import agent_token_issue, agent_token_revoke
from audit.models import AuditEvent
from orgs.models import PersonalToken
from orgs.services import personal_token_issue
from tests.conftest import World

pytestmark = pytest.mark.django_db

TOKEN_RE = re.compile(r"^evh_(at|pt)_[A-Za-z0-9_-]{43}$")


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_an_issued_token_is_shown_once_and_stored_only_as_its_digest(world: World, api_for):
    response = api_for(world.p.admin).post(
        f"/api/orgs/acme/agents/{world.agent.id}/tokens/", {"name": "deploy"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    plaintext = body["token"]
    assert TOKEN_RE.match(plaintext)
    assert body["display"] == plaintext[:14]
    stored = AgentToken.objects.get(pk=body["id"])
    assert stored.digest == hashlib.sha256(plaintext.encode()).hexdigest()
    row = AgentToken.objects.filter(pk=body["id"]).values().get()
    assert all(plaintext not in str(value) for value in row.values())
    # Never again: the list, the detail and the audit trail show the display prefix only.
    later = [
        api_for(world.p.admin).get(f"/api/orgs/acme/agents/{world.agent.id}/tokens/"),
        api_for(world.p.admin).get(f"/api/orgs/acme/agents/{world.agent.id}/tokens/{body['id']}/"),
        api_for(world.p.owner).get("/api/orgs/acme/audit/"),
    ]
    for answer in later:
        assert answer.status_code == 200
        assert plaintext not in answer.content.decode()
    assert all("token" not in item for item in later[0].json())
    assert "token" not in later[1].json()
    issued = AuditEvent.objects.get(action="token.issue", target_id=body["id"])
    assert issued.metadata == {"kind": "agent", "agent_id": str(world.agent.id), "expires_at": None}


def test_tokens_carry_256_random_bits():
    from orgs import tokens

    seen = {tokens.issue(tokens.TokenKind.AGENT).plaintext for _ in range(200)}
    assert len(seen) == 200
    body = next(iter(seen))[7:]
    assert len(body) * 6 >= 256


def test_an_agent_token_queues_and_reads_runs_of_its_own_agent(world: World):
    client = _bearer(world.token_plaintext)
    queued = client.post(f"/api/orgs/acme/agents/{world.agent.id}/runs/")
    assert queued.status_code == 202
    run = AgentRun.objects.get(pk=queued.json()["id"])
    assert run.queued_by is None
    assert run.queued_by_token == world.token
    assert client.get(queued["Location"]).json()["status"] == "queued"
    listed = client.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").json()
    assert {r["id"] for r in listed["results"]} == {str(run.id), str(world.run.id)}
    event = AuditEvent.objects.get(action="agent_run.queue", target_id=str(run.id))
    assert (event.actor_type, event.actor_id) == ("agent_token", str(world.token.id))
    world.token.refresh_from_db()
    assert world.token.last_used_at is not None


def test_an_agent_token_reaches_nothing_else(world: World, personas):
    from agents.services import agent_create, agent_run_create

    sibling = agent_create(
        org=personas.org,
        acting_user=personas.admin,
        name="sibling",
        config={"url": "https://x.example/"},
    )
    sibling_run = agent_run_create(agent=sibling, acting_user=personas.admin)
    client = _bearer(world.token_plaintext)
    not_found = [
        f"/api/orgs/acme/agents/{sibling.id}/runs/",  # another agent's runs
        f"/api/orgs/acme/runs/{sibling_run.id}/",
        f"/api/orgs/globex/agents/{world.foreign_agent.id}/runs/",  # another org
        f"/api/orgs/globex/runs/{world.foreign_run.id}/",
        "/api/orgs/globex/credentials/",
    ]
    for url in not_found:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/api/orgs/acme/agents/{sibling.id}/runs/").status_code == 404
    forbidden = [
        "/api/orgs/acme/credentials/",  # credential metadata, even of its own bindings
        f"/api/orgs/acme/credentials/{world.credential.id}/",
        f"/api/orgs/acme/agents/{world.agent.id}/",
        f"/api/orgs/acme/agents/{world.agent.id}/tokens/",
        "/api/orgs/acme/audit/",
        "/api/orgs/acme/members/",
        "/api/orgs/",
        "/api/tokens/",
    ]
    for url in forbidden:
        assert client.get(url).status_code == 403, url
    assert not AgentRun.objects.filter(agent=sibling).exclude(pk=sibling_run.pk).exists()


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_revoked_and_expired_tokens_get_401_and_are_audited(world: World, state):
    if state == "revoked":
        agent_token_revoke(token=world.token, acting_user=world.p.admin)
    else:
        AgentToken.objects.filter(pk=world.token.pk).update(
            expires_at=timezone.now() - datetime.timedelta(seconds=1)
        )
    response = _bearer(world.token_plaintext).post(f"/api/orgs/acme/agents/{world.agent.id}/runs/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or expired token."}
    assert response["WWW-Authenticate"].startswith("Bearer")
    event = AuditEvent.objects.get(action="token.use_denied")
    assert (event.org_id, event.outcome, event.metadata["reason"]) == (
        world.p.org.id,
        "denied",
        state,
    )
    assert event.target_id == str(world.token.id)
    assert AgentRun.objects.filter(agent=world.agent).count() == 1


def test_an_expiry_in_the_past_is_refused_at_issue(world: World, api_for):
    response = api_for(world.p.admin).post(
        f"/api/orgs/acme/agents/{world.agent.id}/tokens/",
        {"name": "late", "expires_at": "2020-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()


def test_malformed_truncated_and_random_tokens_all_get_the_same_401(world: World):
    candidates = [
        "not-a-token",
        world.token_plaintext[:-1],  # truncated
        world.token_plaintext + "x",
        "evh_at_" + "A" * 43,  # well formed, unknown
        "evh_pt_" + "B" * 43,
        "evh_zz_" + "C" * 43,
        "",
    ]
    answers = []
    for candidate in candidates:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {candidate}".strip())
        response = client.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/")
        answers.append((response.status_code, response.content, response.get("WWW-Authenticate")))
    assert len(set(answers)) == 1, answers
    assert answers[0][0] == 401
    failures = AuditEvent.objects.filter(action="token.auth_failed")
    assert failures.count() == len(candidates)
    assert {e.metadata["reason"] for e in failures} == {"malformed", "unknown"}
    for event in failures:
        assert world.token_plaintext[7:20] not in str(event.metadata)


def test_repeated_failures_are_throttled_and_the_throttling_audited_once(world: World):
    rest = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token_failure": "5/min"}}
    with override_settings(REST_FRAMEWORK=rest):
        client = APIClient(REMOTE_ADDR="203.0.113.9")
        client.credentials(HTTP_AUTHORIZATION="Bearer evh_at_" + "D" * 43)
        codes = [client.get("/api/orgs/acme/credentials/").status_code for _ in range(8)]
        assert codes == [401] * 5 + [429] * 3
        # Even the right token waits: the address is throttled before any lookup.
        right = APIClient(REMOTE_ADDR="203.0.113.9")
        right.credentials(HTTP_AUTHORIZATION=f"Bearer {world.token_plaintext}")
        assert right.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 429
        # Another address is unaffected.
        other = APIClient(REMOTE_ADDR="198.51.100.7")
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {world.token_plaintext}")
        assert other.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 200
        reasons = list(
            AuditEvent.objects.filter(action="token.auth_failed").values_list(
                "metadata__reason", flat=True
            )
        )
        assert reasons.count("unknown") == 5
        assert reasons.count("throttled") == 1


def test_a_forged_forwarded_for_header_does_not_escape_the_throttle(world: World):
    # Without a proxy in front (API_NUM_PROXIES=0), X-Forwarded-For is whatever the client
    # wrote: a fresh value per guess must not buy a fresh allowance.
    rest = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token_failure": "5/min"}}
    with override_settings(REST_FRAMEWORK=rest):
        codes = []
        for i in range(8):
            client = APIClient(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
            client.credentials(HTTP_AUTHORIZATION="Bearer evh_at_" + "D" * 43)
            codes.append(client.get("/api/orgs/acme/credentials/").status_code)
        assert codes == [401] * 5 + [429] * 3
        assert AuditEvent.objects.filter(action="token.auth_failed").count() == 6


def test_behind_a_proxy_the_throttle_counts_the_address_the_proxy_saw(world: World):
    rest = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token_failure": "5/min"},
        "NUM_PROXIES": 1,
    }
    with override_settings(REST_FRAMEWORK=rest):
        codes = []
        for i in range(8):
            # The client forges the first entry; the proxy appends the address it saw.
            client = APIClient(
                REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 198.51.100.4"
            )
            client.credentials(HTTP_AUTHORIZATION="Bearer evh_at_" + "D" * 43)
            codes.append(client.get("/api/orgs/acme/credentials/").status_code)
        assert codes == [401] * 5 + [429] * 3


def test_a_personal_token_cannot_mint_an_agent_token_either(world: World):
    # An agent token outlives the personal token that would have minted it: a stolen personal
    # token must not buy itself a successor by way of an agent.
    _, plaintext = personal_token_issue(user=world.p.admin, name="script")
    response = _bearer(plaintext).post(
        f"/api/orgs/acme/agents/{world.agent.id}/tokens/", {"name": "persist"}, format="json"
    )
    assert response.status_code == 403
    assert "signed-in session" in response.json()["detail"]
    assert not AgentToken.objects.filter(name="persist").exists()
    # Listing and revoking stay possible with a token (containment must not need a browser).
    assert (
        _bearer(plaintext).get(f"/api/orgs/acme/agents/{world.agent.id}/tokens/").status_code == 200
    )


def test_a_personal_token_acts_with_its_persons_role(world: World, api_for):
    issued = api_for(world.p.member).post("/api/tokens/", {"name": "script"}, format="json")
    assert issued.status_code == 201
    plaintext = issued.json()["token"]
    assert plaintext.startswith("evh_pt_")
    script = _bearer(plaintext)
    assert script.get("/api/orgs/acme/credentials/").status_code == 200
    assert (
        script.post(
            "/api/orgs/acme/credentials/",
            {"name": "from-script", "secret": "s3cr3t-v"},
            format="json",
        ).status_code
        == 201
    )
    assert script.get("/api/orgs/acme/audit/").status_code == 403  # members do not read it
    assert script.get("/api/orgs/globex/credentials/").status_code == 404
    # A token cannot mint a successor for itself.
    assert script.post("/api/tokens/", {"name": "more"}, format="json").status_code == 403
    token_id = issued.json()["id"]
    assert api_for(world.p.member).delete(f"/api/tokens/{token_id}/").status_code == 204
    assert script.get("/api/orgs/acme/credentials/").status_code == 401
    assert PersonalToken.objects.get(pk=token_id).revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", target_id=token_id).count() == 1


def test_someone_elses_personal_token_is_a_404(world: World, api_for):
    token, _ = personal_token_issue(user=world.p.admin, name="admins")
    member = api_for(world.p.member)
    assert member.get(f"/api/tokens/{token.id}/").status_code == 404
    assert member.delete(f"/api/tokens/{token.id}/").status_code == 404
    assert PersonalToken.objects.get(pk=token.id).revoked_at is None


def test_a_deactivated_persons_token_stops_working(world: World):
    _, plaintext = personal_token_issue(user=world.p.member, name="script")
    world.p.member.is_active = False
    world.p.member.save()
    assert _bearer(plaintext).get("/api/orgs/acme/credentials/").status_code == 401
    assert AuditEvent.objects.get(action="token.use_denied").metadata["reason"] == "inactive_user"


def test_revoking_twice_changes_nothing(world: World):
    assert agent_token_revoke(token=world.token, acting_user=world.p.admin) is True
    assert agent_token_revoke(token=world.token, acting_user=world.p.admin) is False
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1


def test_tokens_of_one_agent_are_independent(world: World):
    _, second_plaintext = agent_token_issue(
        agent=world.agent, name="second", acting_user=world.p.admin
    )
    agent_token_revoke(token=world.token, acting_user=world.p.admin)
    assert (
        _bearer(world.token_plaintext)
        .get(f"/api/orgs/acme/agents/{world.agent.id}/runs/")
        .status_code
        == 401
    )
    assert (
        _bearer(second_plaintext).get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code
        == 200
    )
