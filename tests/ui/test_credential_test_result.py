"""The "test this credential" result page belongs to one credential: it shows a run of an agent
bound to that credential, and nothing else under its URL."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.services import agent_create, agent_run_create
from audit.models import AuditEvent
from credentials.services import credential_create

pytestmark = pytest.mark.django_db


def _result_url(credential_id, run_id) -> str:
    return reverse(
        "ui:credential-test-result",
        kwargs={"org": "acme", "credential_id": credential_id, "run_id": run_id},
    )


def test_the_result_page_shows_a_run_of_an_agent_bound_to_the_credential(
    personas, browser_for, credential, agent
):
    run = agent_run_create(agent=agent, acting_user=personas.member)
    response = browser_for(personas.member).get(_result_url(credential.id, run.id))
    assert response.status_code == 200
    assert str(run.id) in response.content.decode()


def test_a_run_that_did_not_use_the_credential_is_not_found_under_its_url(
    personas, browser_for, credential, agent
):
    other = credential_create(
        org=personas.org, acting_user=personas.member, name="unrelated", secret="unrelated-s3cret"
    )
    unbound_agent = agent_create(
        org=personas.org,
        acting_user=personas.member,
        name="no-bindings",
        config={"method": "GET", "url": "https://example.com/"},
        bindings=[],
    )
    run = agent_run_create(agent=unbound_agent, acting_user=personas.member)
    denied_before = AuditEvent.objects.filter(action="access.denied").count()

    response = browser_for(personas.member).get(_result_url(other.id, run.id))

    assert response.status_code == 404
    assert str(run.id) not in response.content.decode()
    assert AuditEvent.objects.filter(action="access.denied").count() > denied_before
