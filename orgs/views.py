"""Org-scoped HTML views: the UI twin of orgs.api.OrgScopedAPIView.

`org_view(action)` resolves the org from the URL once (404 for strangers and unknown slugs),
refuses a role that can never take the action, and audits every refusal; the view receives
the resolved `Access` and fetches through selectors that authorise the object itself.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from config import context as request_context
from config.forms import add_service_errors
from orgs import selectors, services
from orgs.access import Access, access_for, record_denied_access
from orgs.permissions import RULES_BY_ACTION

OrgView = Callable[..., HttpResponse]


def org_view(action: str) -> Callable[[OrgView], OrgView]:
    """Decorate `view(request, access, **url_kwargs)`; the URL must carry `org`."""
    if action not in RULES_BY_ACTION:
        # Fail at import time, not on the first request: a typo would otherwise be a 500.
        raise ValueError(f"unknown action {action!r}")

    def decorate(view: OrgView) -> OrgView:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, org: str, **kwargs: Any) -> HttpResponse:
            access: Access | None = None
            try:
                access = access_for(principal=request.user, org_slug=org)
                request_context.update(org=access.org.slug)
                access.require_ever(action)
                return view(request, access, **kwargs)
            except (Http404, PermissionDenied) as exc:
                match = request.resolver_match
                record_denied_access(
                    principal=request.user,
                    exc=exc,
                    access=access,
                    attempted=f"{request.method} {match.view_name if match else '?'}",
                )
                raise

        return wrapper

    return decorate


def render_org_page(
    request: HttpRequest,
    access: Access,
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
            "access": access,
            "membership": access.membership,
            "org": access.org,
            "memberships": selectors.memberships_for_user(request.user),
            "may": access.abilities(),
            "section": section,
            **(page_context or {}),
        },
        status=status,
    )


# --- personal API tokens (not org-scoped: a token acts for its person in every org) --------


class PersonalTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “deploy script”.")
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC, optional)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def personal_tokens(request: HttpRequest) -> HttpResponse:
    """List and issue the signed-in person's API tokens. A new token is shown in the answer to
    the POST only: never in a URL, a flash message or the session."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - login_required
    form = PersonalTokenForm(request.POST if request.method == "POST" else None)
    issued = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, issued = services.personal_token_issue(
                    user=user,
                    name=form.cleaned_data["name"],
                    expires_at=form.cleaned_data["expires_at"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
                status = 400
            else:
                form = PersonalTokenForm()
        else:
            status = 400
    now = timezone.now()
    rows = [(token, token.state(now)) for token in selectors.personal_tokens_list(user=user)]
    return render(
        request,
        "tokens/personal_tokens.html",
        {
            "memberships": selectors.memberships_for_user(user),
            "form": form,
            "tokens": rows,
            "issued_token": issued,
            "section": "tokens",
        },
        status=status,
    )


@require_POST
@login_required
def personal_token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - login_required
    token = selectors.personal_token_get(user=user, token_id=token_id)
    if services.personal_token_revoke(token=token, acting_user=user).revoked_at is not None:
        messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("ui:personal-tokens")
