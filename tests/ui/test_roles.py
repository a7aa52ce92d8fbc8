"""Pages offer only what the role may do, and the server refuses the rest anyway."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Agent, AgentRun
from credentials.models import Credential

pytestmark = pytest.mark.django_db

CONTROLS = ("New credential", "Replace secret", "Delete", "Run now")


def _pages(credential: Credential, agent: Agent) -> list[str]:
    return [
        reverse("ui:credentials", kwargs={"org": "acme"}),
        reverse("ui:credential", kwargs={"org": "acme", "credential_id": credential.id}),
        reverse("ui:agents", kwargs={"org": "acme"}),
        reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id}),
    ]


def test_auditor_sees_no_create_replace_delete_or_run_controls(
    personas, browser_for, credential, agent
):
    browser = browser_for(personas.auditor)

    for url in _pages(credential, agent):
        response = browser.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        for control in CONTROLS:
            assert control not in html, (url, control)
        assert "/replace" not in html
        assert "/delete" not in html
        assert f"/agents/{agent.id}/run" not in html


def test_member_sees_the_controls_the_role_allows(personas, browser_for, credential, agent):
    browser = browser_for(personas.member)

    html = "".join(browser.get(url).content.decode() for url in _pages(credential, agent))

    for control in CONTROLS:
        assert control in html


@pytest.mark.parametrize(
    ("method", "view"),
    [
        ("get", "credential-create"),
        ("post", "credential-create"),
        ("get", "credential-replace"),
        ("post", "credential-replace"),
        ("get", "credential-delete"),
        ("post", "credential-delete"),
        ("post", "agent-run"),
    ],
)
def test_auditor_gets_403_when_using_a_control_anyway(
    personas, browser_for, credential, agent, canary, method, view
):
    kwargs = {"org": "acme"}
    if view.startswith("credential-") and view != "credential-create":
        kwargs["credential_id"] = str(credential.id)
    if view == "agent-run":
        kwargs["agent_id"] = str(agent.id)
    browser = browser_for(personas.auditor)
    url = reverse(f"ui:{view}", kwargs=kwargs)
    data = {"name": "sneaky", "kind": "api_key", "secret": f"{canary}-2"}

    response = browser.post(url, data) if method == "post" else browser.get(url)

    assert response.status_code == 403
    assert "403.html" in [t.name for t in response.templates]
    assert canary not in response.content.decode()
    assert list(Credential.objects.filter(org=personas.org)) == [credential]
    assert not AgentRun.objects.exists()


def test_audit_link_and_page_are_only_for_roles_that_may_view_the_trail(personas, browser_for):
    url = reverse("ui:audit", kwargs={"org": "acme"})
    credentials_url = reverse("ui:credentials", kwargs={"org": "acme"})

    for role, allowed in [("owner", True), ("admin", True), ("auditor", True), ("member", False)]:
        browser = browser_for(personas.by_role(role))
        assert (f'href="{url}"' in browser.get(credentials_url).content.decode()) is allowed
        assert browser.get(url).status_code == (200 if allowed else 403)
