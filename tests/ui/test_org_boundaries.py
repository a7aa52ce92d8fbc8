"""Another org's pages and objects answer 404, the same as ids that do not exist."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from agents.models import Agent, AgentRun
from agents.services import agent_run_create
from credentials.models import Credential
from tests.conftest import Personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_urls(personas: Personas, credential: Credential, agent: Agent) -> list[tuple[str, str]]:
    run = agent_run_create(agent=agent, acting_user=personas.member)
    org = {"org": "acme"}
    cred = {**org, "credential_id": str(credential.id)}
    return [
        ("get", reverse("ui:credentials", kwargs=org)),
        ("get", reverse("ui:credential-create", kwargs=org)),
        ("get", reverse("ui:credential", kwargs=cred)),
        ("get", reverse("ui:credential-replace", kwargs=cred)),
        ("post", reverse("ui:credential-replace", kwargs=cred)),
        ("get", reverse("ui:credential-delete", kwargs=cred)),
        ("post", reverse("ui:credential-delete", kwargs=cred)),
        ("get", reverse("ui:agents", kwargs=org)),
        ("get", reverse("ui:agent", kwargs={**org, "agent_id": str(agent.id)})),
        ("post", reverse("ui:agent-run", kwargs={**org, "agent_id": str(agent.id)})),
        ("get", reverse("ui:runs", kwargs=org)),
        ("get", reverse("ui:run", kwargs={**org, "run_id": str(run.id)})),
        ("get", reverse("ui:audit", kwargs=org)),
    ]


def test_outsider_gets_the_projects_404_on_every_acme_url(personas, browser_for, acme_urls):
    browser = browser_for(personas.outsider)

    for method, url in acme_urls:
        response = getattr(browser, method)(url, {"secret": "x"} if method == "post" else None)
        assert response.status_code == 404, url
        assert "404.html" in [t.name for t in response.templates]
        html = response.content.decode()
        assert "Not found" in html
        assert "billing-api" not in html
        assert "invoice-fetcher" not in html
    assert Credential.objects.filter(org=personas.org).count() == 1
    assert AgentRun.objects.count() == 1


def test_acme_ids_under_the_outsiders_own_org_answer_404(personas, browser_for, credential, agent):
    browser = browser_for(personas.outsider)
    urls = [
        reverse("ui:credential", kwargs={"org": "globex", "credential_id": credential.id}),
        reverse("ui:credential-replace", kwargs={"org": "globex", "credential_id": credential.id}),
        reverse("ui:agent", kwargs={"org": "globex", "agent_id": agent.id}),
    ]

    for url in urls:
        assert browser.get(url).status_code == 404


@pytest.mark.parametrize("bad_id", ["not-a-uuid", str(uuid.uuid4())])
def test_malformed_and_unknown_ids_answer_404(personas, browser_for, bad_id):
    browser = browser_for(personas.owner)

    for view, key in [("credential", "credential_id"), ("agent", "agent_id"), ("run", "run_id")]:
        url = reverse(f"ui:{view}", kwargs={"org": "acme", key: bad_id})
        assert browser.get(url).status_code == 404


def test_an_unknown_org_answers_404_like_a_foreign_one(personas, browser_for):
    response = browser_for(personas.owner).get(reverse("ui:credentials", kwargs={"org": "nope"}))

    assert response.status_code == 404
    assert "404.html" in [t.name for t in response.templates]


def test_anonymous_users_are_redirected_to_login(personas, credential, agent):
    client = Client()
    urls = [
        reverse("ui:home"),
        reverse("ui:credentials", kwargs={"org": "acme"}),
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        reverse("ui:credential", kwargs={"org": "acme", "credential_id": credential.id}),
        reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id}),
        reverse("ui:runs", kwargs={"org": "acme"}),
        reverse("ui:audit", kwargs={"org": "acme"}),
    ]

    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    post = client.post(reverse("ui:agent-run", kwargs={"org": "acme", "agent_id": agent.id}))
    assert post.status_code == 302
    assert not AgentRun.objects.exists()
