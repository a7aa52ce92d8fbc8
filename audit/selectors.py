"""Reads of the audit trail: one org's events, filtered, newest first, a keyset page at a time.

Pages are keyed on the chain's sequence number (unique and ordered within an org), never on an
offset or a count: a page costs the same on the millionth event as on the first, on an index
(filter column, org, sequence) (audit/models.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from audit.forms import PAGE_SIZE
from audit.models import AuditEvent
from orgs.models import Organization

FILTERS = (
    "action",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_id",
    "request_id",
    "job_id",
)


def audit_events_for_org(
    *,
    org: Organization,
    action: str | None = None,
    actor_type: str | None = None,
    actor_id: str | None = None,
    actor_label: str | None = None,
    target_id: str | None = None,
    request_id: str | None = None,
    job_id: str | None = None,
) -> QuerySet[AuditEvent]:
    """The org's events matching every filter given (exact matches), newest first."""
    given = {
        "action": action,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "target_id": target_id,
        "request_id": request_id,
        "job_id": job_id,
    }
    return AuditEvent.objects.filter(
        org=org, **{name: value for name, value in given.items() if value}
    ).order_by("-sequence")


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    older: int | None  # pass as before= for the next (older) page; None: this is the last
    newer: int | None  # pass as after= for the previous (newer) page; None: this is the first


def audit_event_page(
    *,
    org: Organization,
    filters: dict[str, str] | None = None,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> AuditPage:
    events = audit_events_for_org(org=org, **(filters or {}))
    if after is not None:
        # Newer events, read upwards from the cursor, shown newest first like every page.
        rows = list(events.filter(sequence__gt=after).order_by("sequence")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        if not rows:
            return AuditPage(events=[], older=None, newer=None)
        oldest = rows[-1].sequence
        older = oldest if _any_older(events, oldest) else None
        return AuditPage(events=rows, older=older, newer=rows[0].sequence if more_newer else None)
    page = events if before is None else events.filter(sequence__lt=before)
    rows = list(page[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    if not rows:
        return AuditPage(events=[], older=None, newer=None)
    newer = None
    if before is not None and _any_newer(events, rows[0].sequence):
        newer = rows[0].sequence
    return AuditPage(events=rows, older=rows[-1].sequence if more_older else None, newer=newer)


# Ordered on purpose: with ORDER BY sequence LIMIT 1 the planner walks the filter's index from
# the cursor. A bare EXISTS lets it guess that a sequential scan finds a match soon, which on
# a long trail can mean reading most of it (tests/audit/test_query_plans.py).
def _any_older(events: QuerySet[AuditEvent], sequence: int) -> bool:
    return events.filter(sequence__lt=sequence).values_list("sequence").first() is not None


def _any_newer(events: QuerySet[AuditEvent], sequence: int) -> bool:
    newer = events.filter(sequence__gt=sequence).order_by("sequence")
    return newer.values_list("sequence").first() is not None
