"""`audit review`: each detector, with an event sequence that must trigger it and one that
must not. Time is pinned with time-machine; events are written by the real services where a
real flow exists (a run, a grant, a binding), and by record_event where the detector is about
events other code writes (denials, token refusals, metrics scrapes)."""

from __future__ import annotations

import datetime
import io
import json

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.services import (
    BindingSpec,
    agent_create,
    agent_grantee,
    agent_run_create,
    agent_run_execute,
    agent_update,
)
from audit.models import ActorType, AuditEvent, Outcome
from audit.review import Thresholds, review
from audit.services import Actor, Target, record_event
from config import context
from credentials.crypto import worker_role
from credentials.services import credential_create, credential_grant, credential_revoke_grant

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2026, 11, 20, 12, 0, tzinfo=datetime.UTC)


def _findings(detector: str, *, since=T0 - datetime.timedelta(hours=1), until=None, **limits):
    until = until or T0 + datetime.timedelta(days=1)
    return review(since=since, until=until, detectors=[detector], limits=Thresholds(**limits))


def _at(moment):
    return time_machine.travel(moment, tick=False)


# --- denied bursts ----------------------------------------------------------------------


def _denied(personas, n, *, every=datetime.timedelta(seconds=10), ip="203.0.113.5"):
    actor = Actor.for_user(personas.member)
    for i in range(n):
        with _at(T0 + i * every), context.bound(ip=ip):
            record_event(
                action="access.denied",
                org=personas.org,
                actor=actor,
                outcome=Outcome.DENIED,
                metadata={"reason": "role", "attempted": "POST api:credentials"},
            )


def test_ten_denials_within_five_minutes_are_a_burst(personas):
    _denied(personas, 10)
    (finding,) = _findings("denied_burst")
    assert finding.actor == "user:member"
    assert finding.evidence_count == 10
    assert "10 denied requests within 5 min" in finding.summary


def test_nine_denials_are_not_a_burst(personas):
    _denied(personas, 9)
    assert _findings("denied_burst") == []


def test_ten_denials_spread_over_an_hour_are_not_a_burst(personas):
    _denied(personas, 10, every=datetime.timedelta(minutes=6))
    assert _findings("denied_burst") == []


# --- cross-org probing --------------------------------------------------------------------


def test_probes_of_other_orgs_ids_through_the_api_are_flagged(personas, api_for, world):
    member = api_for(personas.member)
    with _at(T0):
        for _ in range(3):
            assert (
                member.get(f"/api/orgs/acme/credentials/{world.foreign_credential.id}/").status_code
                == 404
            )
    (finding,) = _findings("cross_org_probing")
    assert finding.actor == "user:member"
    assert finding.org_id == str(personas.other_org.id)  # recorded where it was probed
    assert finding.evidence_count == 3


def test_missing_ids_in_ones_own_org_are_not_probing(personas, api_for):
    member = api_for(personas.member)
    with _at(T0):
        for n in range(5):
            member.get(f"/api/orgs/acme/credentials/00000000-0000-4000-8000-00000000000{n}/")
    assert _findings("cross_org_probing") == []


# --- decrypts and runs ---------------------------------------------------------------------


@pytest.fixture
def bound_agent(personas, endpoint, canary):
    with _at(T0 - datetime.timedelta(hours=2)):
        credential = credential_create(
            org=personas.org, acting_user=personas.owner, name="billing", secret=canary
        )
        agent = agent_create(
            org=personas.org,
            acting_user=personas.owner,
            name="invoicer",
            config={"method": "GET", "url": endpoint.url},
            bindings=[
                BindingSpec("auth", credential.id, "header", "Authorization", "Bearer {secret}")
            ],
        )
    return credential, agent


def _run_for_real(agent, moment):
    """The worker's own code path, in this process: queue, claim, decrypt, call, finish."""
    with _at(moment):
        run = agent_run_create(agent=agent, acting_user=None)
    with (
        _at(moment + datetime.timedelta(milliseconds=50)),
        worker_role(),
        context.bound(job_id=str(run.id)),
    ):
        agent_run_execute(run_id=run.id)
    return run


def _decrypt_event(credential, agent, *, job_id="", actor=None):
    with context.bound(job_id=job_id):
        record_event(
            action="credential.decrypt",
            org=credential.org,
            actor=actor or Actor(ActorType.AGENT, str(agent.id), agent.name),
            target=Target("credential", str(credential.id), credential.name),
            metadata={"key_id": credential.key_id},
        )


def test_a_real_run_raises_no_decrypt_finding(bound_agent):
    _, agent = bound_agent
    run = _run_for_real(agent, T0)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert AuditEvent.objects.filter(action="credential.decrypt", job_id=str(run.id)).exists()
    assert _findings("decrypt_outside_run") == []
    assert _findings("decrypt_without_grant") == []


def test_a_decrypt_with_no_job_or_after_the_job_ended_is_flagged(bound_agent):
    credential, agent = bound_agent
    run = _run_for_real(agent, T0)
    with _at(T0 + datetime.timedelta(minutes=1)):
        _decrypt_event(credential, agent)  # no job at all
        _decrypt_event(credential, agent, job_id=str(run.id))  # that job had finished
        _decrypt_event(credential, agent, actor=Actor(ActorType.SYSTEM, "", "shell"))
    reasons = sorted(f.summary for f in _findings("decrypt_outside_run"))
    assert len(reasons) == 3
    assert any("with no job id" in r for r in reasons)
    assert any("after job" in r and "had finished" in r for r in reasons)
    assert any("not by an agent" in r for r in reasons)


def test_a_decrypt_by_an_agent_the_trail_shows_unbound_is_flagged(bound_agent, personas):
    credential, agent = bound_agent
    with _at(T0):
        agent_update(agent=agent, acting_user=personas.owner, bindings=[])
        run = agent_run_create(agent=agent, acting_user=None)
    with _at(T0 + datetime.timedelta(seconds=1)):
        _decrypt_event(credential, agent, job_id=str(run.id))
    (finding,) = _findings("decrypt_outside_run")
    assert "was not bound to it" in finding.summary


def test_a_decrypt_after_the_grant_was_revoked_is_flagged(bound_agent, personas):
    credential, agent = bound_agent
    _run_for_real(agent, T0)  # granted (binding by the owner granted it): fine
    with _at(T0 + datetime.timedelta(minutes=1)):
        credential_revoke_grant(
            credential=credential, permission="use", grantee=agent_grantee(agent), acting_user=None
        )
        run = agent_run_create(agent=agent, acting_user=None)
    with _at(T0 + datetime.timedelta(minutes=2)):
        _decrypt_event(credential, agent, job_id=str(run.id))
    (finding,) = _findings("decrypt_without_grant")
    assert "holding no use grant" in finding.summary
    assert finding.evidence[0].job_id == str(run.id)
    # Granted again: a later decrypt is fine.
    with _at(T0 + datetime.timedelta(minutes=3)):
        credential_grant(
            credential=credential, permission="use", grantee=agent_grantee(agent), acting_user=None
        )
    _run_for_real(agent, T0 + datetime.timedelta(minutes=4))
    assert len(_findings("decrypt_without_grant")) == 1


# --- tokens, volume, metrics ---------------------------------------------------------------


def test_use_of_a_revoked_token_is_flagged_once_per_token(personas):
    actor = Actor(ActorType.AGENT_TOKEN, "tok-1", "invoicer/ci")
    with _at(T0):
        for ip in ("198.51.100.1", "198.51.100.2"):
            with context.bound(ip=ip):
                record_event(
                    action="token.use_denied",
                    org=personas.org,
                    actor=actor,
                    target=Target("agent_token", "tok-1", "invoicer/ci"),
                    outcome=Outcome.DENIED,
                    metadata={"reason": "revoked", "kind": "agent"},
                )
    (finding,) = _findings("revoked_token_use")
    assert "presented 2 time(s) from 198.51.100.1, 198.51.100.2" in finding.summary
    assert "revoked" in finding.summary


def test_an_orgs_review_includes_its_members_revoked_personal_tokens(personas):
    """A personal token acts for its person in every org, so its refusals are in the system
    trail: an org's review (and the report of an org's breach_response) read only the org's
    and missed a leaked member's token still being tried."""
    from rest_framework.test import APIClient

    from orgs.services import personal_token_issue, personal_token_revoke

    def present_revoked(user) -> None:
        token, plaintext = personal_token_issue(user=user, name="laptop")
        personal_token_revoke(token=token, acting_user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        assert client.get("/api/orgs/").status_code == 401

    present_revoked(personas.member)  # acme's
    present_revoked(personas.outsider)  # globex's only
    now = timezone.now()
    since, until = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def findings(org):
        return review(since=since, until=until, org_id=org.id, detectors=["revoked_token_use"])

    acme, globex = findings(personas.org), findings(personas.other_org)

    assert [f.actor for f in acme] == ["user:member"]
    assert "member/laptop" in acme[0].summary
    assert [f.actor for f in globex] == ["user:outsider"]


def test_no_revoked_token_use_no_finding(personas):
    with _at(T0):
        record_event(action="token.issue", org=personas.org, actor=Actor.for_user(personas.admin))
    assert _findings("revoked_token_use") == []


def _decrypts(credential, agent, n, day):
    for i in range(n):
        with _at(T0 - datetime.timedelta(days=day) + datetime.timedelta(minutes=i)):
            _decrypt_event(credential, agent, job_id="")


@pytest.mark.parametrize(("today", "flagged"), [(25, True), (15, False)])
def test_decrypt_volume_far_above_the_credentials_own_baseline(bound_agent, today, flagged):
    credential, agent = bound_agent
    for day in range(1, 8):  # a week of two decrypts a day
        _decrypts(credential, agent, 2, day)
    _decrypts(credential, agent, today, 0)
    window = {"since": T0 - datetime.timedelta(minutes=1), "until": T0 + datetime.timedelta(days=1)}
    findings = review(detectors=["decrypt_volume"], limits=Thresholds(), **window)
    assert bool(findings) is flagged
    if flagged:
        assert f"{today} decrypts of billing" in findings[0].summary


@pytest.mark.parametrize(("refusals", "flagged"), [(5, True), (4, False)])
def test_repeated_metrics_scrape_refusals(refusals, flagged):
    with _at(T0), context.bound(ip="192.0.2.77"):
        for _ in range(refusals):
            record_event(
                action="metrics.access_denied",
                org=None,
                actor=Actor(ActorType.ANONYMOUS),
                outcome=Outcome.DENIED,
                metadata={"reason": "wrong_token"},
            )
    findings = _findings("metrics_auth_failures")
    assert bool(findings) is flagged
    if flagged:
        assert findings[0].actor == "anonymous@192.0.2.77"


# --- the command ---------------------------------------------------------------------------


def test_the_command_prints_findings_with_evidence_and_json(personas):
    _denied(personas, 12, every=datetime.timedelta(seconds=1))
    with _at(T0 + datetime.timedelta(minutes=5)):
        out = io.StringIO()
        call_command("audit", "review", "--since", "1h", stdout=out)
        text = out.getvalue()
        assert "1 finding(s)" in text
        assert "[denied_burst] Burst of denied accesses: user:member" in text
        assert text.count("access.denied denied by user:member") == 12
        assert "from 203.0.113.5" in text
        out = io.StringIO()
        call_command("audit", "review", "--since", "1h", "--org", "globex", "--json", stdout=out)
        assert json.loads(out.getvalue())["findings"] == []


def test_names_cannot_rewrite_the_operators_terminal(personas, api_for):
    """An agent's name is anyone's text (a member picks it), and the review prints it: control
    characters in it must not reach the terminal, where they could erase or overwrite the
    findings around it (ESC [1A ESC [2K: up a line, clear it)."""
    from rest_framework.test import APIClient

    from agents.services import agent_token_issue, agent_token_revoke

    evil = "nightly\x1b[1A\x1b[2K\r\u202eall clear"
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="k", secret="s3cr3t-value"
    )
    created = api_for(personas.member).post(
        "/api/orgs/acme/agents/",
        {
            "name": evil,
            "config": {"method": "GET", "url": "https://api.example.com/"},
            "bindings": [
                {
                    "slot": "a",
                    "credential": str(credential.id),
                    "placement": "header",
                    "target": "X-Key",
                }
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    from agents.models import Agent

    agent = Agent.objects.get(pk=created.json()["id"])
    token, plaintext = agent_token_issue(agent=agent, name="ci", acting_user=personas.member)
    agent_token_revoke(token=token, acting_user=personas.member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/orgs/").status_code == 401

    out = io.StringIO()
    call_command("audit", "review", "--since", "1h", "--detector", "revoked_token_use", stdout=out)
    text = out.getvalue()
    assert "[revoked_token_use]" in text
    assert not [ch for ch in text if ch not in "\n" and not ch.isprintable()]
    assert "nightly\\x1b[1A\\x1b[2K\\x0d\\u202eall clear/ci" in text  # shown, escaped


@pytest.mark.parametrize("since", ["yesterday", "0h", "-1d", "24", "999999d"])
def test_a_bad_since_is_refused(since):
    with pytest.raises(CommandError, match="--since"):
        call_command("audit", "review", "--since", since, stdout=io.StringIO())


def test_an_org_slug_with_a_nul_is_refused_like_an_unknown_one(personas):
    with pytest.raises(CommandError, match="No organisation with slug"):
        call_command("audit", "review", "--org", "acme\x00", stdout=io.StringIO())


def test_a_long_since_reads_back_to_the_first_event(personas):
    # 99999 days fit, but the decrypt-volume baseline (7 windows more) would reach back
    # before the year 1: it starts at the beginning of time instead of crashing.
    _denied(personas, 10)
    with _at(T0 + datetime.timedelta(minutes=5)):
        out = io.StringIO()
        call_command("audit", "review", "--since", "99999d", stdout=out)
    assert "1 finding(s)" in out.getvalue()


def test_now_is_the_end_of_the_window(personas):
    _denied(personas, 10)
    with _at(T0 + datetime.timedelta(days=3)):
        out = io.StringIO()
        call_command("audit", "review", "--since", "24h", stdout=out)
    assert "0 finding(s)" in out.getvalue()
    assert timezone.now() > T0  # time-machine let go
