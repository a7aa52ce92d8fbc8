"""The audit trail page: filter by action, requestId, jobId or target, 50 events a page."""

from __future__ import annotations

import json

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from audit.selectors import audit_events_for_org
from orgs.access import Access
from orgs.views import org_view, render_org_page

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    # Lengths match the columns: a longer value cannot match anything.
    action = forms.CharField(max_length=64, required=False)
    request_id = forms.CharField(max_length=128, required=False, label="Request ID")
    job_id = forms.CharField(max_length=64, required=False, label="Job ID")
    target_id = forms.CharField(max_length=64, required=False, label="Target ID")


@require_GET
@org_view("audit.view")
def audit_event_list(request: HttpRequest, access: Access) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    if form.is_valid():
        filters = {name: value or None for name, value in form.cleaned_data.items()}
        events = audit_events_for_org(org=access.org, **filters)
    else:
        # An invalid filter shows nothing rather than silently dropping the filter.
        events = audit_events_for_org(org=access.org).none()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        (event, json.dumps(event.metadata, sort_keys=True) if event.metadata else "")
        for event in page
    ]
    return render_org_page(
        request,
        access,
        "audit/event_list.html",
        {"form": form, "page": page, "rows": rows},
        section="audit",
    )
