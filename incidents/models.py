from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.utils import timezone


class Incident(models.Model):
    """One run of the breach playbook, so that running it again resumes it instead of
    starting over (and, for instance, marking credentials compromised that people have
    already reset since)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # None with all_orgs: every organisation.
    org = models.ForeignKey(
        "orgs.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    all_orgs = models.BooleanField(default=False)
    target_key_id = models.CharField(max_length=128)
    opened_at = models.DateTimeField(default=timezone.now)
    opened_by = models.CharField(max_length=200)
    closed_at = models.DateTimeField(null=True, blank=True)
    # step name -> {"at": ISO time, "counts": {...}} once the step has completed
    steps: models.JSONField[dict[str, Any]] = models.JSONField(default=dict, blank=True)
    report_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(all_orgs=True, org__isnull=True)
                | models.Q(all_orgs=False, org__isnull=False),
                name="incident_scope_is_one_org_or_all",
            ),
        ]

    def __str__(self) -> str:
        return f"incident {self.id}"

    @property
    def scope_label(self) -> str:
        return "all organisations" if self.all_orgs else f"organisation {self.org}"
