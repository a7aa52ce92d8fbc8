"""The start page and each organisation's landing page (what needs attention)."""

from __future__ import annotations

import datetime

from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from agents.models import RunStatus
from agents.selectors import agent_list, run_list
from audit.models import Outcome
from audit.selectors import audit_events_for_org
from credentials.models import CredentialStatus
from credentials.selectors import credential_list
from orgs.access import Access
from orgs.selectors import memberships_for_user
from orgs.views import org_view, render_org_page

RECENT = datetime.timedelta(days=7)
SHOWN = 10


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """One org: straight to its landing page. Several (or none): a list to choose from."""
    memberships = list(memberships_for_user(request.user))
    if len(memberships) == 1:
        return redirect("ui:org", org=memberships[0].org.slug)
    return render(request, "home.html", {"memberships": memberships})


@require_GET
@org_view("org.view")
def org_dashboard(request: HttpRequest, access: Access) -> HttpResponse:
    """What needs attention: compromised and never-used credentials, failed runs, and (for
    the roles that read the trail) recent denied accesses."""
    org = access.org
    since = timezone.now() - RECENT
    credentials = credential_list(org=org)
    failed = run_list(org=org).filter(status=RunStatus.FAILED, queued_at__gte=since)
    denied = None
    if access.can("audit.view"):
        denied = audit_events_for_org(org=org).filter(
            Q(outcome=Outcome.DENIED), occurred_at__gte=since
        )[:SHOWN]
    return render_org_page(
        request,
        access,
        "dashboard.html",
        {
            "compromised": credentials.filter(status=CredentialStatus.COMPROMISED)[:SHOWN],
            "never_used": credentials.filter(last_used_at__isnull=True)[:SHOWN],
            "failed_runs": failed[:SHOWN],
            "failed_count": failed.count(),
            "denied": denied,
            "counts": {
                "credentials": credentials.count(),
                "agents": agent_list(org=org).count(),
                "runs": run_list(org=org).filter(queued_at__gte=since).count(),
            },
        },
        section="overview",
    )
