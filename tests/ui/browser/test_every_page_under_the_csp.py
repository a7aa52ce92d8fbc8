"""Every page, the API's own (Swagger UI, the browsable API) and Django admin's included, opens
in a real Chromium under the strict Content-Security-Policy without a single violation or
script error: an inline script or style would be refused by the browser, and a page that
quietly depends on one is broken for everyone."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-staple-9"


def _open_all(browser_page: Any, username: str, paths: list[str]) -> list[tuple[str, str]]:
    page = browser_page.page
    problems: list[tuple[str, str]] = []
    current = {"path": "/accounts/login/"}
    page.on(
        "console",
        lambda msg: problems.append((current["path"], msg.text)) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append((current["path"], str(exc))))
    browser_page.sign_in(username, PASSWORD)
    for path in paths:
        current["path"] = path
        # A page that polls (live-run.js) never goes network-idle; it has loaded by then.
        idle = "load" if "/runs/" in path else "networkidle"
        response = browser_page.page.goto(browser_page.base_url + path, wait_until=idle)
        assert response is not None
        assert response.status == 200, path
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        if path == "/api/docs/":
            page.wait_for_selector(".swagger-ui .opblock")  # rendered, not just loaded
    # Chromium asks for /favicon.ico on its own; that 404 is no page's fault (every page
    # visited answered 200, asserted above).
    return [(path, text) for path, text in problems if "404 (Not Found)" not in text]


def test_the_ui_and_the_api_pages_open_without_a_csp_violation(world: World, browser_page):
    world.p.owner.set_password(PASSWORD)
    world.p.owner.save()
    paths = [
        "/",
        "/orgs/acme/",
        "/orgs/acme/members/",
        "/orgs/acme/credentials/",
        "/orgs/acme/credentials/new",
        f"/orgs/acme/credentials/{world.credential.id}/",
        f"/orgs/acme/credentials/{world.credential.id}/replace",
        f"/orgs/acme/credentials/{world.credential.id}/delete",
        "/orgs/acme/agents/",
        f"/orgs/acme/agents/{world.agent.id}/",
        "/orgs/acme/runs/",
        f"/orgs/acme/runs/{world.run.id}/",  # queued: live-run.js polls it
        "/orgs/acme/audit/",
        "/tokens/",
        "/api/docs/",
        "/api/orgs/?format=api",
        "/api/orgs/acme/credentials/?format=api",
        f"/api/orgs/acme/agents/{world.agent.id}/?format=api",
    ]

    assert _open_all(browser_page, "owner", paths) == []


def test_django_admin_opens_without_a_csp_violation(world: World, browser_page):
    User.objects.create_superuser("root-admin", "", PASSWORD)
    paths = [
        "/admin/",
        "/admin/orgs/organization/",
        f"/admin/orgs/organization/{world.p.org.pk}/change/",
        "/admin/orgs/membership/",
        "/admin/orgs/membership/add/",
        "/admin/orgs/personaltoken/",
        "/admin/credentials/credential/",
        f"/admin/credentials/credential/{world.credential.pk}/change/",
        "/admin/credentials/credentialuserobjectpermission/add/",
        "/admin/credentials/credentialgroupobjectpermission/",
        "/admin/agents/agent/",
        f"/admin/agents/agent/{world.agent.pk}/change/",
        "/admin/agents/agenttoken/",
        "/admin/agents/agentrun/",
        "/admin/audit/auditevent/",
    ]

    assert _open_all(browser_page, "root-admin", paths) == []
