from __future__ import annotations

from typing import Any, NoReturn

from django.db import models
from django.utils import timezone

from audit.chain import FORMAT_VERSION, GENESIS_HASH, chain_key, event_hash


class ActorType(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    AGENT_TOKEN = "agent_token", "Agent token"
    WORKER = "worker", "Worker"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("audit events are append-only")

    def delete(self) -> NoReturn:
        raise TypeError("audit events are append-only")


class AuditEvent(models.Model):
    """One thing that happened. Append-only: the ORM refuses update and delete, and on
    PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE (migration 0003).

    Hash-chained per organisation (org NULL: the system chain): ``sequence`` counts from 1
    within the chain without gaps, ``prev_hash`` is the hash of the event before, and ``hash``
    covers it and every field below (audit/chain.py). Written only by
    ``audit.services.record_event``.
    """

    # Indexed for time windows across orgs (the suspicious-access review).
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    # A plain value, not a live reference: deleting an org leaves its trail as it was (no
    # cascade, and no SET NULL, which would be an UPDATE of every event and break the chain).
    org = models.ForeignKey(
        "orgs.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    sequence = models.BigIntegerField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    request_id = models.CharField(max_length=128, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    hash_format = models.PositiveSmallIntegerField(default=FORMAT_VERSION)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Two writers can never give out the same number, even if the head lock failed.
            models.UniqueConstraint(fields=["org", "sequence"], name="audit_sequence_in_chain"),
            # NULLs are distinct in a unique index: the system chain needs its own.
            models.UniqueConstraint(
                fields=["sequence"],
                condition=models.Q(org__isnull=True),
                name="audit_sequence_in_system_chain",
            ),
        ]
        # Every filter the API and UI offer has an index (filter, org, sequence): equality on
        # the first two, and the index order is the page order, so a keyset page reads ~50
        # index entries however long the trail (tests/audit/test_query_plans.py checks each
        # with EXPLAIN on PostgreSQL). The filter comes first so that lookups across orgs
        # (a requestId, a jobId, a credential's id) use the same index.
        indexes = [
            models.Index(fields=["action", "org", "sequence"], name="audit_action"),
            models.Index(fields=["actor_type", "org", "sequence"], name="audit_actor_type"),
            models.Index(fields=["actor_id", "org", "sequence"], name="audit_actor_id"),
            models.Index(fields=["actor_label", "org", "sequence"], name="audit_actor_label"),
            models.Index(fields=["target_id", "org", "sequence"], name="audit_target"),
            models.Index(fields=["request_id", "org", "sequence"], name="audit_request"),
            models.Index(fields=["job_id", "org", "sequence"], name="audit_job"),
            # One org's time windows (its landing page, the review of one org).
            models.Index(fields=["org", "-occurred_at", "-id"], name="audit_org_time"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%dT%H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("audit events are append-only")

    def compute_hash(self) -> str:
        """The hash this event's fields call for (with its stored prev_hash)."""
        return event_hash(
            prev_hash=self.prev_hash,
            chain=chain_key(self.org_id),
            sequence=self.sequence,
            occurred_at=self.occurred_at,
            actor_type=self.actor_type,
            actor_id=self.actor_id,
            actor_label=self.actor_label,
            action=self.action,
            target_type=self.target_type,
            target_id=self.target_id,
            target_label=self.target_label,
            outcome=self.outcome,
            request_id=self.request_id,
            job_id=self.job_id,
            ip=self.ip,
            user_agent=self.user_agent,
            metadata=self.metadata,
        )


class AuditChainHead(models.Model):
    """The newest event of one chain. Every append locks this row first, so the events of one
    chain get consecutive sequence numbers and each links to the one before, whichever process
    writes them; chains of different orgs never wait on each other."""

    chain = models.CharField(max_length=36, primary_key=True)
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"{self.chain}@{self.sequence}"
