"""Token pages: a new token appears once, in the answer to the POST, never in a URL, a flash
message, the session or a later page; revoking is one button."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agents.models import AgentToken
from orgs.models import PersonalToken

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"evh_(?:at|pt)_[A-Za-z0-9_-]{43}")


def test_an_agent_token_is_shown_once_on_the_agent_page(personas, browser_for, agent):
    browser = browser_for(personas.owner)
    url = reverse("ui:agent-token-issue", kwargs={"org": "acme", "agent_id": agent.id})

    issued = browser.post(url, {"name": "ci-runner"})

    assert issued.status_code == 200
    assert "no-store" in issued["Cache-Control"]
    (plaintext,) = set(TOKEN.findall(issued.content.decode()))
    assert AgentToken.objects.get(agent=agent).display == plaintext[:14]
    later = browser.get(reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id}))
    assert plaintext not in later.content.decode()
    assert "ci-runner" in later.content.decode()
    session = browser.session
    assert plaintext not in str(dict(session.items()))


def test_an_agent_token_is_revoked_with_one_button(personas, browser_for, agent):
    browser = browser_for(personas.owner)
    browser.post(
        reverse("ui:agent-token-issue", kwargs={"org": "acme", "agent_id": agent.id}),
        {"name": "ci"},
    )
    token = AgentToken.objects.get(agent=agent)
    revoke = reverse(
        "ui:agent-token-revoke", kwargs={"org": "acme", "agent_id": agent.id, "token_id": token.id}
    )
    assert (
        revoke
        in browser.get(
            reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id})
        ).content.decode()
    )
    response = browser.post(revoke, follow=True)
    assert "revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_roles_without_agent_tokens_see_no_token_section(personas, browser_for, agent):
    page = reverse("ui:agent", kwargs={"org": "acme", "agent_id": agent.id})
    html = browser_for(personas.auditor).get(page).content.decode()
    assert "Agent tokens" not in html
    assert "/tokens/new" not in html
    # The agent was created by the member: its creator manages its tokens.
    assert "Agent tokens" in browser_for(personas.member).get(page).content.decode()


def test_a_personal_token_is_shown_once(personas, browser_for):
    browser = browser_for(personas.member)
    page = reverse("ui:personal-tokens")
    issued = browser.post(page, {"name": "laptop script"})
    assert issued.status_code == 200
    (plaintext,) = set(TOKEN.findall(issued.content.decode()))
    assert plaintext.startswith("evh_pt_")
    assert PersonalToken.objects.get(user=personas.member).name == "laptop script"
    assert plaintext not in browser.get(page).content.decode()


def test_an_invalid_token_form_keeps_nothing_and_says_why(personas, browser_for):
    response = browser_for(personas.member).post(reverse("ui:personal-tokens"), {"name": ""})
    assert response.status_code == 400
    assert not PersonalToken.objects.exists()
    assert not TOKEN.findall(response.content.decode())
