"""Agent and run pages. Agents are created over the API; the UI shows them and starts runs."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from agents import selectors, services
from agents.models import RunStatus
from orgs.models import Membership
from orgs.views import org_view, render_org_page

PAGE_SIZE = 50
RECENT_RUNS = 10
# A run page in these states reloads itself (meta refresh: no script under a strict CSP).
UNFINISHED = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@require_GET
@org_view("agent.view")
def agent_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    page = Paginator(selectors.agent_list(org=membership.org), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render_org_page(
        request, membership, "agents/agent_list.html", {"page": page}, section="agents"
    )


@require_GET
@org_view("agent.view")
def agent_detail(request: HttpRequest, membership: Membership, agent_id: str) -> HttpResponse:
    agent = selectors.agent_get(org=membership.org, agent_id=agent_id)
    runs = selectors.run_list(org=membership.org, agent=agent)[:RECENT_RUNS]
    return render_org_page(
        request,
        membership,
        "agents/agent_detail.html",
        {"agent": agent, "config_json": _as_json(agent.config), "runs": runs},
        section="agents",
    )


@require_POST
@org_view("agent.run")
def agent_run_now(request: HttpRequest, membership: Membership, agent_id: str) -> HttpResponse:
    agent = selectors.agent_get(org=membership.org, agent_id=agent_id)
    run = services.agent_run_create(agent=agent, acting_user=membership.user)
    messages.success(request, f"Run of “{agent.name}” queued.")
    return redirect("ui:run", org=membership.org.slug, run_id=run.id)


@require_GET
@org_view("run.view")
def run_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    page = Paginator(selectors.run_list(org=membership.org), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render_org_page(
        request, membership, "agents/run_list.html", {"page": page}, section="runs"
    )


@require_GET
@org_view("run.view")
def run_detail(request: HttpRequest, membership: Membership, run_id: str) -> HttpResponse:
    run = selectors.run_get(org=membership.org, run_id=run_id)
    return render_org_page(
        request,
        membership,
        "agents/run_detail.html",
        {
            "run": run,
            # Stored redacted by the worker; shown as stored.
            "output_json": _as_json(run.output) if run.output else "",
            "refresh": run.status in UNFINISHED,
        },
        section="runs",
    )
