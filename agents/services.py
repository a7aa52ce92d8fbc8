"""Agents, their credential bindings, and runs. The worker half of a run lives here too."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent, AgentRun, CredentialBinding, Placement, RunStatus, Tool
from agents.tools import http_request
from audit.models import ActorType, Outcome
from audit.services import Actor, Target, record_event
from config import context, metrics, redaction
from credentials.models import Credential
from credentials.services import CredentialUnavailableError, credential_decrypt_for_job
from orgs.models import Organization
from orgs.selectors import scoped

logger = logging.getLogger(__name__)

DUPLICATE_NAME = "An agent with this name already exists in this organisation."


@dataclass(frozen=True)
class BindingSpec:
    slot: str
    credential_id: uuid.UUID
    placement: str
    target: str = ""
    template: str = http_request.SECRET_PLACEHOLDER


def _validate_bindings(*, org: Organization, bindings: list[BindingSpec]) -> list[Credential]:
    """The bound credentials, all of this org; errors never say whether another org has one."""
    errors: list[str] = []
    slots = [b.slot for b in bindings]
    if len(set(slots)) != len(slots):
        errors.append("Each slot may be bound once.")
    credentials = {
        c.id: c
        for c in scoped(Credential, org=org)
        .filter(id__in=[b.credential_id for b in bindings])
        .only("id", "name", "org_id")
    }
    for spec in bindings:
        if spec.credential_id not in credentials:
            errors.append(f"Slot {spec.slot}: no such credential in this organisation.")
        if spec.placement not in Placement.values:
            errors.append(
                f"Slot {spec.slot}: placement must be one of {', '.join(Placement.values)}."
            )
        if spec.placement in {Placement.HEADER, Placement.QUERY} and not spec.target:
            errors.append(f"Slot {spec.slot}: a header or parameter name is required.")
        if http_request.SECRET_PLACEHOLDER not in spec.template:
            errors.append(f"Slot {spec.slot}: the template must contain {{secret}}.")
    if errors:
        raise ValidationError({"bindings": errors})
    return [credentials[b.credential_id] for b in bindings]


def _write_bindings(*, agent: Agent, bindings: list[BindingSpec]) -> None:
    credentials = _validate_bindings(org=agent.org, bindings=bindings)
    agent.bindings.all().delete()
    CredentialBinding.objects.bulk_create(
        CredentialBinding(
            agent=agent,
            credential=credential,
            slot=spec.slot,
            placement=spec.placement,
            target=spec.target,
            template=spec.template,
        )
        for spec, credential in zip(bindings, credentials, strict=True)
    )


def _agent_target(agent: Agent) -> Target:
    return Target("agent", str(agent.id), agent.name)


@transaction.atomic
def agent_create(
    *,
    org: Organization,
    acting_user: User | None,
    name: str,
    tool: str = Tool.HTTP_REQUEST,
    config: dict[str, Any],
    description: str = "",
    bindings: list[BindingSpec] | None = None,
) -> Agent:
    agent = Agent(
        org=org,
        name=name,
        tool=tool,
        description=description,
        config=http_request.validate_config(config),
        created_by=acting_user,
    )
    try:
        with transaction.atomic():
            agent.save(force_insert=True)
    except IntegrityError:
        raise ValidationError({"name": [DUPLICATE_NAME]}) from None
    _write_bindings(agent=agent, bindings=bindings or [])
    record_event(
        action="agent.create",
        org=org,
        actor=Actor.for_user(acting_user),
        target=_agent_target(agent),
        metadata={"tool": tool, "slots": [b.slot for b in bindings or []]},
    )
    return agent


@transaction.atomic
def agent_update(
    *,
    agent: Agent,
    acting_user: User | None,
    name: str | None = None,
    description: str | None = None,
    config: dict[str, Any] | None = None,
    bindings: list[BindingSpec] | None = None,
) -> Agent:
    changed: list[str] = []
    if name is not None and name != agent.name:
        agent.name, changed = name, [*changed, "name"]
    if description is not None and description != agent.description:
        agent.description, changed = description, [*changed, "description"]
    if config is not None:
        agent.config, changed = http_request.validate_config(config), [*changed, "config"]
    if changed:
        try:
            with transaction.atomic():
                agent.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise ValidationError({"name": [DUPLICATE_NAME]}) from None
    if bindings is not None:
        _write_bindings(agent=agent, bindings=bindings)
        changed.append("bindings")
    if changed:
        record_event(
            action="agent.update",
            org=agent.org,
            actor=Actor.for_user(acting_user),
            target=_agent_target(agent),
            metadata={"fields": changed},
        )
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent, acting_user: User | None) -> None:
    record_event(
        action="agent.delete",
        org=agent.org,
        actor=Actor.for_user(acting_user),
        target=_agent_target(agent),
    )
    agent.delete()


@transaction.atomic
def agent_run_create(*, agent: Agent, acting_user: User | None) -> AgentRun:
    """Record a queued run and send it to the workers once the transaction commits."""
    from agents.tasks import run_agent

    run = AgentRun.objects.create(
        org=agent.org,
        agent=agent,
        request_id=context.current().request_id or "",
        queued_by=acting_user,
    )
    record_event(
        action="agent_run.queue",
        org=agent.org,
        actor=Actor.for_user(acting_user),
        target=Target("agent_run", str(run.id), agent.name),
        metadata={"agent_id": str(agent.id)},
    )
    run_id = str(run.id)
    # Only the id travels: the worker re-fetches everything it needs.
    transaction.on_commit(lambda: run_agent.apply_async(args=[run_id], task_id=run_id))
    logger.info("agent run queued", extra={"run_id": run_id, "agent_id": str(agent.id)})
    return run


def agent_run_execute(*, run_id: uuid.UUID | str) -> str:
    """Worker side of a run: claim it, decrypt its credentials, call the tool, store the
    redacted outcome. Returns the final status. Plaintext exists only inside this call."""
    now = timezone.now()
    claimed = AgentRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now
    )
    if not claimed:
        # A redelivered message for a run that already started or ended: never run it twice.
        status = AgentRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        logger.warning("agent run not claimed", extra={"run_id": str(run_id), "status": status})
        return status or "missing"
    run = AgentRun.objects.select_related("agent", "org").get(pk=run_id)
    agent = run.agent
    context.update(org=run.org.slug)
    actor = Actor(ActorType.AGENT, str(agent.id), agent.name)
    with redaction.secret_scope():
        logger.info("agent run started", extra={"agent_id": str(agent.id), "tool": agent.tool})
        try:
            injections = [
                http_request.Injection(
                    placement=binding.placement,
                    target=binding.target,
                    template=binding.template,
                    secret=credential_decrypt_for_job(
                        org_id=run.org_id,
                        credential_id=binding.credential_id,
                        job_id=str(run.id),
                        actor=actor,
                    ),
                )
                for binding in agent.bindings.all()
            ]
        except CredentialUnavailableError as exc:
            return _finish(run, ok=False, output={}, error=str(exc), actor=actor)
        result = http_request.run(agent.config, injections)
        return _finish(run, ok=result.ok, output=result.output, error=result.error, actor=actor)


def _finish(run: AgentRun, *, ok: bool, output: dict[str, Any], error: str, actor: Actor) -> str:
    status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
    finished = timezone.now()
    with transaction.atomic():
        AgentRun.objects.filter(pk=run.pk).update(
            status=status,
            finished_at=finished,
            output=redaction.redact(output),
            error=redaction.redact_text(error),
        )
        record_event(
            action="agent_run.finish",
            org=run.org,
            actor=actor,
            target=Target("agent_run", str(run.id), run.agent.name),
            outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
            metadata={"status": status, "error": error[:500]},
        )
    queue_to_finish = (finished - run.queued_at).total_seconds()
    metrics.observe_run_finished(status=status, seconds=queue_to_finish)
    duration_ms = round(queue_to_finish * 1000, 1)
    log = logger.info if ok else logger.warning
    log(
        "agent run %s",
        status,
        extra={"status": status, "queue_to_finish_ms": duration_ms, "error": error[:500]},
    )
    return str(status)
