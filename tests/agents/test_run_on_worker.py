"""A run travels, by id, to a real worker process that decrypts and uses the credential."""

from __future__ import annotations

import pytest

from agents.models import RunStatus
from agents.services import BindingSpec, agent_create, agent_run_create
from audit.models import AuditEvent
from config import context
from credentials.services import credential_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _agent_with_bearer(personas, endpoint, secret, *, name="caller"):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name=f"{name}-key", secret=secret
    )
    agent = agent_create(
        org=personas.org,
        acting_user=personas.member,
        name=name,
        config={"method": "GET", "url": endpoint.url},
        bindings=[
            BindingSpec(
                slot="auth",
                credential_id=credential.id,
                placement="header",
                target="Authorization",
                template="Bearer {secret}",
            )
        ],
    )
    return credential, agent


def test_run_completes_on_worker_with_the_right_credential(
    personas, celery_worker, endpoint, canary
):
    credential, agent = _agent_with_bearer(personas, endpoint, canary)
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
