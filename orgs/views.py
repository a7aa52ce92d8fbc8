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
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from audit.models import ActorType, Outcome
from audit.services import Actor, record_event
from config import context as request_context
from config.forms import add_service_errors
from orgs import selectors, services
from orgs.access import Access, access_for, record_denied_access
from orgs.models import Role
from orgs.permissions import RULES_BY_ACTION
from orgs.throttling import FailureThrottle

OrgView = Callable[..., HttpResponse]


def throttle_sign_ins(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """Wrap a login view: after `LOGIN_FAILURE_RATE` failed sign-ins from one address, the
    next attempts get 429 before the password is even checked (the first of each window is
    audited). A sign-in that fails re-renders the form (200); one that works redirects."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        throttle = FailureThrottle("login_failure")
        wait = throttle.blocked_for(request)
        if wait is not None:
            if throttle.first_block_in_window():
                record_event(
                    action="login.throttled",
                    org=None,
                    actor=Actor(ActorType.ANONYMOUS),
                    outcome=Outcome.DENIED,
                    metadata={"retry_after_seconds": round(wait)},
                )
            refused = render(request, "429.html", {"retry_after": max(1, round(wait))}, status=429)
            refused["Retry-After"] = str(max(1, round(wait)))
            return refused
        response = view(request, *args, **kwargs)
        if response.status_code == 200:
            throttle.record_failure()
        return response

    return wrapper


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


# --- members and roles ---------------------------------------------------------------------


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MemberChangeForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)


@require_http_methods(["GET", "POST"])
@org_view("org.view")
def members(request: HttpRequest, access: Access) -> HttpResponse:
    """Members and their roles; owners and admins add, re-role and remove them here. Every
    change goes through orgs.services (audited; only owners touch the owner role)."""
    add_form = MemberAddForm()
    status = 200
    if request.method == "POST":
        access.require("member.manage")
        op = request.POST.get("op")
        if op == "add":
            add_form = MemberAddForm(request.POST)
            status = _member_add(request, access, add_form)
        elif op in {"change", "remove"}:
            status = _member_change(request, access, op)
        else:
            status = 400
            messages.error(request, "Unknown action.")
        if status == 302:
            return redirect("ui:members", org=access.org.slug)
    # Only owners are offered the owner role (the service refuses it to anyone else).
    roles = [
        (value, label)
        for value, label in Role.choices
        if access.role is Role.OWNER or value != Role.OWNER
    ]
    add_form.fields["role"].choices = roles  # type: ignore[attr-defined]
    return render_org_page(
        request,
        access,
        "orgs/members.html",
        {
            "members": selectors.members_list(org=access.org),
            "add_form": add_form,
            "roles": roles,
            "may_manage": access.can("member.manage"),
            "is_owner": access.role is Role.OWNER,
        },
        section="members",
        status=status,
    )


def _member_add(request: HttpRequest, access: Access, form: MemberAddForm) -> int:
    if not form.is_valid():
        return 400
    user = User.objects.filter(username=form.cleaned_data["username"], is_active=True).first()
    if user is None:
        form.add_error("username", "No active user with this username.")
        return 400
    if selectors.members_list(org=access.org).filter(user=user).exists():
        form.add_error("username", "Already a member: change their role below.")
        return 400
    try:
        services.membership_set(
            org=access.org,
            user=user,
            role=Role(form.cleaned_data["role"]),
            acting_user=access.user,
            acting_role=access.role,
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return 400
    messages.success(request, f"{user.get_username()} added as {form.cleaned_data['role']}.")
    return 302


def _member_change(request: HttpRequest, access: Access, op: str) -> int:
    form = MemberChangeForm(request.POST) if op == "change" else None
    username = request.POST.get("username", "")
    membership = selectors.member_get(org=access.org, username=username)
    if membership is None:
        raise Http404("No such member.")
    try:
        if form is not None:
            if not form.is_valid():
                messages.error(request, "Choose one of the roles.")
                return 400
            services.membership_set(
                org=access.org,
                user=membership.user,
                role=Role(form.cleaned_data["role"]),
                acting_user=access.user,
                acting_role=access.role,
            )
            messages.success(request, f"{username} is now {form.cleaned_data['role']}.")
        else:
            services.membership_remove(
                membership=membership, acting_user=access.user, acting_role=access.role
            )
            messages.success(request, f"{username} removed.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return 400
    return 302
