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


def test_the_audit_page_filters_by_action_request_job_and_target(personas, browser_for, credential):
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
        ]
    }

    assert "credential.create" in unfiltered
    # Everything of acme (the setup's org and membership events included), nothing of globex.
    assert _rows(unfiltered) == AuditEvent.objects.filter(org=personas.org).count()
    for html in filtered.values():
        assert _rows(html) == 1
        assert "the thing" in html
    assert _rows(browser.get(url, {"action": "nothing.like.this"}).content.decode()) == 0


def test_the_audit_page_shows_50_events_a_page(personas, browser_for):
    for number in range(60):
        record_event(action=f"test.event.{number:02d}", org=personas.org, actor=SYSTEM)
    browser = browser_for(personas.owner)
    url = reverse("ui:audit", kwargs={"org": "acme"})

    first = browser.get(url, {"action": ""}).content.decode()
    second = browser.get(url, {"page": 2}).content.decode()

    total = AuditEvent.objects.filter(org=personas.org).count()  # 60 + the setup's events
    assert _rows(first) == 50
    assert _rows(second) == total - 50
    assert "Page 1 of 2" in first
    assert "?action=&amp;page=2" in first  # the filters travel with the page link


def test_an_overlong_filter_shows_an_error_and_no_events(personas, browser_for, credential):
    response = browser_for(personas.owner).get(
        reverse("ui:audit", kwargs={"org": "acme"}), {"action": "a" * 65}
    )

    assert response.status_code == 200
    assert "at most 64 characters" in response.content.decode()
    assert _rows(response.content.decode()) == 0
