from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEvent
from orgs.models import Organization


def audit_events_for_org(
    *,
    org: Organization,
    action: str | None = None,
    request_id: str | None = None,
    job_id: str | None = None,
    target_id: str | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(org=org)
    if action:
        events = events.filter(action=action)
    if request_id:
        events = events.filter(request_id=request_id)
    if job_id:
        events = events.filter(job_id=job_id)
    if target_id:
        events = events.filter(target_id=target_id)
    return events.order_by("-occurred_at", "-id")
