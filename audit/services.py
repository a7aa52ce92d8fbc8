"""record_event: the one way an audit event is written.

Call it inside the transaction of the change it records, so the event and the change commit
or roll back together. requestId, jobId, ip and user agent come from the request/job context.

Each event is appended to its org's hash chain (audit/chain.py): the chain head row is locked
for the rest of the caller's transaction, so call this late in it. Chains of different orgs
never wait on each other.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.db.models import CharField
from django.utils import timezone

from audit.chain import GENESIS_HASH, canonical_metadata, chain_key, normalise_ip
from audit.models import ActorType, AuditChainHead, AuditEvent, Outcome
from config import context, metrics, redaction, statements
from config.statements import Statement
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


# What is hashed must be exactly what the database keeps: PostgreSQL refuses an overlong
# varchar and SQLite keeps it whole, so values are cut to the column's length for both.
_MAX_LENGTHS: dict[str, int] = {
    field.name: field.max_length
    for field in AuditEvent._meta.concrete_fields
    if isinstance(field, CharField) and field.max_length
}


def _fit(field: str, value: str) -> str:
    return value[: _MAX_LENGTHS[field]]


# Run the foreign-key checks PostgreSQL would run at commit now, before the head lock.
#
# Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: a row inserted by the change (a run
# referencing its agent) is checked at commit, and the check waits for anyone who holds the
# referenced row FOR UPDATE. Were that after the head lock, a holder of the row who records an
# event next would wait for the head while the head's holder waits for the row: a deadlock.
# Checked first, the change waits for the row before it takes the head
# (tests/audit/test_chain_lock_order.py). Deferred checking resumes for the rest of the
# transaction.
_CHECK_DEFERRED = (
    Statement("SET CONSTRAINTS ALL IMMEDIATE"),
    Statement("SET CONSTRAINTS ALL DEFERRED"),
)
# AuditChainHead's table (a wrong name fails every event, so every test).
_READ_HEAD = 'SELECT "sequence", "hash" FROM "audit_auditchainhead" WHERE "chain" = %s'
# On PostgreSQL the lock also takes the event's id from its column's sequence, so that the
# event's INSERT needs no RETURNING: nothing is read back, and it can wait for the commit.
_LOCK_HEAD = (
    "SELECT \"sequence\", \"hash\", nextval(pg_get_serial_sequence('audit_auditevent', 'id')) "
    'FROM "audit_auditchainhead" WHERE "chain" = %s FOR UPDATE'
)


def _select_head_for_update(chain: str) -> tuple[int, str, int | None] | None:
    """The head row, locked until the transaction ends (after the deferred checks, on
    PostgreSQL), and the next event's id where the database hands it out (PostgreSQL).
    SQLite has no row locks; there the project's IMMEDIATE transactions already serialise
    writers. Raw SQL: this runs for every event, several times in every agent run, and on
    PostgreSQL the checks and the lock go in one round trip (config.statements)."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(_READ_HEAD, [chain])
            row = cursor.fetchone()
            return None if row is None else (row[0], row[1], None)
        statements.execute(cursor, [*_CHECK_DEFERRED, Statement(_LOCK_HEAD, (chain,))])
        return cursor.fetchone()


def _lock_chain_head(chain: str) -> tuple[int, str, int | None]:
    """(sequence, hash) of the chain's newest event, with its head row locked until the
    transaction ends, and the next event's id where the database hands it out."""
    head = _select_head_for_update(chain)
    if head is None:
        # The chain's first event. Two first writers race to create the head: ON CONFLICT DO
        # NOTHING lets the loser wait for the winner's row instead of failing.
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(chain=chain, sequence=0, hash=GENESIS_HASH)], ignore_conflicts=True
        )
        head = _select_head_for_update(chain)
        if head is None:
            raise AuditChainHead.DoesNotExist(f"no head row for chain {chain}")
    return int(head[0]), str(head[1]), head[2]


_MOVE_HEAD = 'UPDATE "audit_auditchainhead" SET "sequence" = %s, "hash" = %s WHERE "chain" = %s'


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
    event = AuditEvent(
        org=org,
        actor_type=_fit("actor_type", actor.type),
        actor_id=_fit("actor_id", actor.id),
        actor_label=_fit("actor_label", actor.label),
        action=_fit("action", action),
        target_type=_fit("target_type", target.type if target else ""),
        target_id=_fit("target_id", target.id if target else ""),
        target_label=_fit("target_label", target.label if target else ""),
        outcome=_fit("outcome", outcome),
        request_id=_fit("request_id", ctx.request_id or ""),
        job_id=_fit("job_id", ctx.job_id or ""),
        ip=normalise_ip(ctx.ip),
        user_agent=_fit("user_agent", ctx.user_agent or ""),
        metadata=canonical_metadata(redaction.redact(metadata or {})),
    )
    chain = chain_key(org.pk if org is not None else None)
    # No savepoint: if the event cannot be written, the change it records must not commit
    # either, and a savepoint would cost two round trips on every event.
    with transaction.atomic(savepoint=False):
        last_sequence, last_hash, event_id = _lock_chain_head(chain)
        # Taken under the lock: on one clock, time follows the sequence along a chain.
        event.occurred_at = timezone.now()
        event.sequence = last_sequence + 1
        event.prev_hash = last_hash
        event.hash = event.compute_hash()
        move_head = Statement(_MOVE_HEAD, (event.sequence, event.hash, chain))
        if event_id is not None:
            # PostgreSQL: nothing to read back. The head moves and the event goes in with the
            # transaction's next statement, or with its COMMIT (config.statements).
            event.id = event_id
            statements.sent_by_commit([move_head, statements.insert(event)])
            statements.saved(event)
        else:
            # The INSERT comes last, for the id it returns.
            with connection.cursor() as cursor:
                statements.execute(cursor, [move_head, statements.insert(event)])
                statements.saved(event, cursor=cursor)
    if outcome == Outcome.DENIED:
        metrics.observe_denied_access(action=action)
    # Logged once the event has committed: the line carries the chain position and hash, a
    # copy of the trail outside the database (an anchor for `audit verify --anchor`), so it
    # must never name an event that was rolled back and whose number another event then took.
    line = {
        "action": action,
        "outcome": outcome,
        "target_id": event.target_id,
        "chain": chain,
        "sequence": event.sequence,
        "hash": event.hash,
    }
    # With the context of the change (requestId, jobId, user), whenever the commit comes.
    bound = contextvars.copy_context()
    transaction.on_commit(
        lambda: bound.run(logger.info, "audit %s %s", action, outcome, extra={"audit": line}),
        robust=True,
    )
    return event
