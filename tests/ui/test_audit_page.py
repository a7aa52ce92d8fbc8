"""The audit trail page: filters and pages through the org's own events."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from audit.services import SYSTEM, Target, record_event
from config import context

pytestmark = pytest.mark.django_db


def _rows(html: str) -> int:
    body = html.split("<tbody>", 1)[1] if "<tbody>" in html else ""
    return len(re.findall(r"<tr>", body))


def test_the_audit_page_filters_by_action_actor_request_job_and_target(
    personas, browser_for, credential
):
    with context.bound(request_id="req-audit-filter-1", job_id="job-1"):
        record_event(
            action="test.marker",
            org=personas.org,
            actor=SYSTEM,
            target=Target("thing", "target-1", "the thing"),
        )
    record_event(action="test.marker", org=personas.other_org, actor=SYSTEM)
    browser = browser_for(personas.auditor)
    url = reverse("ui:audit", kwargs={"org": "acme"})

    unfiltered = browser.get(url).content.decode()
    filtered = {
        name: browser.get(url, {name: value}).content.decode()
        for name, value in [
            ("action", "test.marker"),
            ("request_id", "req-audit-filter-1"),
            ("job_id", "job-1"),
            ("target_id", "target-1"),
            ("actor_type", "system"),
            ("actor_label", "system"),
        ]
    }

    assert "credential.create" in unfiltered
    # Everything of acme (the setup's org and membership events included), nothing of globex.
    assert _rows(unfiltered) == AuditEvent.objects.filter(org=personas.org).count()
    for html in filtered.values():
        assert _rows(html) == 1
        assert "the thing" in html
    assert _rows(browser.get(url, {"action": "nothing.like.this"}).content.decode()) == 0


def _link(html: str, text: str) -> str | None:
    match = re.search(r'<a href="([^"]*)">' + re.escape(text), html)
    return match[1].replace("&amp;", "&") if match else None


def test_the_audit_page_shows_50_events_a_page_with_older_and_newer_links(personas, browser_for):
    for number in range(60):
        record_event(action=f"test.event.{number:02d}", org=personas.org, actor=SYSTEM)
    browser = browser_for(personas.owner)
    url = reverse("ui:audit", kwargs={"org": "acme"})

    first = browser.get(url, {"actor_type": "system"}).content.decode()
    older_link = _link(first, "Older")
    assert older_link is not None
    second = browser.get(url + older_link).content.decode()
    newer_link = _link(second, "&larr; Newer")
    assert newer_link is not None
    back = browser.get(url + newer_link).content.decode()
    # The chain also holds the setup's own events, before these 60.
    oldest = AuditEvent.objects.get(org=personas.org, action="test.event.00").sequence

    assert _rows(first) == 50
    assert "test.event.59" in first
    assert "test.event.10" in first
    assert _link(first, "&larr; Newer") is None
    # Keyset links: the filters travel with the cursor (the chain sequence), never an offset.
    assert older_link == f"?actor_type=system&before={oldest + 10}"
    assert _rows(second) == 10
    assert "test.event.09" in second
    assert "test.event.00" in second
    assert _link(second, "Older") is None
    assert newer_link == f"?actor_type=system&after={oldest + 9}"
    assert _rows(back) == 50
    assert "test.event.59" in back
    assert "test.event.10" in back


def test_a_malformed_page_link_shows_an_error_and_no_events(personas, browser_for, credential):
    response = browser_for(personas.owner).get(
        reverse("ui:audit", kwargs={"org": "acme"}), {"before": "x"}
    )

    assert response.status_code == 200
    assert "This page link is not valid" in response.content.decode()
    assert _rows(response.content.decode()) == 0


def test_an_overlong_filter_shows_an_error_and_no_events(personas, browser_for, credential):
    response = browser_for(personas.owner).get(
        reverse("ui:audit", kwargs={"org": "acme"}), {"action": "a" * 65}
    )

    assert response.status_code == 200
    assert "at most 64 characters" in response.content.decode()
    assert _rows(response.content.decode()) == 0
