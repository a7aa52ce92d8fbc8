"""Org-scoped HTML views: the UI twin of orgs.api.OrgScopedAPIView.

`org_view(action)` resolves the org from the URL once (404 for strangers and unknown slugs)
and checks the role before the view body runs, so no view can look something up first and
authorise later. Views receive the membership instead of the slug.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from config import context as request_context
from orgs.models import Membership
from orgs.permissions import PERMISSIONS, authorize, can
from orgs.selectors import get_membership_or_404, memberships_for_user

OrgView = Callable[..., HttpResponse]


def org_view(action: str) -> Callable[[OrgView], OrgView]:
    """Decorate `view(request, membership, **url_kwargs)`; the URL must carry `org`."""
    if action not in PERMISSIONS:
        # Fail at import time, not on the first request: a typo would otherwise be a 500.
        raise ValueError(f"unknown action {action!r}")

    def decorate(view: OrgView) -> OrgView:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, org: str, **kwargs: Any) -> HttpResponse:
            membership = get_membership_or_404(user=request.user, org_slug=org)
            request_context.update(org=membership.org.slug)
            authorize(membership, action)
            return view(request, membership, **kwargs)

        return wrapper

    return decorate


def abilities(membership: Membership) -> dict[str, bool]:
    """Every action as `credential_create: True/False`, so templates can ask `may.<action>`."""
    return {action.replace(".", "_"): can(membership, action) for action in PERMISSIONS}


def render_org_page(
    request: HttpRequest,
    membership: Membership,
    template_name: str,
    page_context: dict[str, Any] | None = None,
    *,
    section: str,
    status: int = 200,
) -> HttpResponse:
    """Render with what base.html needs: the org, the org switcher, the role's abilities and
    the nav section to highlight."""
    return render(
        request,
        template_name,
        {
            "membership": membership,
            "org": membership.org,
            "memberships": memberships_for_user(request.user),
            "may": abilities(membership),
            "section": section,
            **(page_context or {}),
        },
        status=status,
    )
