"""record_event: the one way an audit event is written.

Call it inside the transaction of the change it records, so the event and the change commit
or roll back together. requestId, jobId, ip and user agent come from the request/job context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from audit.models import ActorType, AuditEvent, Outcome
from config import context, metrics, redaction
from orgs.models import Organization

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""

    @classmethod
    def for_user(cls, user: User | AnonymousUser | None) -> Actor:
        if user is None or not user.is_authenticated:
            return cls(ActorType.ANONYMOUS)
        return cls(ActorType.USER, str(user.pk), user.get_username())


SYSTEM = Actor(ActorType.SYSTEM, "", "system")


@dataclass(frozen=True)
class Target:
    type: str
    id: str
    label: str = ""


def record_event(
    *,
    action: str,
    org: Organization | None,
    actor: Actor,
    target: Target | None = None,
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    ctx = context.current()
    event = AuditEvent.objects.create(
        org=org,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        action=action,
        target_type=target.type if target else "",
        target_id=target.id if target else "",
        target_label=(target.label if target else "")[:200],
        outcome=outcome,
        request_id=ctx.request_id or "",
        job_id=ctx.job_id or "",
        ip=ctx.ip,
        user_agent=(ctx.user_agent or "")[:512],
        metadata=redaction.redact(metadata or {}),
    )
    if outcome == Outcome.DENIED:
        metrics.observe_denied_access(action=action)
    logger.info(
        "audit %s %s",
        action,
        outcome,
        extra={"audit": {"action": action, "outcome": outcome, "target_id": event.target_id}},
    )
    return event
