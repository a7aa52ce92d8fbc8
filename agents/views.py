"""Agent and run pages. Agents are created over the API; the UI shows them and starts runs."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from agents import selectors, services
from agents.models import Agent, AgentRun, RunStatus
from config.forms import add_service_errors
from credentials.selectors import credential_get_for
from orgs.access import Access, ScopedObjectNotFound
from orgs.views import org_view, render_org_page

PAGE_SIZE = 50
RECENT_RUNS = 10
# A run page in these states reloads itself (meta refresh: no script under a strict CSP).
UNFINISHED = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@require_GET
@org_view("agent.view")
def agent_list(request: HttpRequest, access: Access) -> HttpResponse:
    page = Paginator(selectors.agent_list(org=access.org), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render_org_page(
        request, access, "agents/agent_list.html", {"page": page}, section="agents"
    )


@require_GET
@org_view("agent.view")
def agent_detail(request: HttpRequest, access: Access, agent_id: str) -> HttpResponse:
    agent = selectors.agent_get_for(access=access, agent_id=agent_id)
    return _agent_page(request, access, agent)


def _agent_page(
    request: HttpRequest,
    access: Access,
    agent: Agent,
    *,
    token_form: forms.Form | None = None,
    issued: str | None = None,
    status: int = 200,
) -> HttpResponse:
    runs = selectors.run_list(org=access.org, agent=agent)[:RECENT_RUNS]
    may_tokens = access.can("agent.tokens", agent)
    response = render_org_page(
        request,
        access,
        "agents/agent_detail.html",
        {
            "agent": agent,
            "config_json": _as_json(agent.config),
            "runs": runs,
            "may_run": selectors.agent_may_run(access=access, agent=agent),
            "may_tokens": may_tokens,
            "tokens": [
                (token, token.state(timezone.now()))
                for token in (selectors.agent_tokens_list(agent=agent) if may_tokens else [])
            ],
            "token_form": token_form or AgentTokenForm(),
            "issued_token": issued,
        },
        section="agents",
        status=status,
    )
    return response


@require_POST
@org_view("agent.run")
def agent_run_now(request: HttpRequest, access: Access, agent_id: str) -> HttpResponse:
    agent = selectors.agent_get_for(access=access, agent_id=agent_id, need="agent.run")
    run = services.agent_run_create(agent=agent, acting_user=access.user)
    messages.success(request, f"Run of “{agent.name}” queued.")
    return redirect("ui:run", org=access.org.slug, run_id=run.id)


@require_GET
@org_view("run.view")
def run_list(request: HttpRequest, access: Access) -> HttpResponse:
    page = Paginator(selectors.run_list(org=access.org), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render_org_page(request, access, "agents/run_list.html", {"page": page}, section="runs")


@require_GET
@org_view("run.view")
def run_detail(request: HttpRequest, access: Access, run_id: str) -> HttpResponse:
    run = selectors.run_get_for(access=access, run_id=run_id)
    return render_org_page(
        request,
        access,
        "agents/run_detail.html",
        {
            "run": run,
            # Stored redacted by the worker; shown as stored.
            "output_json": _as_json(run.output) if run.output else "",
            "refresh": run.status in UNFINISHED,
        },
        section="runs",
    )


class AgentTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “ci-runner”.")
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC, optional)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


@never_cache
@require_POST
@org_view("agent.tokens")
def agent_token_issue(request: HttpRequest, access: Access, agent_id: str) -> HttpResponse:
    """Issue a token and show it in this response only: never in a URL, a flash message or a
    session, so reloading or going back cannot show it again."""
    agent = selectors.agent_get_for(access=access, agent_id=agent_id, need="agent.tokens")
    form = AgentTokenForm(request.POST)
    if form.is_valid():
        try:
            _, plaintext = services.agent_token_issue(
                agent=agent,
                name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"],
                acting_user=access.user,
                access=access,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            return _agent_page(request, access, agent, issued=plaintext)
    return _agent_page(request, access, agent, token_form=form, status=400)


@require_POST
@org_view("agent.tokens")
def agent_token_revoke(
    request: HttpRequest, access: Access, agent_id: str, token_id: str
) -> HttpResponse:
    agent = selectors.agent_get_for(access=access, agent_id=agent_id, need="agent.tokens")
    token = selectors.agent_token_get(agent=agent, token_id=token_id)
    if services.agent_token_revoke(token=token, acting_user=access.user):
        messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("ui:agent", org=access.org.slug, agent_id=agent.id)


# --- "test this credential" -----------------------------------------------------------------
# Here, not in credentials.views: it queues a run, and credentials must not import agents.


@require_POST
@org_view("credential.use")
def credential_test(request: HttpRequest, access: Access, credential_id: str) -> HttpResponse:
    """Queue a real worker run of an agent bound to this credential; its result page shows
    only the outcome (status, the target's HTTP status, the error), not the response body."""
    credential = credential_get_for(
        access=access, credential_id=credential_id, need="credential.use"
    )
    agent = selectors.agent_get_for(
        access=access, agent_id=request.POST.get("agent", ""), need="agent.run"
    )
    if not agent.bindings.filter(credential=credential).exists():
        raise ScopedObjectNotFound(Agent, agent.id, access.org)  # not an agent of this credential
    run = services.agent_run_create(agent=agent, acting_user=access.user)
    return redirect(
        "ui:credential-test-result", org=access.org.slug, credential_id=credential.id, run_id=run.id
    )


@require_GET
@org_view("credential.view")
def credential_test_result(
    request: HttpRequest, access: Access, credential_id: str, run_id: str
) -> HttpResponse:
    credential = credential_get_for(access=access, credential_id=credential_id)
    run = selectors.run_get_for(access=access, run_id=run_id)
    if not run.agent.bindings.filter(credential=credential).exists():
        # Not a test of this credential: the page under its URL shows only those.
        raise ScopedObjectNotFound(AgentRun, run.id, access.org)
    return render_org_page(
        request,
        access,
        "credentials/credential_test_result.html",
        {
            "credential": credential,
            "run": run,
            "status_code": (run.output or {}).get("status_code"),
            "refresh": run.status in UNFINISHED,
        },
        section="credentials",
    )
