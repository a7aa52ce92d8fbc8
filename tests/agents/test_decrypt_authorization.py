"""The worker itself authorises, just before it decrypts: the run's agent must be in the
credential's org, bound to it and hold the use grant, and the credential must be active.
Otherwise the run fails saying why, a denied decrypt is audited and nothing is decrypted."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.test import APIClient

from agents.models import Agent, AgentRun, RunStatus
from agents.services import (
    agent_grantee,
    agent_run_create,
    agent_token_issue,
    agent_token_revoke,
)
from audit.models import AuditEvent
from credentials.models import Credential, CredentialStatus
from credentials.services import credential_revoke_grant
from tests.conftest import bearer_agent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _assert_refused(run: AgentRun, credential: Credential, reason: str, endpoint) -> None:
    assert run.status == RunStatus.FAILED
    assert endpoint.received == []  # nothing was decrypted, so nothing was sent
    denied = AuditEvent.objects.get(action="credential.decrypt", target_id=str(credential.id))
    assert (denied.outcome, denied.job_id, denied.metadata["reason"]) == (
        "denied",
        str(run.id),
        reason,
    )
    credential.refresh_from_db()
    assert credential.last_used_at is None


def test_an_agent_without_the_use_grant_cannot_decrypt(personas, celery_worker, endpoint, canary):
    credential, agent = bearer_agent(personas, endpoint.url, canary, name="ungranted")
    credential_revoke_grant(
        credential=credential, permission="use", grantee=agent_grantee(agent), acting_user=None
    )

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.error == "the agent holds no use grant on credential 'ungranted-key'"
    _assert_refused(run, credential, "not_granted", endpoint)


def test_a_compromised_credential_is_refused_until_a_new_secret_arrives(
    personas, celery_worker, endpoint, canary
):
    credential, agent = bearer_agent(personas, endpoint.url, canary, name="burnt")
    Credential.objects.filter(pk=credential.pk).update(status=CredentialStatus.COMPROMISED)

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert "is compromised" in run.error
    _assert_refused(run, credential, "compromised", endpoint)


def test_an_agent_moved_to_another_org_behind_the_orms_back_cannot_decrypt(
    personas, celery_worker, endpoint, canary
):
    _, agent = bearer_agent(personas, endpoint.url, canary, name="mover")
    run = agent_run_create(agent=agent, acting_user=None)
    # The run row says acme; the agent row now says globex: the worker must notice.
    Agent.objects.filter(pk=agent.pk).update(org=personas.other_org)

    run = celery_worker.wait_for_run(run.id)

    assert run.status == RunStatus.FAILED
    assert run.error == "the agent is not in the run's organisation"
    assert endpoint.received == []
    assert not AuditEvent.objects.filter(action="credential.decrypt", outcome="success").exists()


class _GatedEndpoint:
    """Answers 200 to every request, but only once the test opens the gate: a run calling it
    keeps the (single-process) worker busy for as long as the test needs."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.reached = threading.Event()
        gated = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gated.reached.set()
                gated.gate.wait(timeout=30)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/slow"

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated_endpoint():
    endpoint = _GatedEndpoint()
    yield endpoint
    endpoint.close()


def test_a_grant_revoked_while_the_run_waits_in_the_queue_takes_effect(
    personas, celery_worker, endpoint, gated_endpoint, canary
):
    _, blocker = bearer_agent(personas, gated_endpoint.url, "blocker-secret", name="blocker")
    credential, agent = bearer_agent(personas, endpoint.url, canary, name="late-revoke")

    busy = agent_run_create(agent=blocker, acting_user=None)
    assert gated_endpoint.reached.wait(timeout=30), "the worker never started the blocking run"
    # The worker (one process) is inside the blocking run: ours can only wait in the queue.
    waiting = agent_run_create(agent=agent, acting_user=None)
    assert AgentRun.objects.get(pk=waiting.pk).status == RunStatus.QUEUED
    credential_revoke_grant(
        credential=credential, permission="use", grantee=agent_grantee(agent), acting_user=None
    )
    gated_endpoint.gate.set()

    assert celery_worker.wait_for_run(busy.id).status == RunStatus.SUCCEEDED
    run = celery_worker.wait_for_run(waiting.id)
    assert run.error == "the agent holds no use grant on credential 'late-revoke-key'"
    _assert_refused(run, credential, "not_granted", endpoint)


def test_a_binding_removed_while_the_run_waits_is_not_used(
    personas, celery_worker, endpoint, gated_endpoint, canary
):
    _, blocker = bearer_agent(personas, gated_endpoint.url, "blocker-secret", name="blocker")
    credential, agent = bearer_agent(personas, endpoint.url, canary, name="unbound")

    busy = agent_run_create(agent=blocker, acting_user=None)
    assert gated_endpoint.reached.wait(timeout=30)
    waiting = agent_run_create(agent=agent, acting_user=None)
    agent.bindings.all().delete()
    gated_endpoint.gate.set()

    celery_worker.wait_for_run(busy.id)
    run = celery_worker.wait_for_run(waiting.id)
    # The run goes ahead without the credential: the endpoint sees no Authorization header.
    assert run.status == RunStatus.FAILED  # the endpoint refuses a call without it
    assert [r.headers.get("Authorization") for r in endpoint.received] == [None]
    assert not AuditEvent.objects.filter(
        action="credential.decrypt", target_id=str(credential.id)
    ).exists()


def test_runs_queued_by_a_token_revoked_while_they_wait_do_not_run(
    personas, celery_worker, endpoint, gated_endpoint, canary
):
    # Revoking a stolen token is the containment step: what it queued must not go ahead.
    _, blocker = bearer_agent(personas, gated_endpoint.url, "blocker-secret", name="blocker")
    credential, agent = bearer_agent(personas, endpoint.url, canary, name="token-queued")
    token, plaintext = agent_token_issue(agent=agent, name="stolen", acting_user=personas.admin)

    busy = agent_run_create(agent=blocker, acting_user=None)
    assert gated_endpoint.reached.wait(timeout=30), "the worker never started the blocking run"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    queued = client.post(f"/api/orgs/acme/agents/{agent.id}/runs/")
    assert queued.status_code == 202
    agent_token_revoke(token=token, acting_user=personas.admin)
    gated_endpoint.gate.set()

    assert celery_worker.wait_for_run(busy.id).status == RunStatus.SUCCEEDED
    run = celery_worker.wait_for_run(queued.json()["id"])
    assert run.status == RunStatus.FAILED
    assert run.error == "the agent token that queued this run was revoked"
    assert endpoint.received == []
    assert not AuditEvent.objects.filter(
        action="credential.decrypt", target_id=str(credential.id)
    ).exists()


def test_an_unexpected_error_in_a_run_fails_it_instead_of_leaving_it_queued(
    personas, celery_worker, endpoint, canary
):
    _, agent = bearer_agent(personas, endpoint.url, canary, name="crasher")
    # A config that validation would refuse, written behind its back: the HTTP library raises
    # something no code path expects.
    Agent.objects.filter(pk=agent.pk).update(
        config={"method": "GET", "url": endpoint.url, "timeout": "soon"}
    )

    run = celery_worker.wait_for_run(agent_run_create(agent=agent, acting_user=None).id)

    assert run.status == RunStatus.FAILED
    assert run.error == "the run stopped on an internal error"
    finish = AuditEvent.objects.get(action="agent_run.finish", target_id=str(run.id))
    assert finish.outcome == "failure"
    log = celery_worker.log_text()
    assert "agent run stopped on an unexpected error" in log
    from celery.result import AsyncResult

    assert AsyncResult(str(run.id)).get(timeout=10) == "failed"
    assert canary not in log
