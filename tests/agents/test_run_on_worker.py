"""A run travels, by id, to a real worker process that decrypts and uses the credential;
when the credential cannot be decrypted the run fails closed and says why."""

from __future__ import annotations

import json
import secrets

import pytest
from celery import signals
from django.test import override_settings

from agents.models import RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create
from audit.models import AuditEvent
from config import context
from credentials.services import credential_create
from tests.conftest import TEST_KEYS, bearer_agent
from tests.raw_storage import all_stored_bytes, read_envelope, write_envelope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def published_messages():
    """Every Celery message this process publishes during the test: body and headers."""
    seen: list[str] = []

    def record(body=None, headers=None, **kwargs):
        seen.append(json.dumps({"body": body, "headers": headers}, default=str))

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def test_run_completes_on_worker_with_the_right_credential(
    personas, celery_worker, endpoint, canary
):
    credential, agent = bearer_agent(
        personas, endpoint.url, canary, name="caller", user=personas.member
    )
    with context.bound(request_id="req-test-run-0001"):
        run = agent_run_create(agent=agent, acting_user=personas.member)

    run = celery_worker.wait_for_run(run.id)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output["status_code"] == 200
    assert [r.headers["Authorization"] for r in endpoint.received] == [f"Bearer {canary}"]
    # The endpoint echoed the secret; the stored output carries it redacted.
    assert canary not in str(run.output)
    assert "[REDACTED]" in run.output["body"]
    decrypts = AuditEvent.objects.filter(action="credential.decrypt", target_id=str(credential.id))
    assert [(e.job_id, e.request_id, e.actor_id) for e in decrypts] == [
        (str(run.id), "req-test-run-0001", str(agent.id))
    ]
    credential.refresh_from_db()
    assert credential.last_used_at is not None


def test_run_queued_through_the_api_completes_and_reports_its_ids(
    personas, celery_worker, endpoint, canary, api_for
):
    client = api_for(personas.member)
    credential = client.post(
        "/api/orgs/acme/credentials/", {"name": "svc", "secret": canary}, format="json"
    ).json()
    agent = client.post(
        "/api/orgs/acme/agents/",
        {
            "name": "svc-caller",
            "config": {"url": endpoint.url},
            "bindings": [
                {
                    "slot": "auth",
                    "credential": credential["id"],
                    "placement": "header",
                    "target": "Authorization",
                    "template": "Bearer {secret}",
                }
            ],
        },
        format="json",
    ).json()
    queued = client.post(
        f"/api/orgs/acme/agents/{agent['id']}/runs/", HTTP_X_REQUEST_ID="req-api-run-00001"
    )
    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"
    celery_worker.wait_for_run(queued.json()["id"])
    final = client.get(queued["Location"])
    body = final.json()
    assert body["status"] == "succeeded", body["error"]
    assert body["job_id"] == body["id"]
    assert body["request_id"] == "req-api-run-00001"
    assert canary not in final.content.decode()


def test_canary_never_leaves_the_worker_in_logs_messages_results_rows_or_files(
    personas, celery_worker, endpoint, canary, json_logs, published_messages
):
    from celery.result import AsyncResult

    _, agent = bearer_agent(personas, endpoint.url, canary, name="caller", user=personas.member)
    run = agent_run_create(agent=agent, acting_user=personas.member)
    run = celery_worker.wait_for_run(run.id)
    assert run.status == RunStatus.SUCCEEDED, run.error

    worker_lines = [
        json.loads(line) for line in celery_worker.log_text().splitlines() if line.strip()
    ]
    job_lines = [line for line in worker_lines if line.get("jobId") == str(run.id)]
    messages = [line["message"] for line in job_lines]
    assert {"agent run started", "agent run succeeded"} <= set(messages)
    assert any(m.startswith("Task agents.run_agent[") and m.endswith("received") for m in messages)
    assert all(line["requestId"] == run.request_id for line in job_lines if run.request_id)
    assert AsyncResult(str(run.id)).get(timeout=10) == "succeeded"

    surfaces = {
        "worker log": celery_worker.log_text(),
        "web-process log": json_logs.text,
        "task messages": "\n".join(published_messages),
        "audit rows": json.dumps(list(AuditEvent.objects.values()), default=str),
        "run row": json.dumps({"output": run.output, "error": run.error}),
    }
    assert published_messages, "the run was never published"
    for where, text in surfaces.items():
        assert canary not in text, f"secret found in {where}"
    assert canary.encode() not in all_stored_bytes()


def test_wrong_secret_makes_the_run_fail_with_the_endpoint_answer(
    personas, celery_worker, endpoint, canary
):
    _, agent = bearer_agent(
        personas, endpoint.url, "not-" + canary, name="caller", user=personas.member
    )
    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)
    assert run.status == RunStatus.FAILED
    assert run.error == "endpoint answered 401 Unauthorized"


def test_key_no_longer_configured_fails_the_run_naming_the_key_and_keeps_the_row(
    personas, celery_worker, endpoint, canary
):
    # Written under a v3 key that the worker has never had.
    with override_settings(
        CREDENTIAL_KEYS={**TEST_KEYS, "AGENT_CREDENTIAL_KEY_V3": secrets.token_hex(32)}
    ):
        credential, agent = bearer_agent(
            personas, endpoint.url, canary, name="caller", user=personas.member
        )
    before = read_envelope(credential.id)
    assert before[0] == "local:v3"

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert run.error == (
        "credential 'caller-key' could not be decrypted: key local:v3 is not configured"
    )
    assert endpoint.received == []
    assert read_envelope(credential.id) == before
    failure = AuditEvent.objects.get(action="credential.decrypt_failed")
    assert (failure.outcome, failure.job_id) == ("failure", str(run.id))
    assert failure.metadata["key_id"] == "local:v3"


def test_altered_ciphertext_fails_closed_and_is_audited(personas, celery_worker, endpoint, canary):
    credential, agent = bearer_agent(
        personas, endpoint.url, canary, name="caller", user=personas.member
    )
    key_id, wrapped, ciphertext = read_envelope(credential.id)
    flipped = bytearray(ciphertext)
    flipped[20] ^= 0x40
    tampered = (key_id, wrapped, bytes(flipped))
    write_envelope(credential.id, tampered)

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert run.error == (
        "credential 'caller-key' could not be decrypted: "
        "ciphertext failed authentication under key local:v2"
    )
    assert endpoint.received == []
    assert read_envelope(credential.id) == tampered
    assert AuditEvent.objects.filter(
        action="credential.decrypt_failed", target_id=str(credential.id), job_id=str(run.id)
    ).exists()


def test_ciphertext_copied_to_another_credential_does_not_decrypt(
    personas, celery_worker, endpoint, canary
):
    victim, _ = bearer_agent(personas, endpoint.url, canary, name="victim", user=personas.member)
    attacker, agent = bearer_agent(
        personas, endpoint.url, "attacker-value", name="attacker", user=personas.member
    )
    write_envelope(attacker.id, read_envelope(victim.id))

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert "ciphertext failed authentication" in run.error
    assert endpoint.received == []


def test_ciphertext_copied_into_another_org_does_not_decrypt(
    personas, celery_worker, endpoint, canary
):
    victim, _ = bearer_agent(personas, endpoint.url, canary, name="victim", user=personas.member)
    theirs = credential_create(
        org=personas.other_org, acting_user=personas.outsider, name="theirs", secret="their-own"
    )
    agent = agent_create(
        org=personas.other_org,
        acting_user=personas.outsider,
        name="thief",
        config={"url": endpoint.url},
        bindings=[
            BindingSpec(
                slot="auth",
                credential_id=theirs.id,
                placement="header",
                target="Authorization",
                template="Bearer {secret}",
            )
        ],
    )
    write_envelope(theirs.id, read_envelope(victim.id))

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert "ciphertext failed authentication" in run.error
    assert endpoint.received == []
