from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from orgs.models import ApiToken


class Tool(models.TextChoices):
    HTTP_REQUEST = "http_request", "HTTP request"


class Placement(models.TextChoices):
    HEADER = "header", "Request header"
    QUERY = "query", "Query parameter"
    BASIC_AUTH = "basic_auth", "HTTP basic auth"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    tool = models.CharField(max_length=32, choices=Tool.choices, default=Tool.HTTP_REQUEST)
    # Non-secret tool configuration (method, URL, headers). Secrets live in credentials and
    # reach the tool only through bindings; validation refuses secret-looking headers here.
    config = models.JSONField(default=dict, blank=True)
    # Who the agent is to django-guardian: per-credential `use_credential` grants are held by
    # this group, and the worker checks them just before it decrypts. A group, not a user: an
    # agent can never log in, hold a membership or reach Django admin.
    principal = models.OneToOneField(
        Group, on_delete=models.PROTECT, related_name="agent", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="agent_name_unique_in_org"),
        ]

    def __str__(self) -> str:
        return self.name


class CredentialBinding(models.Model):
    """A credential bound to one of an agent's named slots, and where the tool injects it."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="bindings")
    credential = models.ForeignKey(
        "credentials.Credential", on_delete=models.CASCADE, related_name="bindings"
    )
    slot = models.SlugField(max_length=64)
    placement = models.CharField(max_length=16, choices=Placement.choices)
    # Header name or query parameter name; the username for basic auth (empty: the secret
    # itself is "user:password").
    target = models.CharField(max_length=128, blank=True)
    template = models.CharField(max_length=256, default="{secret}")

    class Meta:
        ordering = ["slot"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "slot"], name="binding_slot_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.slot} -> {self.placement}:{self.target}"


class AgentRun(models.Model):
    """One run of an agent. Its id is the jobId (and the Celery task id)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    request_id = models.CharField(max_length=128, blank=True)
    queued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queued_by_token = models.ForeignKey(
        "agents.AgentToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(default=dict, blank=True)  # redacted before it is stored
    error = models.TextField(blank=True)  # redacted before it is stored

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["org", "agent", "-queued_at"], name="run_org_agent_time")]

    def __str__(self) -> str:
        return f"run {self.id} {self.status}"

    @property
    def job_id(self) -> str:
        return str(self.id)


class AgentToken(ApiToken):
    """An agent's API token: it may queue runs of its agent and read their status, nothing
    else. `org` repeats the agent's org so every lookup can be org-scoped."""

    org = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")

    class Meta(ApiToken.Meta):
        indexes = [models.Index(fields=["org", "agent", "-created_at"], name="agent_token_agent")]
