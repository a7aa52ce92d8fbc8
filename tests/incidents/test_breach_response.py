"""`manage.py breach_response`: the playbook as one command, resumable and idempotent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import override_settings

from agents.models import AgentToken
from agents.services import agent_token_issue
from audit.models import AuditEvent
from credentials.models import Credential, CredentialStatus
from credentials.services import credential_create, credential_replace_secret
from incidents.models import Incident
from tests.conftest import World
from tests.raw_storage import read_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def breached(world: World, canary):
    """acme's credentials under the old key v1; the new key v2 is configured and active."""
    with override_settings(AGENT_CREDENTIAL_ACTIVE_KEY="v1"):
        extra = credential_create(
            org=world.p.org, acting_user=world.p.member, name="member-own", secret=canary + "-2"
        )
        for credential in (world.credential, world.foreign_credential):
            credential_replace_secret(credential=credential, acting_user=None, secret=canary)
    for user in (world.p.owner, world.p.admin, world.p.member, world.p.auditor):
        user.email = f"{user.username}@acme.example"
        user.save()
    world.p.admin.email = ""  # one person without an address
    world.p.admin.save()
    return world, extra


def _run(*args: str, report_dir: Path | None = None) -> str:
    out = io.StringIO()
    extra = ["--report-dir", str(report_dir)] if report_dir else []
    call_command("breach_response", *args, *extra, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _acme(world: World):
    return Credential.objects.filter(org=world.p.org)


def test_the_dry_run_shows_the_plan_and_changes_nothing(breached, tmp_path):
    world, _ = breached
    before = (
        list(_acme(world).values_list("key_id", "status", "ciphertext")),
        AuditEvent.objects.count(),
        AgentToken.objects.filter(revoked_at__isnull=True).count(),
    )
    out = _run("--org", "acme", "--new-key", "v2", "--dry-run", report_dir=tmp_path)
    assert "1. rotate: would re-encrypt 2 credential(s) under local:v2" in out
    assert "local:v1: 2" in out
    assert "2. revoke_tokens: would revoke 1 active agent token(s)" in out
    assert "3. mark_compromised: would mark 2 credential(s) compromised" in out
    assert "4. notify: would mail 2 person(s) (1 without an email address: admin)" in out
    assert "Dry run: nothing was changed." in out
    after = (
        list(_acme(world).values_list("key_id", "status", "ciphertext")),
        AuditEvent.objects.count(),
        AgentToken.objects.filter(revoked_at__isnull=True).count(),
    )
    assert after == before
    assert not Incident.objects.exists()
    assert not list(tmp_path.iterdir())


def test_the_playbook_contains_the_org_and_leaves_the_others_alone(breached, tmp_path, canary):
    world, extra = breached
    envelopes = {c.id: read_envelope(c.id) for c in _acme(world)}
    foreign_before = read_envelope(world.foreign_credential.id)

    out = _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert "every step done" in out
    # 1. re-encrypted under the new key, with new data keys and payloads
    for credential in _acme(world):
        key_id, wrapped, ciphertext = read_envelope(credential.id)
        assert key_id == "local:v2"
        assert wrapped != envelopes[credential.id][1]
        assert ciphertext != envelopes[credential.id][2]
    # 2. tokens revoked; 3. credentials compromised
    assert not AgentToken.objects.filter(org=world.p.org, revoked_at__isnull=True).exists()
    assert set(_acme(world).values_list("status", flat=True)) == {CredentialStatus.COMPROMISED}
    # globex is not in scope
    assert read_envelope(world.foreign_credential.id) == foreign_before
    assert Credential.objects.get(pk=world.foreign_credential.pk).status == "active"
    assert AgentToken.objects.get(pk=world.foreign_token.pk).revoked_at is None
    # 4. who is told what: owners and admins everything, the creator their own
    sent = {m.to[0]: m for m in mail.outbox}
    assert set(sent) == {"owner@acme.example", "member@acme.example"}
    assert "billing" in sent["owner@acme.example"].body
    assert "member-own" in sent["owner@acme.example"].body
    assert "member-own" in sent["member@acme.example"].body
    assert "billing" not in sent["member@acme.example"].body  # not theirs
    for message in mail.outbox:
        assert canary not in f"{message.subject}\n{message.body}"
    # 5. the review is written, owner-readable only
    incident = Incident.objects.get()
    report = Path(incident.report_path)
    assert report.parent == tmp_path
    assert report.stat().st_mode & 0o777 == 0o600
    assert json.loads(report.read_text())["incident"] == str(incident.id)
    # 6. the incident and each step are in acme's trail
    trail = list(
        AuditEvent.objects.filter(action__startswith="incident.", org=world.p.org)
        .order_by("id")
        .values_list("action", "metadata__step")
    )
    assert trail == [
        ("incident.open", None),
        ("incident.step", "rotate"),
        ("incident.step", "revoke_tokens"),
        ("incident.step", "mark_compromised"),
        ("incident.step", "notify"),
        ("incident.step", "review_report"),
        ("incident.close", None),
    ]
    marks = AuditEvent.objects.filter(action="credential.mark_compromised")
    assert {e.metadata["incident"] for e in marks} == {str(incident.id)}
    assert marks.count() == 2
    assert extra.id  # the member's own credential was part of it


def test_running_it_again_does_no_harm(breached, tmp_path):
    world, extra = breached
    _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)
    # People reset a credential and issue a new token after the incident.
    credential_replace_secret(credential=extra, acting_user=world.p.member, secret="fresh-s3cr3t")
    agent_token_issue(agent=world.agent, name="after", acting_user=world.p.admin)
    events = AuditEvent.objects.count()
    mails = len(mail.outbox)

    out = _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert "nothing to do" in out
    assert Credential.objects.get(pk=extra.pk).status == "active"
    assert AgentToken.objects.get(name="after").revoked_at is None
    assert (AuditEvent.objects.count(), len(mail.outbox)) == (events, mails)


def test_an_interrupted_run_resumes_and_keeps_what_happened_since(breached, tmp_path):
    world, extra = breached
    # The mail server is down: steps 1-3 are done, step 4 fails.
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=9,  # discard: nothing listens
            EMAIL_TIMEOUT=2,
        ),
        pytest.raises(CommandError, match=r"Step 4 \(notify\) failed.*run the same command again"),
    ):
        _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)
    incident = Incident.objects.get()
    assert incident.closed_at is None
    assert set(incident.steps) == {"rotate", "revoke_tokens", "mark_compromised"}
    # Meanwhile someone resets their credential.
    credential_replace_secret(credential=extra, acting_user=world.p.member, secret="fresh-s3cr3t")

    out = _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert f"Resuming incident {incident.id}" in out
    incident.refresh_from_db()
    assert incident.closed_at is not None
    assert Credential.objects.get(pk=extra.pk).status == "active"  # not marked again
    assert Credential.objects.get(pk=world.credential.pk).status == "compromised"
    # Only what still needs a reset is mailed: the member already did theirs.
    assert [m.to for m in mail.outbox] == [["owner@acme.example"]]
    assert Incident.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "acme", "--new-key", "v9"], "new key local:v9 is not configured"),
        (["--org", "acme", "--new-key", "v1"], "the active key is local:v2"),
        (["--org", "nope", "--new-key", "v2"], "No organisation with slug 'nope'"),
        (["--org", "acme\x00", "--new-key", "v2"], "No organisation with slug"),
        (["--org", "acme", "--new-key", "v2"], "pass --yes"),  # no terminal, no --yes
    ],
)
def test_bad_input_is_refused_and_changes_nothing(breached, tmp_path, args, message):
    world, _ = breached
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message):
        _run(*args, report_dir=tmp_path)
    assert AuditEvent.objects.count() == events
    assert not Incident.objects.exists()
    assert set(_acme(world).values_list("key_id", flat=True)) == {"local:v1"}


def test_all_covers_every_organisation(breached, tmp_path):
    out = _run("--all", "--new-key", "v2", "--yes", report_dir=tmp_path)
    assert "all organisations" in out
    assert set(Credential.objects.values_list("status", flat=True)) == {"compromised"}
    assert not AgentToken.objects.filter(revoked_at__isnull=True).exists()
    incident = Incident.objects.get()
    assert incident.all_orgs
    assert AuditEvent.objects.filter(action="incident.close", org=None).exists()


def test_the_members_personal_tokens_stop_working_too(breached, tmp_path):
    """A personal token acts for its person: with a member's, someone could repoint an agent
    they may use and run it, and so receive the very secrets people reset after the breach."""
    from rest_framework.test import APIClient

    from orgs.services import personal_token_issue

    world, _ = breached
    _, members = personal_token_issue(user=world.p.member, name="laptop")
    _, outsiders = personal_token_issue(user=world.p.outsider, name="globex-only")

    def status(plaintext: str) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        return client.get("/api/orgs/").status_code

    assert status(members) == status(outsiders) == 200
    plan = _run("--org", "acme", "--new-key", "v2", "--dry-run", report_dir=tmp_path)
    assert "and 1 personal token(s) of its members" in plan

    _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert status(members) == 401
    assert status(outsiders) == 200  # globex's people are not in scope
    revoked = AuditEvent.objects.get(action="token.revoke", metadata__kind="personal")
    assert revoked.target_label == "member/laptop"
    step = AuditEvent.objects.get(action="incident.step", metadata__step="revoke_tokens")
    assert step.metadata["personal_revoked"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_credential_a_run_holds_at_that_moment_is_marked_too(breached):
    """A worker's claim locks the credential rows it decrypts (it records their last use)
    until it commits, longer with a KMS key that retries. Marking skipped locked rows and
    stopped at the first empty batch: the credential most in use, the one an attacker might be
    using right then, stayed active, and the step reported success. On PostgreSQL the row is
    really held by another connection here; SQLite has no row locks, so nothing is skipped."""
    import threading

    from django.db import connection, connections, transaction
    from django.utils import timezone

    from audit.services import SYSTEM
    from credentials.services import credentials_mark_compromised

    world, _ = breached
    wait = 30  # seconds before a step that never comes fails the test (no timing assertion)
    locked, stop_holding = threading.Event(), threading.Event()
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if postgresql else "SELECT 0")
        marker_pid = cursor.fetchone()[0]
    holder_saw: list[str] = []

    def holder() -> None:
        try:
            if not postgresql:
                return
            with transaction.atomic():
                # What the worker's claim does to a credential it decrypts.
                Credential.objects.filter(pk=world.credential.pk).update(
                    last_used_at=timezone.now()
                )
                locked.set()
                give_up = threading.Timer(wait, stop_holding.set)  # never hold it forever
                give_up.start()
                with connection.cursor() as cursor:
                    while not stop_holding.wait(0.01):
                        cursor.execute(
                            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                            [marker_pid],
                        )
                        row = cursor.fetchone()
                        if row and row[0] == "Lock":
                            holder_saw.append("marker waiting")
                            break  # commit: the marker may go on
                give_up.cancel()
        finally:
            locked.set()
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(wait)
        credentials_mark_compromised(
            org=world.p.org, secret_replaced_before=timezone.now(), actor=SYSTEM
        )
    finally:
        stop_holding.set()
        thread.join(wait)

    assert set(_acme(world).values_list("status", flat=True)) == {CredentialStatus.COMPROMISED}
    if postgresql:
        assert holder_saw == ["marker waiting"]


@pytest.mark.usefixtures("breached")
def test_the_report_never_writes_through_a_link_planted_at_its_path(tmp_path):
    """The report's name is known once the incident is (the first run prints it): someone who
    can write to the report directory could plant a link there to a file of the operator's,
    which the resumed run would overwrite. The report is written to a new file, 0600 from the
    start, that then takes the name."""
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=9,  # discard: nothing listens, so step 4 fails and the run stops
            EMAIL_TIMEOUT=2,
        ),
        pytest.raises(CommandError),
    ):
        _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)
    incident = Incident.objects.get()
    victim = tmp_path / "operators-file"
    victim.write_text("keep me")
    victim.chmod(0o644)
    planted = tmp_path / f"incident-{incident.id}-review.json"
    planted.symlink_to(victim)

    _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert victim.read_text() == "keep me"
    assert not planted.is_symlink()
    assert planted.stat().st_mode & 0o777 == 0o600
    assert json.loads(planted.read_text())["incident"] == str(incident.id)


def test_the_members_signed_in_sessions_end_too(breached, tmp_path, client):
    """Sessions are keyed by a value the database holds as it is (django_session): with a copy
    of the database, one of the breaches this playbook is for, anyone could sign in as any
    member who was signed in, repoint an agent they may use and receive the reset secrets."""
    from django.test import Client

    world, _ = breached
    member, outsider = Client(), Client()
    member.force_login(world.p.member)
    outsider.force_login(world.p.outsider)
    assert member.get("/orgs/acme/").status_code == 200
    assert outsider.get("/orgs/globex/").status_code == 200

    _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert member.get("/orgs/acme/").status_code == 302  # to the sign-in page
    assert outsider.get("/orgs/globex/").status_code == 200  # not in scope
    step = AuditEvent.objects.get(action="incident.step", metadata__step="revoke_tokens")
    assert step.metadata["sessions_ended"] == 1


def test_a_resumed_run_does_not_sign_people_out_again(breached, tmp_path):
    from django.test import Client

    world, _ = breached
    with (
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=9,  # discard: nothing listens, so step 4 fails and the run stops
            EMAIL_TIMEOUT=2,
        ),
        pytest.raises(CommandError),
    ):
        _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)
    resetting = Client()  # signs in again to reset a credential
    resetting.force_login(world.p.member)

    _run("--org", "acme", "--new-key", "v2", "--yes", report_dir=tmp_path)

    assert resetting.get("/orgs/acme/").status_code == 200
