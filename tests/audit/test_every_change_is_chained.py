"""Every credential, agent and run write, and every decrypt in the worker process, lands in the
org's one chain, in order, and the chain verifies; the secret appears in none of it."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from agents.models import RunStatus
from audit.models import AuditEvent
from tests.raw_storage import read_envelope, write_envelope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

BASE = "/api/orgs/acme"


def test_the_whole_life_of_a_credential_is_one_verified_chain(
    personas, api_for, celery_worker, endpoint, canary
):
    api = api_for(personas.member)
    setup = AuditEvent.objects.filter(org=personas.org).count()  # org created, members added
    created = api.post(f"{BASE}/credentials/", {"name": "billing", "secret": canary}, format="json")
    credential_id = created.json()["id"]
    api.patch(f"{BASE}/credentials/{credential_id}/", {"description": "d"}, format="json")
    api.put(f"{BASE}/credentials/{credential_id}/secret", {"secret": canary}, format="json")
    agent = api.post(
        f"{BASE}/agents/",
        {
            "name": "fetcher",
            "config": {"method": "GET", "url": endpoint.url},
            "bindings": [
                {
                    "slot": "auth",
                    "credential": credential_id,
                    "placement": "header",
                    "target": "Authorization",
                    "template": "Bearer {secret}",
                }
            ],
        },
        format="json",
    ).json()
    good = api.post(f"{BASE}/agents/{agent['id']}/runs/").json()
    assert celery_worker.wait_for_run(good["id"]).status == RunStatus.SUCCEEDED
    key_id, wrapped, ciphertext = read_envelope(credential_id)
    write_envelope(credential_id, (key_id, wrapped, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])))
    bad = api.post(f"{BASE}/agents/{agent['id']}/runs/").json()
    assert celery_worker.wait_for_run(bad["id"]).status == RunStatus.FAILED
    api.delete(f"{BASE}/agents/{agent['id']}/")
    api.delete(f"{BASE}/credentials/{credential_id}/")

    events = list(
        AuditEvent.objects.filter(org=personas.org, sequence__gt=setup).order_by("sequence")
    )
    assert [(e.sequence - setup, e.action, e.outcome) for e in events] == [
        (1, "credential.create", "success"),
        (2, "credential.update", "success"),
        (3, "credential.replace", "success"),
        (4, "credential.grant", "success"),  # binding it to the agent grants the agent use
        (5, "agent.create", "success"),
        (6, "agent_run.queue", "success"),
        (7, "credential.decrypt", "success"),
        (8, "agent_run.finish", "success"),
        (9, "agent_run.queue", "success"),
        (10, "credential.decrypt_failed", "failure"),
        (11, "agent_run.finish", "failure"),
        (12, "agent.delete", "success"),
        (13, "credential.delete", "success"),
    ]
    worker_written = [e for e in events if e.job_id]
    assert [e.job_id for e in worker_written] == [good["id"]] * 2 + [bad["id"]] * 2
    assert all(e.actor_id == agent["id"] for e in worker_written)
    web_written = [e for e in events if not e.job_id]
    assert all(e.request_id for e in web_written)
    out = io.StringIO()
    call_command("audit", "verify", "--org", "acme", "--json", stdout=out)
    (chain,) = json.loads(out.getvalue())["chains"]
    assert (chain["ok"], chain["events"], chain["head_hash"]) == (
        True,
        setup + 13,
        events[-1].hash,
    )
    assert canary not in json.dumps(list(AuditEvent.objects.values()), default=str)
