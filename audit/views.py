"""The audit trail page: the API's filters, 50 events a page, keyset-paged on the sequence."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from audit.forms import AuditCursorForm, AuditFilterForm
from audit.selectors import AuditPage, audit_event_page
from orgs.access import Access
from orgs.views import org_view, render_org_page


@require_GET
@org_view("audit.view")
def audit_event_list(request: HttpRequest, access: Access) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    cursor = AuditCursorForm(request.GET)
    if form.is_valid() and cursor.is_valid():
        page = audit_event_page(
            org=access.org,
            filters=form.filters(),
            before=cursor.cleaned_data["before"],
            after=cursor.cleaned_data["after"],
        )
    else:
        # An invalid filter shows nothing rather than silently dropping the filter.
        page = AuditPage(events=[], older=None, newer=None)
    rows = [
        (event, json.dumps(event.metadata, sort_keys=True) if event.metadata else "")
        for event in page.events
    ]
    return render_org_page(
        request,
        access,
        "audit/event_list.html",
        {"form": form, "cursor_errors": cursor.errors, "page": page, "rows": rows},
        section="audit",
    )
