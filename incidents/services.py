"""The breach playbook, step by step. Each step calls the containment service of the app that
owns the data (DESIGN.md) and is idempotent on its own terms, relative to the moment the
incident was opened:

1. rotate: re-encrypt every credential in scope under the target key (new data key and
   payload), resuming from the rows' own key ids;
2. revoke_tokens: revoke every agent token issued before the incident opened, and the
   personal tokens of the scope's members (they act for their person, in every org), and
   end the members' signed-in sessions;
3. mark_compromised: mark every credential whose secret predates the incident compromised
   (one reset since then is left alone);
4. notify: mail the affected people which credentials to reset (once per incident);
5. review_report: write the suspicious-access review of the last 30 days to a file.

Each completed step is recorded on the Incident and as an `incident.step` audit event with
its counts, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import smtplib
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import timezone

from agents.models import AgentToken
from agents.services import agent_tokens_revoke_all
from audit.review import review
from audit.services import Actor, Target, record_event
from credentials import rotation
from credentials.models import Credential, CredentialStatus
from credentials.selectors import credential_list
from credentials.services import credentials_mark_compromised
from incidents.models import Incident
from orgs.models import Membership, Organization, Role
from orgs.selectors import personal_tokens_active_for_members
from orgs.services import personal_tokens_revoke_for_members, sessions_end_for_members

STEPS = ("rotate", "revoke_tokens", "mark_compromised", "notify", "review_report")
REVIEW_PERIOD = datetime.timedelta(days=30)


@dataclass
class Scope:
    org: Organization | None  # None: every organisation

    @property
    def label(self) -> str:
        return "all organisations" if self.org is None else f"organisation {self.org.slug}"

    def orgs(self) -> list[Organization]:
        return [self.org] if self.org is not None else list(Organization.objects.order_by("slug"))


@dataclass
class Plan:
    """What a run would do now (the dry run shows it; a real run does it)."""

    scope: Scope
    target_key_id: str
    rows_to_rotate: dict[str, int]  # key id -> rows in scope not under the target key
    rows_under_target: int
    active_tokens: int
    active_personal_tokens: int  # of the scope's members
    credentials_to_mark: int
    recipients: dict[str, list[str]] = field(default_factory=dict)  # username -> credentials
    recipients_without_address: list[str] = field(default_factory=list)


def plan(*, scope: Scope, target_key_id: str, cut_off: datetime.datetime) -> Plan:
    credentials = _credentials(scope)
    by_key: dict[str, int] = defaultdict(int)
    for key_id in credentials.exclude(key_id=target_key_id).values_list("key_id", flat=True):
        by_key[key_id] += 1
    tokens = AgentToken.objects.filter(revoked_at__isnull=True, created_at__lt=cut_off)
    if scope.org is not None:
        tokens = tokens.filter(org=scope.org)
    to_mark = credentials.filter(status=CredentialStatus.ACTIVE, secret_updated_at__lt=cut_off)
    recipients, without = _recipients(scope, credentials.filter(secret_updated_at__lt=cut_off))
    return Plan(
        scope=scope,
        target_key_id=target_key_id,
        rows_to_rotate=dict(sorted(by_key.items())),
        rows_under_target=credentials.filter(key_id=target_key_id).count(),
        active_tokens=tokens.count(),
        active_personal_tokens=personal_tokens_active_for_members(
            org=scope.org, issued_before=cut_off
        ).count(),
        credentials_to_mark=to_mark.count(),
        recipients=recipients,
        recipients_without_address=without,
    )


def _credentials(scope: Scope) -> Any:
    if scope.org is not None:
        return credential_list(org=scope.org)
    return Credential.objects.defer("wrapped_data_key", "ciphertext")


def _recipients(scope: Scope, credentials: Any) -> tuple[dict[str, list[str]], list[str]]:
    """Who must reset what: every owner and admin of the org all of its credentials, and each
    credential's creator their own. Names only: never a secret, never an envelope."""
    wanted: dict[User, set[str]] = defaultdict(set)
    by_org: dict[Any, list[str]] = defaultdict(list)
    for credential in credentials.select_related("created_by", "org"):
        label = f"{credential.org.slug}/{credential.name}"
        by_org[credential.org_id].append(label)
        if credential.created_by is not None and credential.created_by.is_active:
            wanted[credential.created_by].add(label)
    managers = Membership.objects.filter(
        org_id__in=list(by_org), role__in=[Role.OWNER, Role.ADMIN], user__is_active=True
    ).select_related("user")
    for membership in managers:
        wanted[membership.user].update(by_org[membership.org_id])
    with_address = {
        user.get_username(): sorted(labels) for user, labels in wanted.items() if user.email
    }
    without = sorted(user.get_username() for user in wanted if not user.email)
    return dict(sorted(with_address.items())), without


# --- the incident record -------------------------------------------------------------------


def incident_open(*, scope: Scope, target_key_id: str, actor: Actor) -> Incident:
    with transaction.atomic():
        incident = Incident.objects.create(
            org=scope.org,
            all_orgs=scope.org is None,
            target_key_id=target_key_id,
            opened_by=actor.label,
        )
        record_event(
            action="incident.open",
            org=scope.org,
            actor=actor,
            target=_target(incident),
            metadata={"scope": scope.label, "target_key_id": target_key_id},
        )
    return incident


def incident_latest(*, scope: Scope) -> Incident | None:
    incidents = Incident.objects.filter(all_orgs=scope.org is None)
    if scope.org is not None:
        incidents = incidents.filter(org=scope.org)
    return incidents.order_by("-opened_at").first()


def _target(incident: Incident) -> Target:
    return Target("incident", str(incident.id), incident.scope_label)


def _record_step(incident: Incident, step: str, counts: dict[str, Any], actor: Actor) -> None:
    with transaction.atomic():
        incident.steps = {
            **incident.steps,
            step: {"at": timezone.now().isoformat(), "counts": counts},
        }
        Incident.objects.filter(pk=incident.pk).update(steps=incident.steps)
        record_event(
            action="incident.step",
            org=incident.org,
            actor=actor,
            target=_target(incident),
            metadata={"step": step, **counts},
        )


def incident_close(*, incident: Incident, actor: Actor) -> None:
    with transaction.atomic():
        incident.closed_at = timezone.now()
        Incident.objects.filter(pk=incident.pk).update(closed_at=incident.closed_at)
        record_event(
            action="incident.close",
            org=incident.org,
            actor=actor,
            target=_target(incident),
            metadata={"steps": sorted(incident.steps)},
        )


# --- the steps -----------------------------------------------------------------------------


class StepFailedError(Exception):
    """A step could not complete; the message says why and that running again resumes."""


def step_rotate(
    *,
    incident: Incident,
    actor: Actor,
    on_batch: Callable[[rotation.BatchProgress], None] | None = None,
) -> dict[str, Any]:
    result = rotation.rotate(
        target_key_id=incident.target_key_id,
        reencrypt=True,  # a data key that leaked (a worker's memory) must stop opening anything
        org_id=incident.org_id,
        on_batch=on_batch,
    )
    counts = {
        "target_key_id": incident.target_key_id,
        "reencrypted": result.rewrapped,
        "changed_concurrently": result.concurrent,
        "failed": len(result.failures),
        "remaining": result.remaining,
        "rows_before": result.rows_before,
        "rows_after": result.rows_after,
    }
    if result.interrupted or result.error or result.remaining:
        reason = (
            "interrupted"
            if result.interrupted
            else result.error or f"{result.remaining} credential(s) still on other keys"
        )
        failures = "; ".join(f"{f.credential_id}: {f.reason}" for f in result.failures[:5])
        raise StepFailedError(
            f"rotation did not complete ({reason}{'; ' + failures if failures else ''})"
        )
    _record_step(incident, "rotate", counts, actor)
    return counts


def step_revoke_tokens(*, incident: Incident, actor: Actor) -> dict[str, Any]:
    revoked = {
        org.slug: agent_tokens_revoke_all(
            org=org, acting_user=None, actor=actor, issued_before=incident.opened_at
        )
        for org in Scope(incident.org).orgs()
    }
    # A personal token acts for its person in every org: with a member's, someone could repoint
    # an agent that person may use and receive the secrets reset after this incident.
    personal = personal_tokens_revoke_for_members(
        org=incident.org, actor=actor, issued_before=incident.opened_at
    )
    # So could anyone holding a member's session, and a copy of the database holds them all.
    # Once: a resumed run must not sign out again the people resetting their credentials.
    done = incident.steps.get("revoke_tokens")
    sessions = (
        done["counts"].get("sessions_ended", 0)
        if done
        else sessions_end_for_members(org=incident.org)
    )
    counts = {
        "revoked": sum(revoked.values()),
        "by_org": {k: v for k, v in revoked.items() if v},
        "personal_revoked": personal,
        "sessions_ended": sessions,
    }
    _record_step(incident, "revoke_tokens", counts, actor)
    return counts


def step_mark_compromised(*, incident: Incident, actor: Actor) -> dict[str, Any]:
    marked = {
        org.slug: credentials_mark_compromised(
            org=org,
            secret_replaced_before=incident.opened_at,
            actor=actor,
            incident_id=str(incident.id),
        )
        for org in Scope(incident.org).orgs()
    }
    counts = {"marked": sum(marked.values()), "by_org": {k: v for k, v in marked.items() if v}}
    _record_step(incident, "mark_compromised", counts, actor)
    return counts


def step_notify(*, incident: Incident, actor: Actor) -> dict[str, Any]:
    """Mail every affected person the credentials they must reset (once per incident: a
    resumed run does not mail twice)."""
    if "notify" in incident.steps:
        return dict(incident.steps["notify"]["counts"], already_sent=True)
    scope = Scope(incident.org)
    compromised = _credentials(scope).filter(
        status=CredentialStatus.COMPROMISED, secret_updated_at__lt=incident.opened_at
    )
    recipients, without = _recipients(scope, compromised)
    users = {u.get_username(): u for u in User.objects.filter(username__in=list(recipients))}
    messages = [
        _notification(incident, users[username], labels) for username, labels in recipients.items()
    ]
    try:
        with get_connection() as connection:
            sent = connection.send_messages(messages) if messages else 0
    except (OSError, smtplib.SMTPException) as exc:
        # Nothing is recorded as sent, so running again mails everyone (a mail server that
        # fails half-way may have delivered some: a duplicate beats a missing warning).
        raise StepFailedError(f"mail could not be sent ({type(exc).__name__}: {exc})") from None
    counts = {
        "mailed": sent or 0,
        "recipients": sorted(recipients),
        "without_address": without,
    }
    _record_step(incident, "notify", counts, actor)
    return counts


def _notification(incident: Incident, user: User, labels: list[str]) -> EmailMessage:
    lines = [
        f"Hello {user.get_username()},",
        "",
        "A security incident was declared in the Everesthood credential vault "
        f"({incident.scope_label}, incident {incident.id}).",
        "The credentials below are marked compromised: agents will not use them until you",
        "submit a new secret. Reset each one at its provider first (revoke the old key,",
        "issue a new one), then replace it in the vault:",
        "",
    ]
    for label in labels:
        slug, _, name = label.partition("/")
        lines.append(f"  - {name} ({slug}): {settings.SITE_URL}/orgs/{slug}/credentials/")
    lines += [
        "",
        "This message never contains a secret. If you did not expect it, tell your",
        "organisation's owner.",
    ]
    return EmailMessage(
        subject=f"[Everesthood] Security incident: {len(labels)} credential(s) to reset",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only from the first byte (names, addresses
    and ids of people: not for everyone on the host), through a new file that then takes the
    name: a link planted at `path` is replaced, never written through."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def step_review_report(*, incident: Incident, actor: Actor, report_dir: Path) -> dict[str, Any]:
    now = timezone.now()
    since = now - REVIEW_PERIOD
    findings = review(since=since, until=now, org_id=incident.org_id)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"incident-{incident.id}-review.json"
    report = {
        "incident": str(incident.id),
        "scope": incident.scope_label,
        "period": {"since": since.isoformat(), "until": now.isoformat()},
        "findings": [f.as_dict() for f in findings],
    }
    _write_private(path, json.dumps(report, indent=2, default=str))
    by_detector: dict[str, int] = defaultdict(int)
    for finding in findings:
        by_detector[finding.detector] += 1
    counts = {"findings": len(findings), "by_detector": dict(by_detector), "report": str(path)}
    Incident.objects.filter(pk=incident.pk).update(report_path=str(path))
    incident.report_path = str(path)
    _record_step(incident, "review_report", counts, actor)
    return counts
