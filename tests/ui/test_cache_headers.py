"""Signed-in pages are never stored by the browser or a proxy: credential metadata, members and
the audit trail must not be shown again from a cache (or back-forward) after sign-out, as the
API already answers no-store."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_every_signed_in_page_answers_no_store(world: World, browser_for):
    browser = browser_for(world.p.owner)
    paths = [
        "/",
        "/tokens/",
        "/orgs/acme/",
        "/orgs/acme/members/",
        "/orgs/acme/credentials/",
        f"/orgs/acme/credentials/{world.credential.id}/",
        "/orgs/acme/agents/",
        f"/orgs/acme/agents/{world.agent.id}/",
        "/orgs/acme/runs/",
        f"/orgs/acme/runs/{world.run.id}/",
        "/orgs/acme/audit/",
        f"/orgs/acme/credentials/{uuid.uuid4()}/",  # the 404 page too
        "/orgs/globex/",
    ]
    for path in paths:
        response = browser.get(path)
        assert response.status_code in {200, 302, 404}, path
        assert "no-store" in response.get("Cache-Control", ""), path
