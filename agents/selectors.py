from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet

from agents.models import Agent, AgentRun, AgentToken, CredentialBinding
from orgs import tokens
from orgs.access import Access, ScopedObjectNotFound
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
                "credential__org_id",
                "credential__created_by_id",
            ),
        )
    )


def agent_list(*, org: Organization) -> QuerySet[Agent]:
    return _with_bindings(scoped(Agent, org=org)).order_by("name")


def agent_get(*, org: Organization, agent_id: Any) -> Agent:
    return get_scoped_or_404(_with_bindings(Agent.objects.all()), org=org, pk=agent_id)


def agent_get_for(*, access: Access, agent_id: Any, need: str = "agent.view") -> Agent:
    """Fetch and authorise in one step: 404 outside the org, 403 without the right.

    An agent token reaches only its own agent (any other is a 404, as if it did not exist),
    and only to queue or read runs. Running an agent needs `credential.use` on every
    credential bound to it, as well as `agent.run`.
    """
    agent = agent_get(org=access.org, agent_id=agent_id)
    if access.agent is not None:
        if agent.id != access.agent.agent_id:
            raise ScopedObjectNotFound(Agent, agent.id, access.org)
        if need not in {"agent.run", "run.view"}:
            access.require(need, agent)  # refuses: agent tokens hold no role permissions
        return agent
    access.require(need, agent)
    if need == "agent.run" and not agent_may_run(access=access, agent=agent):
        raise PermissionDenied(
            "Running this agent needs the right to use every credential bound to it."
        )
    return agent


def agent_may_run(*, access: Access, agent: Agent) -> bool:
    """agent.run, and credential.use on every credential bound to the agent."""
    if not access.can("agent.run", agent):
        return False
    credentials = [binding.credential for binding in agent.bindings.all()]
    access.prefetch_grants(credentials)
    return all(access.can("credential.use", credential) for credential in credentials)


def run_list(*, org: Organization, agent: Agent | None = None) -> QuerySet[AgentRun]:
    runs = scoped(AgentRun, org=org).select_related("agent")
    if agent is not None:
        runs = runs.filter(agent=agent)
    return runs.order_by("-queued_at")


def run_get(*, org: Organization, run_id: Any) -> AgentRun:
    return get_scoped_or_404(AgentRun.objects.select_related("agent"), org=org, pk=run_id)


def run_get_for(*, access: Access, run_id: Any) -> AgentRun:
    run = run_get(org=access.org, run_id=run_id)
    if access.agent is not None and run.agent_id != access.agent.agent_id:
        raise ScopedObjectNotFound(AgentRun, run.id, access.org)
    if access.agent is None:
        access.require("run.view", run)
    return run


def agent_tokens_list(*, agent: Agent) -> QuerySet[AgentToken]:
    return scoped(AgentToken, org=agent.org).filter(agent=agent).order_by("-created_at")


def agent_token_get(*, agent: Agent, token_id: Any) -> AgentToken:
    return get_scoped_or_404(
        AgentToken.objects.filter(agent=agent).select_related("agent"), org=agent.org, pk=token_id
    )


def agent_token_by_plaintext(plaintext: str) -> AgentToken | None:
    """The token with this digest (any state), for authentication."""
    return (
        AgentToken.objects.select_related("agent", "org")
        .filter(digest=tokens.digest(plaintext))
        .first()
    )
