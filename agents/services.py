"""Agents, their credential bindings, and runs. The worker half of a run lives here too."""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import OuterRef
from django.utils import timezone

from agents.models import (
    Agent,
    AgentRun,
    AgentToken,
    CredentialBinding,
    Placement,
    RunStatus,
    Tool,
)
from agents.selectors import agent_may_run
from agents.tools import http_request
from audit.models import ActorType, Outcome
from audit.services import Actor, Target, record_event
from config import context, metrics, redaction, statements
from credentials.models import Credential
from credentials.services import (
    CredentialUnavailableError,
    Grantee,
    LoadedCredentials,
    credential_grant,
    credentials_decrypt_for_job,
    use_granted,
)
from orgs import tokens
from orgs.access import Access
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


def agent_grantee(agent: Agent) -> Grantee:
    return Grantee("agent", str(agent.id), agent.name, group=agent.principal)


def _write_bindings(
    *, agent: Agent, bindings: list[BindingSpec], acting_user: User | None, access: Access | None
) -> None:
    """Replace the agent's bindings. With `access` (a person acting through the UI or API),
    each bound credential must be one they may use; where they may also grant it, the agent
    gets its use grant at once. Without it (the system: demo, setup scripts) it always does.
    Bindings whose credential the agent holds no grant for are kept: runs fail, saying so,
    until someone who may grants it."""
    credentials = _validate_bindings(org=agent.org, bindings=bindings)
    if access is not None:
        _require_use(
            access, [(spec.slot, c) for spec, c in zip(bindings, credentials, strict=True)]
        )
    for credential in {c.id: c for c in credentials}.values():
        if access is None or access.can("credential.grant", credential):
            credential_grant(
                credential=credential,
                permission="use",
                grantee=agent_grantee(agent),
                acting_user=acting_user,
                actor=access.actor if access is not None else None,
            )
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


def _require_use(access: Access, slots: list[tuple[str, Credential]]) -> None:
    """Refuse unless the person may use every credential named (slot, credential)."""
    access.prefetch_grants([credential for _, credential in slots])
    for slot, credential in slots:
        if not access.can("credential.use", credential):
            raise PermissionDenied(f"Slot {slot}: you may not use credential {credential.name!r}.")


def _bound_credentials(agent: Agent) -> list[tuple[str, Credential]]:
    return [(b.slot, b.credential) for b in agent.bindings.select_related("credential")]


def _bindings_metadata(bindings: list[BindingSpec]) -> list[dict[str, str]]:
    # Which credential each slot holds, in the trail itself: the access review checks every
    # decrypt against the bindings the trail says the agent had at that moment.
    return [{"slot": b.slot, "credential_id": str(b.credential_id)} for b in bindings]


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
    access: Access | None = None,
) -> Agent:
    agent_id = uuid.uuid4()
    agent = Agent(
        id=agent_id,
        org=org,
        name=name,
        tool=tool,
        description=description,
        config=http_request.validate_config(config),
        created_by=acting_user,
        principal=Group.objects.create(name=f"agent:{agent_id}"),
    )
    try:
        with transaction.atomic():
            agent.save(force_insert=True)
    except IntegrityError:
        raise ValidationError({"name": [DUPLICATE_NAME]}) from None
    _write_bindings(agent=agent, bindings=bindings or [], acting_user=acting_user, access=access)
    record_event(
        action="agent.create",
        org=org,
        actor=access.actor if access is not None else Actor.for_user(acting_user),
        target=_agent_target(agent),
        metadata={"tool": tool, "bindings": _bindings_metadata(bindings or [])},
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
    access: Access | None = None,
) -> Agent:
    if access is not None and config is not None and bindings is None:
        # The config says where the bound credentials go: whoever changes it must be someone
        # who may use them (an agent's owner whose grant was revoked, or whose agent an admin
        # bound their own credential to, may not send it elsewhere).
        _require_use(access, _bound_credentials(agent))
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
        _write_bindings(agent=agent, bindings=bindings, acting_user=acting_user, access=access)
        changed.append("bindings")
    if changed:
        record_event(
            action="agent.update",
            org=agent.org,
            actor=access.actor if access is not None else Actor.for_user(acting_user),
            target=_agent_target(agent),
            metadata={
                "fields": changed,
                **({"bindings": _bindings_metadata(bindings)} if bindings is not None else {}),
            },
        )
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent, acting_user: User | None) -> None:
    target = _agent_target(agent)
    principal = agent.principal
    # Record last (see credentials.services.credential_delete).
    agent.delete()
    principal.delete()  # its credential grants go with it
    record_event(
        action="agent.delete",
        org=agent.org,
        actor=Actor.for_user(acting_user),
        target=target,
    )


@transaction.atomic
def agent_run_create(
    *,
    agent: Agent,
    acting_user: User | None,
    token: AgentToken | None = None,
    actor: Actor | None = None,
) -> AgentRun:
    """Record a queued run and send it to the workers once the transaction commits."""
    from agents.tasks import run_agent

    run = AgentRun(
        org=agent.org,
        agent=agent,
        request_id=context.current().request_id or "",
        queued_by=acting_user,
        queued_by_token=token,
    )
    # The run's INSERT travels with the event's first statement (config.statements).
    with statements.sent_with_next([statements.insert(run)]):
        record_event(
            action="agent_run.queue",
            org=agent.org,
            actor=actor or Actor.for_user(acting_user),
            target=Target("agent_run", str(run.id), agent.name),
            metadata={"agent_id": str(agent.id)},
        )
    statements.saved(run)
    run_id = str(run.id)
    # Only the id travels: the worker re-fetches everything it needs.
    transaction.on_commit(lambda: run_agent.apply_async(args=[run_id], task_id=run_id))
    logger.info("agent run queued", extra={"run_id": run_id, "agent_id": str(agent.id)})
    return run


def agent_run_execute(*, run_id: uuid.UUID | str) -> str:
    """Worker side of a run: claim it, authorise and decrypt its credentials, call the tool,
    store the redacted outcome. Returns the final status. Plaintext exists only inside this
    call.

    Claiming (`_claim`), authorising and decrypting share one transaction: one commit
    before the tool runs.
    """
    with redaction.secret_scope():
        try:
            return _execute(run_id, retry_claim=True)
        except _ClaimConnectionLostError:
            # Nothing was written and the tool was not called: claim again, on a new
            # connection (the transaction's failed rollback closed the old one).
            logger.warning(
                "database connection lost at the claim; claiming again on a new connection",
                extra={"run_id": str(run_id)},
            )
            return _execute(run_id, retry_claim=False)


class _ClaimConnectionLostError(Exception):
    """The run's first statement failed on its connection (OperationalError or
    InterfaceError): a kept connection whose peer vanished without a word, say a failover
    that moved the database's address, which no check short of a round trip sees
    (config.celery checks kept connections without one)."""


def _claim(run_id: uuid.UUID | str) -> tuple[AgentRun | None, bool]:
    """(the run with its agent and org, whether this call claimed it): an UPDATE of a
    queued run, which locks the run's row, so a redelivered message waits for it and then
    finds the run taken. Only the run's row is locked: locking the joined org and agent rows
    too would make every run of an org wait for the one before it to commit."""
    claim = statements.update(
        AgentRun.objects.filter(pk=run_id, status=RunStatus.QUEUED),
        status=RunStatus.RUNNING,
        started_at=timezone.now(),
    )
    # The claim goes in the round trip of the read.
    with statements.sent_with_next([claim]) as claimed:
        runs = list(
            AgentRun.objects.select_related("agent", "agent__principal", "org", "queued_by_token")
            .filter(pk=run_id)
            .order_by()  # one row at most: no ORDER BY for the server to plan
        )
    return (runs[0] if runs else None), claimed == [1]


def _execute(run_id: uuid.UUID | str, *, retry_claim: bool) -> str:
    """agent_run_execute's work; with `retry_claim`, a claim that fails on its connection
    raises _ClaimConnectionLostError for the caller to claim again."""
    with transaction.atomic():
        try:
            run, claimed = _claim(run_id)
        except (OperationalError, InterfaceError) as exc:
            if not retry_claim:
                raise
            raise _ClaimConnectionLostError from exc
        if run is None or not claimed:
            # A redelivered message for a run that already started or ended: never run it
            # twice.
            status = run.status if run is not None else "missing"
            logger.warning("agent run not claimed", extra={"run_id": str(run_id), "status": status})
            return str(status)
        agent = run.agent
        context.update(org=run.org.slug)
        actor = Actor(ActorType.AGENT, str(agent.id), agent.name)
        logger.info("agent run started", extra={"agent_id": str(agent.id), "tool": agent.tool})
        # Re-read just before decrypting: a binding removed or a grant revoked while the
        # run was queued takes effect for it. The bound credentials, and whether the agent
        # holds their use grants, come in the same query.
        bindings = list(
            CredentialBinding.objects.filter(agent=agent)
            .select_related("credential__org")
            .annotate(use_granted=use_granted(agent.principal, OuterRef("credential_id")))
            .order_by("slot")
        )
        try:
            if agent.org_id != run.org_id:
                raise CredentialUnavailableError("the agent is not in the run's organisation")
            token = run.queued_by_token  # read with the run, as it is now
            if token is not None and token.revoked_at is not None:
                # Revoking a token is how a leak is contained: what it queued does not run.
                raise CredentialUnavailableError("the agent token that queued this run was revoked")
            plaintexts = credentials_decrypt_for_job(
                org_id=run.org_id,
                credential_ids=[b.credential_id for b in bindings],
                principal=agent.principal,
                actor=actor,
                loaded=LoadedCredentials(
                    credentials=[b.credential for b in bindings],
                    granted=frozenset(b.credential_id for b in bindings if b.use_granted),
                ),
            )
        except CredentialUnavailableError as exc:
            return _finish(run, ok=False, output={}, error=str(exc), actor=actor)
    injections = [
        http_request.Injection(
            placement=binding.placement,
            target=binding.target,
            template=binding.template,
            secret=plaintexts[binding.credential_id],
        )
        for binding in bindings
    ]
    result = http_request.run(agent.config, injections)
    return _finish(run, ok=result.ok, output=result.output, error=result.error, actor=actor)


def agent_run_fail(*, run_id: uuid.UUID | str, error: str) -> bool:
    """Mark a run that is still queued or running failed (after an unexpected error in the
    worker). True if it was; a run that already ended is left as it is."""
    with transaction.atomic():
        run = (
            AgentRun.objects.select_for_update()
            .select_related("agent", "org")
            .filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
            .first()
        )
        if run is None:
            return False
        actor = Actor(ActorType.AGENT, str(run.agent_id), run.agent.name)
        _finish(run, ok=False, output={}, error=error, actor=actor)
    return True


def _finish(run: AgentRun, *, ok: bool, output: dict[str, Any], error: str, actor: Actor) -> str:
    status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
    finished = timezone.now()
    # Redact, then cut: cut first, the head of a secret straddling the cut would no longer
    # match and would stay in the audit event and the log line (an endpoint's reason phrase
    # is the endpoint's text, and may quote what it received).
    error = redaction.redact_text(error)
    outcome = statements.update(
        AgentRun.objects.filter(pk=run.pk),
        status=status,
        finished_at=finished,
        output=redaction.redact(output),
        error=error,
    )
    with transaction.atomic(), statements.sent_with_next([outcome]):
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


# --- agent tokens -----------------------------------------------------------------------------


def _token_target(token: AgentToken) -> Target:
    return Target("agent_token", str(token.id), f"{token.agent.name}/{token.name}")


@transaction.atomic
def agent_token_issue(
    *,
    agent: Agent,
    name: str,
    acting_user: User | None,
    expires_at: datetime.datetime | None = None,
    actor: Actor | None = None,
    access: Access | None = None,
) -> tuple[AgentToken, str]:
    """A new token for `agent` and its plaintext, which the caller shows once.

    With `access` (a person through the UI or API), only someone who may run the agent, bound
    credentials included, may hand that power to a token: a token runs without asking.
    """
    if access is not None and not agent_may_run(access=access, agent=agent):
        raise PermissionDenied(
            "Issuing a token for this agent needs the right to run it: use of every "
            "credential bound to it."
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["Must be in the future."]})
    new = tokens.issue(tokens.TokenKind.AGENT)
    token = AgentToken.objects.create(
        org=agent.org,
        agent=agent,
        name=name,
        digest=new.digest,
        display=new.display,
        created_by=acting_user,
        expires_at=expires_at,
    )
    record_event(
        action="token.issue",
        org=agent.org,
        actor=actor or Actor.for_user(acting_user),
        target=_token_target(token),
        metadata={
            "kind": "agent",
            "agent_id": str(agent.id),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, new.plaintext


@transaction.atomic
def agent_token_revoke(
    *, token: AgentToken, acting_user: User | None, actor: Actor | None = None
) -> bool:
    """Idempotent: True if the token was active and is now revoked."""
    now = timezone.now()
    revoked = AgentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=acting_user
    )
    if revoked:
        token.revoked_at, token.revoked_by = now, acting_user
        record_event(
            action="token.revoke",
            org=token.org,
            actor=actor or Actor.for_user(acting_user),
            target=_token_target(token),
            metadata={"kind": "agent", "agent_id": str(token.agent_id)},
        )
    return bool(revoked)


def agent_tokens_revoke_all(
    *,
    org: Organization,
    agent: Agent | None = None,
    acting_user: User | None,
    actor: Actor | None = None,
    issued_before: datetime.datetime | None = None,
) -> int:
    """Revoke every active token of the org (or of one agent): the containment step of a
    breach. Each revocation is its own audited transaction, so an interrupted call leaves
    a consistent state and running it again finishes the job. With `issued_before`, tokens
    issued later (after the breach was contained) are left alone."""
    active = scoped(AgentToken, org=org).filter(revoked_at__isnull=True).select_related("agent")
    if agent is not None:
        active = active.filter(agent=agent)
    if issued_before is not None:
        active = active.filter(created_at__lt=issued_before)
    return sum(
        agent_token_revoke(token=token, acting_user=acting_user, actor=actor)
        for token in active.order_by("created_at")
    )


def agent_tokens_revoke_issued_by(*, org: Organization, user: User, actor: Actor) -> int:
    """Revoke every active agent token `user` issued in `org` (they left it: the token was
    shown to them once, and a copy must not outlive their membership). Audited."""
    active = scoped(AgentToken, org=org).filter(created_by=user, revoked_at__isnull=True)
    return sum(
        agent_token_revoke(token=token, acting_user=None, actor=actor)
        for token in active.select_related("agent").order_by("created_at")
    )
