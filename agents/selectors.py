from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from agents.models import Agent, AgentRun, CredentialBinding
from orgs.models import Organization
from orgs.selectors import get_scoped_or_404, scoped


def _with_bindings(queryset: QuerySet[Agent]) -> QuerySet[Agent]:
    return queryset.prefetch_related(
        Prefetch(
            "bindings",
            queryset=CredentialBinding.objects.select_related("credential").only(
                "id",
                "agent_id",
                "slot",
                "placement",
                "target",
                "template",
                "credential__id",
                "credential__name",
            ),
        )
    )


def agent_list(*, org: Organization) -> QuerySet[Agent]:
    return _with_bindings(scoped(Agent, org=org)).order_by("name")


def agent_get(*, org: Organization, agent_id: Any) -> Agent:
    return get_scoped_or_404(_with_bindings(Agent.objects.all()), org=org, pk=agent_id)


def run_list(*, org: Organization, agent: Agent | None = None) -> QuerySet[AgentRun]:
    runs = scoped(AgentRun, org=org).select_related("agent")
    if agent is not None:
        runs = runs.filter(agent=agent)
    return runs.order_by("-queued_at")


def run_get(*, org: Organization, run_id: Any) -> AgentRun:
    return get_scoped_or_404(AgentRun.objects.select_related("agent"), org=org, pk=run_id)
