"""record_event: the one way an audit event is written.

Call it inside the transaction of the change it records, so the event and the change commit
or roll back together. requestId, jobId, ip and user agent come from the request/job context.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from audit.models import ActorType, AuditEvent, Outcome
from config import context, redaction

logger = logging.getLogger(__name__)


def actor_for_user(user: AbstractBaseUser | AnonymousUser | None) -> dict[str, str]:
    if user is None or not user.is_authenticated:
        return {"actor_type": ActorType.ANONYMOUS, "actor_id": "", "actor_label": ""}
    return {
        "actor_type": ActorType.USER,
        "actor_id": str(user.pk),
        "actor_label": user.get_username(),
    }


def record_event(
    *,
    action: str,
    org: Any | None,
    actor_type: str,
    actor_id: str = "",
    actor_label: str = "",
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    ctx = context.current()
    event = AuditEvent.objects.create(
        org=org,
        actor_type=actor_type,
        actor_id=actor_id,
        actor_label=actor_label[:200],
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:200],
        outcome=outcome,
        request_id=ctx.request_id or "",
        job_id=ctx.job_id or "",
        ip=ctx.ip,
        user_agent=(ctx.user_agent or "")[:512],
        metadata=redaction.redact(metadata or {}),
    )
    logger.info(
        "audit %s %s",
        action,
        outcome,
        extra={"audit": {"action": action, "outcome": outcome, "target_id": target_id}},
    )
    return event
