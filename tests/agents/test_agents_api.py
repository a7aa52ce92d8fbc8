"""Agents API: non-secret config, bindings only to this org's credentials, runs by id."""

from __future__ import annotations

import uuid

import pytest

from agents.models import Agent, AgentRun
from credentials.services import credential_create

pytestmark = pytest.mark.django_db

BASE = "/api/orgs/acme/agents/"


@pytest.fixture
def credential(personas, canary):
    return credential_create(org=personas.org, acting_user=personas.member, name="k", secret=canary)


def _agent_payload(credential_id, **overrides):
    payload = {
        "name": "caller",
        "config": {"method": "post", "url": "https://api.example.com/v1/ping"},
        "bindings": [
            {
                "slot": "auth",
                "credential": str(credential_id),
                "placement": "header",
                "target": "Authorization",
                "template": "Bearer {secret}",
            }
        ],
    }
    payload.update(overrides)
    return payload


def test_create_and_read_an_agent_with_a_binding(personas, api_for, credential, canary):
    client = api_for(personas.member)
    response = client.post(BASE, _agent_payload(credential.id), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["config"] == {
        "method": "POST",
        "url": "https://api.example.com/v1/ping",
        "headers": {},
    }
    assert body["bindings"][0]["credential_name"] == "k"
    detail = client.get(f"{BASE}{body['id']}/")
    assert detail.json() == body
    assert canary not in detail.content.decode()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "ftp://example.com"}, "config.url"),
        ({"url": "https://user:pw@example.com/"}, "config.url"),
        ({"url": "https://example.com/v1?api_key=CANARY-inline"}, "config.url"),
        ({"url": "https://example.com/v1?page=2&access_token=CANARY-inline"}, "config.url"),
        (
            {"url": "https://example.com", "headers": {"X-Api-Key": "CANARY-inline"}},
            "config.headers",
        ),
        (
            {"url": "https://example.com", "headers": {"Authorization": "Bearer CANARY-x"}},
            "config.headers",
        ),
        ({"url": "https://example.com", "method": "TRACE"}, "config.method"),
        ({"url": "https://example.com", "timeout": 0}, "config.timeout"),
        ({"url": "https://example.com", "surprise": 1}, "config"),
        ("not-an-object", "config"),
        # Odd input is a field error, not a 500 (nor a row PostgreSQL cannot store).
        ({"url": "https://[::1/v1"}, "config.url"),
        ({"url": "https://example.com:99999/"}, "config.url"),
        ({"url": "https://example.com/\x00"}, "config.url"),
        ({"url": "https://example.com", "headers": {"X-Trace": "a\x00b"}}, "config.headers"),
        ({"url": "https://example.com", "headers": {"X-\x00": "b"}}, "config.headers"),
        (
            {"url": "https://example.com", "headers": {"X-Trace": "a\r\nX-Evil: 1"}},
            "config.headers",
        ),
        ({"url": "https://example.com", "body": "a\x00b"}, "config.body"),
    ],
)
def test_agent_config_refuses_bad_or_secret_bearing_values(
    personas, api_for, credential, config, field
):
    response = api_for(personas.member).post(
        BASE, _agent_payload(credential.id, config=config), format="json"
    )
    assert response.status_code == 400
    assert field in response.json()
    assert "CANARY" not in response.content.decode()
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ('{"url": "https://example.com/\\ud800"}', "config.url"),
        ('{"url": "https://example.com", "headers": {"X-Trace": "\\udfff"}}', "config.headers"),
        ('{"url": "https://example.com", "body": "\\ud800"}', "config.body"),
    ],
)
def test_agent_config_with_a_lone_surrogate_is_a_field_error(
    personas, api_for, credential, config, field
):
    # Sent as JSON text: a client can escape a lone surrogate, which UTF-8 cannot encode.
    body = f'{{"name": "caller", "config": {config}}}'
    response = api_for(personas.member).post(BASE, body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Agent.objects.exists()


def test_binding_another_orgs_credential_is_refused_like_a_missing_one(personas, api_for, canary):
    theirs = credential_create(
        org=personas.other_org, acting_user=personas.outsider, name="theirs", secret=canary
    )
    client = api_for(personas.member)
    foreign = client.post(BASE, _agent_payload(theirs.id), format="json")
    missing = client.post(BASE, _agent_payload(uuid.uuid4()), format="json")
    assert foreign.status_code == missing.status_code == 400
    assert (
        foreign.json()["bindings"]
        == missing.json()["bindings"]
        == ["Slot auth: no such credential in this organisation."]
    )


def test_binding_needs_a_template_with_the_secret_placeholder(personas, api_for, credential):
    payload = _agent_payload(credential.id)
    payload["bindings"][0]["template"] = "Bearer {password.__class__}"
    response = api_for(personas.member).post(BASE, payload, format="json")
    assert response.status_code == 400
    assert "bindings" in response.json()


def test_patch_and_delete_an_agent(personas, api_for, credential):
    client = api_for(personas.member)
    agent = client.post(BASE, _agent_payload(credential.id), format="json").json()
    patched = client.patch(f"{BASE}{agent['id']}/", {"description": "nightly"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["description"] == "nightly"
    assert patched.json()["bindings"] == agent["bindings"]
    assert client.delete(f"{BASE}{agent['id']}/").status_code == 204
    assert client.get(f"{BASE}{agent['id']}/").status_code == 404


def test_runs_are_queued_by_id_and_read_within_the_org(
    personas, api_for, credential, django_capture_on_commit_callbacks
):
    client = api_for(personas.member)
    agent = client.post(BASE, _agent_payload(credential.id), format="json").json()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queued = client.post(f"{BASE}{agent['id']}/runs/")
    assert queued.status_code == 202
    # The task is sent (and the audit event logged) only once the transaction commits.
    assert len(callbacks) == 2
    run_id = queued.json()["id"]
    assert client.get(f"/api/orgs/acme/runs/{run_id}/").json()["status"] == "queued"
    listed = client.get(f"{BASE}{agent['id']}/runs/").json()
    assert [r["id"] for r in listed["results"]] == [run_id]
    outsider = api_for(personas.outsider)
    assert outsider.get(f"/api/orgs/globex/runs/{run_id}/").status_code == 404
    assert outsider.post(f"/api/orgs/globex/agents/{agent['id']}/runs/").status_code == 404
    assert AgentRun.objects.count() == 1


def test_auditor_cannot_create_agents_or_queue_runs(personas, api_for, credential):
    agent = api_for(personas.member).post(BASE, _agent_payload(credential.id), format="json")
    auditor = api_for(personas.auditor)
    assert auditor.get(BASE).status_code == 200
    assert (
        auditor.post(BASE, _agent_payload(credential.id, name="x"), format="json").status_code
        == 403
    )
    assert auditor.post(f"{BASE}{agent.json()['id']}/runs/").status_code == 403
    assert AgentRun.objects.count() == 0
