"""In a real Chromium, with a real Celery worker: a member stores a secret, replaces it, runs
an agent with it and tests it, and nothing the browser ever received or showed contains it."""

from __future__ import annotations

import re

import pytest

from agents.services import BindingSpec, agent_create
from credentials.models import Credential
from tests.conftest import new_canary

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

PASSWORD = "correct-horse-battery-staple-9"


def _login_as(user) -> None:
    user.set_password(PASSWORD)
    user.save()


def test_the_secret_never_comes_back_to_the_browser(
    personas, celery_worker, browser_page, endpoint, canary
):
    first = new_canary()  # replaced by `canary`, which the endpoint accepts
    _login_as(personas.member)
    b = browser_page
    page = b.page
    b.sign_in("member", PASSWORD)
    assert "/orgs/acme/" in page.url
    b.screenshot("01-overview")

    # Create.
    b.goto("/orgs/acme/credentials/new")
    secret_input = page.locator("input[name=secret]")
    assert secret_input.get_attribute("type") == "password"
    assert secret_input.get_attribute("autocomplete") == "new-password"
    page.fill("input[name=name]", "billing-api")
    page.fill("input[name=secret]", first)
    b.screenshot("02-credential-create")
    page.click("main button[type=submit]")
    b.snapshot()
    assert page.locator("h1").inner_text() == "billing-api"
    credential = Credential.objects.get(org=personas.org, name="billing-api")

    # Replace: the form is never pre-filled.
    b.goto(f"/orgs/acme/credentials/{credential.id}/replace")
    assert page.locator("input[name=secret]").input_value() == ""
    page.fill("input[name=secret]", canary)
    page.click("main button[type=submit]")
    b.snapshot()
    assert "replaced" in page.content()

    # An agent that uses it (agents are set up through the API; here by the service).
    agent = agent_create(
        org=personas.org,
        acting_user=personas.member,
        name="invoice-fetcher",
        config={"method": "GET", "url": endpoint.url},
        bindings=[BindingSpec("auth", credential.id, "header", "Authorization", "Bearer {secret}")],
    )
    b.goto("/orgs/acme/credentials/")
    assert "invoice-fetcher" in page.locator("table").inner_text()  # "used by"
    b.screenshot("03-credential-list")

    # Run it and watch the run page follow it live until it succeeds.
    b.goto(f"/orgs/acme/agents/{agent.id}/")
    b.screenshot("04-agent")
    page.get_by_role("button", name="Run now").click()
    page.wait_for_selector(".page-head .status-succeeded", timeout=30_000)
    b.snapshot()
    assert "[REDACTED]" in page.locator("pre.json").inner_text()  # the endpoint echoed it
    b.screenshot("05-run-succeeded")

    # Test the credential: only the outcome is shown.
    b.goto(f"/orgs/acme/credentials/{credential.id}/")
    b.screenshot("06-credential-detail")
    page.get_by_role("button", name="Test", exact=True).click()
    page.wait_for_selector(".outcome .status-succeeded", timeout=30_000)
    b.snapshot()
    assert "HTTP 200" in page.locator(".outcome").inner_text()
    assert page.locator("pre.json").count() == 0
    b.screenshot("07-credential-test")

    b.goto("/orgs/acme/runs/")
    b.screenshot("08-runs")
    assert len(endpoint.received) == 2
    assert {r.headers["Authorization"] for r in endpoint.received} == {f"Bearer {canary}"}
    b.recorder.assert_never_contains(first)
    b.recorder.assert_never_contains(canary)


def test_a_too_long_name_rerenders_the_form_without_the_secret(personas, browser_page, canary):
    _login_as(personas.member)
    b = browser_page
    page = b.page
    b.sign_in("member", PASSWORD)
    b.goto("/orgs/acme/credentials/new")
    # The input's maxlength stops a person; a crafted request does not, so lift it.
    page.evaluate("document.querySelector('input[name=name]').removeAttribute('maxlength')")
    page.fill("input[name=name]", "n" * 201)
    page.fill("input[name=secret]", canary)
    page.click("main button[type=submit]")
    b.snapshot()
    assert "at most 200 characters" in page.content()
    assert page.locator("input[name=secret]").input_value() == ""
    assert not Credential.objects.filter(org=personas.org).exists()
    b.screenshot("09-validation-error")
    b.recorder.assert_never_contains(canary)


def test_an_auditor_reads_the_trail_but_is_offered_no_controls(personas, browser_page, world):
    _login_as(personas.auditor)
    b = browser_page
    page = b.page
    b.sign_in("auditor", PASSWORD)
    pages = [
        "/orgs/acme/credentials/",
        f"/orgs/acme/credentials/{world.credential.id}/",
        "/orgs/acme/agents/",
        f"/orgs/acme/agents/{world.agent.id}/",
    ]
    for path in pages:
        b.goto(path)
        buttons = page.locator("main button, main a.button").all_inner_texts()
        assert not {
            "New credential",
            "Replace secret",
            "Delete",
            "Run now",
            "Test",
            "Issue token",
        } & {text.strip() for text in buttons}, (path, buttons)
    b.goto("/orgs/acme/audit/")
    assert page.locator("table tbody tr").count() > 0
    assert "credential.create" in page.locator("table").inner_text()
    b.screenshot("10-audit-as-auditor")


def test_an_outsider_opening_another_orgs_credential_sees_the_404_page(
    personas, browser_page, world
):
    _login_as(personas.outsider)
    b = browser_page
    b.sign_in("outsider", PASSWORD)
    response = b.goto(f"/orgs/acme/credentials/{world.credential.id}/")
    assert response.status == 404
    assert b.page.locator("h1").inner_text() == "Not found"
    assert "billing" not in b.page.content()
    b.screenshot("11-outsider-404")


def test_pages_carry_the_security_headers(personas, browser_page):
    _login_as(personas.member)
    b = browser_page
    b.sign_in("member", PASSWORD)
    response = b.goto("/orgs/acme/credentials/new")
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert re.search(r"frame-ancestors 'none'", csp)
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert "no-store" in headers["cache-control"]
