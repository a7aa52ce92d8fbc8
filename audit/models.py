from __future__ import annotations

from typing import Any, NoReturn

from django.db import models


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
    """One thing that happened. Append-only: the ORM refuses update and delete."""

    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Kept when an org is deleted: the trail outlives what it describes.
    org = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    job_id = models.CharField(max_length=64, blank=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["org", "-occurred_at", "-id"], name="audit_org_time"),
            models.Index(fields=["org", "action", "-occurred_at"], name="audit_org_action_time"),
            models.Index(fields=["org", "target_id"], name="audit_org_target"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%dT%H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("audit events are append-only")
