"""Agent and run pages: configuration without secrets, Run now, and a run's progress."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentRun, RunStatus

pytestmark = pytest.mark.django_db

REFRESH = '<meta http-equiv="refresh" content="1">'


def test_the_agent_page_shows_config_and_bindings_but_no_secret(
    personas, browser_for, agent, credential, canary
):
    response = browser_for(personas.auditor).get(
        reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id})
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "https://billing.example.com/invoices" in html
    assert "&quot;method&quot;: &quot;GET&quot;" in html
    for shown in ("auth", "billing-api", "Request header", "Authorization", "Bearer {secret}"):
        assert shown in html
    assert reverse("ui:credential", kwargs={"org": "acme", "credential_id": credential.id}) in html
    assert canary not in html


def test_the_agent_list_shows_the_orgs_agents(personas, browser_for, agent):
    response = browser_for(personas.member).get(reverse("ui:agents", kwargs={"org": "acme"}))

    assert response.status_code == 200
    assert reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id}) in (
        response.content.decode()
    )


def test_run_now_queues_a_run_and_shows_its_page(personas, browser_for, agent, canary):
    browser = browser_for(personas.member)

    response = browser.post(
        reverse("ui:agent-run", kwargs={"org": "acme", "agent_id": agent.id}),
        headers={"X-Request-ID": "req-ui-run-now-0001"},
    )

    run = AgentRun.objects.get(agent=agent)
    assert response.status_code == 302
    assert response["Location"] == reverse("ui:run", kwargs={"org": "acme", "run_id": run.id})
    assert run.status == RunStatus.QUEUED
    assert run.queued_by == personas.member
    assert run.request_id == "req-ui-run-now-0001"
    page = browser.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200
    assert REFRESH in html
    assert str(run.id) in html
    assert "req-ui-run-now-0001" in html
    assert "Queued" in html
    assert canary not in html


def test_run_now_only_takes_a_post(personas, browser_for, agent):
    url = reverse("ui:agent-run", kwargs={"org": "acme", "agent_id": agent.id})

    assert browser_for(personas.member).get(url).status_code == 405
    assert not AgentRun.objects.exists()


def test_a_finished_run_page_shows_times_and_redacted_output_without_refreshing(
    personas, browser_for, agent
):
    now = timezone.now()
    run = AgentRun.objects.create(
        org=personas.org,
        agent=agent,
        status=RunStatus.FAILED,
        request_id="req-finished-0001",
        started_at=now,
        finished_at=now,
        output={"status_code": 401, "body": "token [REDACTED] rejected"},
        error="HTTP 401 from billing.example.com",
    )

    response = browser_for(personas.auditor).get(
        reverse("ui:run", kwargs={"org": "acme", "run_id": run.id})
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert REFRESH not in html
    assert "Failed" in html
    assert "token [REDACTED] rejected" in html
    assert "HTTP 401 from billing.example.com" in html
    assert "req-finished-0001" in html
    assert html.count("<time ") >= 3


def test_the_runs_list_shows_the_orgs_runs(personas, browser_for, agent):
    run = AgentRun.objects.create(org=personas.org, agent=agent)

    response = browser_for(personas.auditor).get(reverse("ui:runs", kwargs={"org": "acme"}))

    assert response.status_code == 200
    assert reverse("ui:run", kwargs={"org": "acme", "run_id": run.id}) in response.content.decode()
