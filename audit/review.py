"""Suspicious-access review: patterns in the audit trail that a person should look at.

Every detector reads the trail alone (never the live tables): the trail is what is
hash-chained, so the review's evidence is what `audit verify` vouches for, and it still holds
after the credentials, agents or tokens it names are gone. Grants and bindings are replayed
from their own events (credential.grant / credential.grant_revoke, agent.create /
agent.update), so "was this agent granted and bound at that moment?" has an answer for any
moment in the trail.

A finding names its detector, who, a one-line summary and the evidence rows. Thresholds are
parameters (`Thresholds`) so tests and operators can tune them.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from audit.models import ActorType, AuditEvent, Outcome

EVIDENCE_LIMIT = 50  # rows kept per finding; the count says how many there were


@dataclass(frozen=True)
class Thresholds:
    denied_burst: int = 10  # denied requests by one actor ...
    denied_burst_window: datetime.timedelta = datetime.timedelta(minutes=5)  # ... within this
    cross_org_probes: int = 3  # 404s on other orgs' ids or orgs by one actor
    metrics_failures: int = 5  # refused /api/metrics scrapes from one address or actor
    volume_factor: float = 5.0  # decrypts in the window vs the credential's own baseline
    volume_minimum: int = 20  # never flag fewer decrypts than this
    baseline_windows: int = 7  # the baseline: this many windows of the same length before


@dataclass
class Finding:
    detector: str
    title: str
    org_id: str | None
    actor: str
    summary: str
    evidence: list[AuditEvent] = field(default_factory=list)
    evidence_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "title": self.title,
            "org_id": self.org_id,
            "actor": self.actor,
            "summary": self.summary,
            "evidence_count": self.evidence_count,
            "evidence": [event_as_dict(e) for e in self.evidence],
        }


def event_as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "sequence": getattr(event, "sequence", None),
        "occurred_at": event.occurred_at.isoformat(),
        "org_id": str(event.org_id) if event.org_id else None,
        "action": event.action,
        "outcome": event.outcome,
        "actor": _actor(event),
        "target": f"{event.target_type}:{event.target_label or event.target_id}",
        "target_id": event.target_id,
        "request_id": event.request_id,
        "job_id": event.job_id,
        "ip": event.ip,
        "metadata": event.metadata,  # redacted when it was recorded
    }


def _actor(event: AuditEvent) -> str:
    who = event.actor_label or event.actor_id
    if event.actor_type == ActorType.ANONYMOUS:
        return f"anonymous@{event.ip or '?'}"
    return f"{event.actor_type}:{who}" if who else str(event.actor_type)


def _finding(
    detector: str,
    title: str,
    events: list[AuditEvent],
    summary: str,
    *,
    actor: str | None = None,
) -> Finding:
    first = events[0]
    return Finding(
        detector=detector,
        title=title,
        org_id=str(first.org_id) if first.org_id else None,
        actor=actor or _actor(first),
        summary=summary,
        evidence=events[:EVIDENCE_LIMIT],
        evidence_count=len(events),
    )


@dataclass(frozen=True)
class Window:
    since: datetime.datetime
    until: datetime.datetime
    org_id: Any = None  # None: every organisation and the system chain

    def events(self, *, since: datetime.datetime | None = None) -> QuerySet[AuditEvent]:
        events = AuditEvent.objects.filter(
            occurred_at__gte=since or self.since, occurred_at__lt=self.until
        )
        if self.org_id is not None:
            events = events.filter(org_id=self.org_id)
        return events.order_by("occurred_at", "id")


# --- detectors ---------------------------------------------------------------------------


def denied_bursts(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """Many refusals (403/404/401, denied decrypts) by one actor within a few minutes."""
    by_actor: dict[tuple[Any, str], list[AuditEvent]] = defaultdict(list)
    for event in window.events().filter(outcome=Outcome.DENIED):
        by_actor[(event.org_id, _actor(event))].append(event)
    for (_, actor), events in by_actor.items():
        burst = _densest(events, limits.denied_burst_window)
        if len(burst) >= limits.denied_burst:
            minutes = limits.denied_burst_window.total_seconds() / 60
            yield _finding(
                "denied_burst",
                "Burst of denied accesses",
                burst,
                f"{len(burst)} denied requests within {minutes:g} min",
                actor=actor,
            )


def cross_org_probing(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """404s on other organisations' ids (or on organisations the actor is not in). These are
    recorded in the probed org's trail, so the review reads every chain unless --org."""
    by_actor: dict[str, list[AuditEvent]] = defaultdict(list)
    probes = window.events().filter(
        action="access.denied", metadata__reason__in=["cross_org", "not_a_member"]
    )
    for event in probes:
        by_actor[_actor(event)].append(event)
    for actor, events in by_actor.items():
        if len(events) >= limits.cross_org_probes:
            orgs = {str(e.org_id) for e in events}
            yield _finding(
                "cross_org_probing",
                "Cross-organisation probing",
                events,
                f"{len(events)} requests for other organisations' objects, in {len(orgs)} org(s)",
                actor=actor,
            )


def decrypts_outside_runs(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """Decrypts not tied to a running job of an agent bound to that credential."""
    decrypts = list(window.events().filter(action="credential.decrypt", outcome=Outcome.SUCCESS))
    if not decrypts:
        return
    jobs = {e.job_id for e in decrypts if e.job_id}
    queued = {
        e.target_id: e
        for e in AuditEvent.objects.filter(action="agent_run.queue", target_id__in=jobs)
    }
    finished = {
        e.target_id: e
        for e in AuditEvent.objects.filter(action="agent_run.finish", target_id__in=jobs)
    }
    bindings = _BindingHistory.for_agents({e.actor_id for e in decrypts})
    for event in decrypts:
        reason = _why_outside(event, queued, finished, bindings)
        if reason:
            yield _finding(
                "decrypt_outside_run",
                "Decrypt outside an agent run",
                [event],
                f"credential {event.target_label or event.target_id} decrypted: {reason}",
            )


def _why_outside(
    event: AuditEvent,
    queued: dict[str, AuditEvent],
    finished: dict[str, AuditEvent],
    bindings: _BindingHistory,
) -> str:
    if event.actor_type != ActorType.AGENT:
        return f"by {_actor(event)}, not by an agent"
    if not event.job_id:
        return "with no job id"
    queue = queued.get(event.job_id)
    if queue is None or queue.org_id != event.org_id:
        return f"for job {event.job_id}, which the trail never queued in this organisation"
    if (queue.metadata or {}).get("agent_id") != event.actor_id:
        return f"by agent {event.actor_label}, but job {event.job_id} was queued for another agent"
    if queue.occurred_at > event.occurred_at:
        return f"before job {event.job_id} was queued"
    end = finished.get(event.job_id)
    if end is not None and end.occurred_at < event.occurred_at:
        return f"after job {event.job_id} had finished"
    if not bindings.bound(event.actor_id, event.target_id, at=event):
        return f"by agent {event.actor_label}, which the trail shows was not bound to it"
    return ""


def decrypts_by_ungranted_agents(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """A credential decrypted by an agent that, according to the trail's grant events, held
    no use grant on it at that moment."""
    decrypts = list(
        window.events().filter(
            action="credential.decrypt", outcome=Outcome.SUCCESS, actor_type=ActorType.AGENT
        )
    )
    if not decrypts:
        return
    grants = _GrantHistory.for_credentials({e.target_id for e in decrypts})
    for event in decrypts:
        if not grants.granted(event.target_id, event.actor_id, at=event):
            yield _finding(
                "decrypt_without_grant",
                "Decrypt by an agent without a grant",
                [event],
                f"agent {event.actor_label} decrypted {event.target_label or event.target_id} "
                f"holding no use grant on it",
            )


def revoked_token_use(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """Use of a revoked or expired token: someone still holds it."""
    by_token: dict[str, list[AuditEvent]] = defaultdict(list)
    refusals = list(window.events().filter(action="token.use_denied"))
    if window.org_id is not None:
        # A personal token acts for its person in every org, so its refusals are in the
        # system trail: an org's review takes those of the people who were its members then.
        members = _MembershipHistory.for_org(window.org_id)
        personal = AuditEvent.objects.filter(
            org__isnull=True,
            action="token.use_denied",
            metadata__kind="personal",
            occurred_at__gte=window.since,
            occurred_at__lt=window.until,
        ).order_by("occurred_at", "id")
        refusals += [e for e in personal if members.member(e.actor_id, at=e)]
    for event in refusals:
        by_token[event.target_id].append(event)
    for events in by_token.values():
        reasons = sorted({str((e.metadata or {}).get("reason")) for e in events})
        addresses = sorted({e.ip or "?" for e in events})
        yield _finding(
            "revoked_token_use",
            "Revoked or expired token used",
            events,
            f"token {events[0].target_label} ({', '.join(reasons)}) presented {len(events)} "
            f"time(s) from {', '.join(addresses)}",
        )


def decrypt_volume_spikes(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """Decrypts of one credential far above its own recent baseline."""
    length = window.until - window.since
    try:
        baseline_since = window.since - length * limits.baseline_windows
    except OverflowError:  # a window of centuries: the baseline is everything before it
        baseline_since = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    counts: dict[str, int] = defaultdict(int)
    recent: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in window.events(since=baseline_since).filter(
        action="credential.decrypt", outcome=Outcome.SUCCESS
    ):
        if event.occurred_at >= window.since:
            recent[event.target_id].append(event)
        else:
            counts[event.target_id] += 1
    for credential_id, events in recent.items():
        baseline = counts[credential_id] / limits.baseline_windows
        threshold = max(limits.volume_minimum, limits.volume_factor * baseline)
        if len(events) >= threshold:
            yield _finding(
                "decrypt_volume",
                "Decrypt volume far above baseline",
                events,
                f"{len(events)} decrypts of {events[0].target_label or credential_id} against a "
                f"baseline of {baseline:.1f} per window of the same length",
                actor=f"credential:{events[0].target_label or credential_id}",
            )


def metrics_auth_failures(window: Window, limits: Thresholds) -> Iterator[Finding]:
    """Repeated refused scrapes of /api/metrics: someone probing for the metrics token."""
    by_source: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in window.events().filter(action="metrics.access_denied"):
        by_source[_actor(event)].append(event)
    for actor, events in by_source.items():
        if len(events) >= limits.metrics_failures:
            yield _finding(
                "metrics_auth_failures",
                "Repeated metrics authentication failures",
                events,
                f"{len(events)} refused metrics scrapes",
                actor=actor,
            )


Detector = Callable[[Window, Thresholds], Iterator[Finding]]

DETECTORS: dict[str, Detector] = {
    "denied_burst": denied_bursts,
    "cross_org_probing": cross_org_probing,
    "decrypt_outside_run": decrypts_outside_runs,
    "decrypt_without_grant": decrypts_by_ungranted_agents,
    "revoked_token_use": revoked_token_use,
    "decrypt_volume": decrypt_volume_spikes,
    "metrics_auth_failures": metrics_auth_failures,
}


def review(
    *,
    since: datetime.datetime,
    until: datetime.datetime,
    org_id: Any = None,
    limits: Thresholds | None = None,
    detectors: Iterable[str] | None = None,
) -> list[Finding]:
    window = Window(since=since, until=until, org_id=org_id)
    chosen = list(detectors) if detectors is not None else list(DETECTORS)
    findings: list[Finding] = []
    for name in chosen:
        findings.extend(DETECTORS[name](window, limits or Thresholds()))
    return findings


# --- replaying grants and bindings from the trail ------------------------------------------


def _densest(events: list[AuditEvent], span: datetime.timedelta) -> list[AuditEvent]:
    """The largest run of events (time-ordered) that fits in `span`."""
    best: list[AuditEvent] = []
    start = 0
    for end, event in enumerate(events):
        while event.occurred_at - events[start].occurred_at > span:
            start += 1
        if end - start + 1 > len(best):
            best = events[start : end + 1]
    return best


def _before(event: AuditEvent, at: AuditEvent) -> bool:
    # The trail's own order: events of one org chain are totally ordered by id.
    return (event.occurred_at, event.pk) < (at.occurred_at, at.pk)


class _GrantHistory:
    """Use grants of agents on credentials, as the trail's grant events tell them."""

    def __init__(self, events: list[AuditEvent]) -> None:
        self._by_pair: dict[tuple[str, str], list[AuditEvent]] = defaultdict(list)
        for event in events:
            grantee = str((event.metadata or {}).get("grantee_id"))
            self._by_pair[(event.target_id, grantee)].append(event)

    @classmethod
    def for_credentials(cls, credential_ids: set[str]) -> _GrantHistory:
        events = AuditEvent.objects.filter(
            action__in=["credential.grant", "credential.grant_revoke"],
            target_id__in=credential_ids,
            metadata__grantee_type="agent",
            metadata__permission="use",
        ).order_by("occurred_at", "id")
        return cls(list(events))

    def granted(self, credential_id: str, agent_id: str, *, at: AuditEvent) -> bool:
        state = False
        for event in self._by_pair.get((credential_id, agent_id), []):
            if not _before(event, at):
                break
            state = event.action == "credential.grant"
        return state


class _MembershipHistory:
    """Who was a member of one org, replayed from its membership events."""

    def __init__(self, events: list[AuditEvent]) -> None:
        self._by_user: dict[str, list[AuditEvent]] = defaultdict(list)
        for event in events:
            self._by_user[event.target_id].append(event)

    @classmethod
    def for_org(cls, org_id: Any) -> _MembershipHistory:
        events = AuditEvent.objects.filter(
            org_id=org_id, action__in=["membership.add", "membership.remove"]
        ).order_by("occurred_at", "id")
        return cls(list(events))

    def member(self, user_id: str, *, at: AuditEvent) -> bool:
        state = False
        for event in self._by_user.get(user_id, []):
            if not _before(event, at):
                break
            state = event.action == "membership.add"
        return state


class _BindingHistory:
    """Which credentials each agent was bound to, replayed from agent.create / agent.update."""

    def __init__(self, events: list[AuditEvent]) -> None:
        self._by_agent: dict[str, list[AuditEvent]] = defaultdict(list)
        for event in events:
            self._by_agent[event.target_id].append(event)

    @classmethod
    def for_agents(cls, agent_ids: set[str]) -> _BindingHistory:
        events = AuditEvent.objects.filter(
            Q(action="agent.create") | Q(action="agent.update", metadata__has_key="bindings"),
            target_id__in=agent_ids,
        ).order_by("occurred_at", "id")
        return cls(list(events))

    def bound(self, agent_id: str, credential_id: str, *, at: AuditEvent) -> bool:
        current: set[str] = set()
        for event in self._by_agent.get(agent_id, []):
            if not _before(event, at):
                break
            if "bindings" in (event.metadata or {}):
                current = {str(b.get("credential_id")) for b in event.metadata["bindings"]}
        return credential_id in current
