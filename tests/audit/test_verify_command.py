"""`manage.py audit verify`: intact chains pass; rows altered, deleted, inserted or reordered
behind the ORM's back (raw SQL, trigger off: the database owner's powers) are each caught,
naming the first event that does not match."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.chain import chain_key, event_hash
from audit.models import ActorType, AuditChainHead, AuditEvent
from audit.services import Actor, Target, record_event
from config import context
from tests.audit.tamper import execute

pytestmark = pytest.mark.django_db

COLUMNS = (
    "occurred_at",
    "org_id",
    "sequence",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "outcome",
    "request_id",
    "job_id",
    "ip",
    "user_agent",
    "metadata",
    "hash_format",
    "prev_hash",
    "hash",
)


def insert_copy(source_id: int, **overrides: str) -> None:
    """INSERT a copy of one event with some columns replaced by SQL expressions."""
    select = ", ".join(overrides.get(column, column) for column in COLUMNS)
    columns = ", ".join(COLUMNS)
    sql = f"INSERT INTO audit_auditevent ({columns}) SELECT {select} FROM audit_auditevent"  # noqa: S608
    execute(f"{sql} WHERE id = %s", [source_id])


@dataclass
class Verified:
    ok: bool
    out: str
    error: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out)


def verify(*args: str) -> Verified:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit", "verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return Verified(False, out.getvalue(), str(exc))
    return Verified(True, out.getvalue(), err.getvalue())


def first_break(*args: str) -> dict[str, Any]:
    result = verify("--org", "acme", "--json", *args)
    assert not result.ok
    (chain,) = result.report["chains"]
    return chain["first_break"]


@pytest.fixture
def trail(personas) -> list[AuditEvent]:
    """Six events in acme's chain (and some in globex's and the system chain)."""
    events = []
    for number in range(6):
        with context.bound(request_id=f"req-verify-{number:04d}", ip="192.0.2.7", user_agent="t"):
            events.append(
                record_event(
                    action="credential.decrypt",
                    org=personas.org,
                    actor=Actor(ActorType.AGENT, "a-1", "fetcher"),
                    target=Target("credential", f"c-{number}", "billing"),
                    metadata={"key_id": "local:v1", "n": number},
                )
            )
        record_event(action="other.org", org=personas.other_org, actor=Actor(ActorType.SYSTEM))
    record_event(action="system.event", org=None, actor=Actor(ActorType.SYSTEM))
    return events


def _org_param(org_id: Any) -> Any:
    return org_id.hex if connection.vendor == "sqlite" else org_id


def _renumber(org_id: Any, *, from_sequence: int, by: int) -> None:
    # Two steps, so the unique (org, sequence) index never sees two rows with one number.
    org = _org_param(org_id)
    execute(
        "UPDATE audit_auditevent SET sequence = sequence + 1000000 "
        "WHERE org_id = %s AND sequence >= %s",
        [org, from_sequence],
    )
    execute(
        "UPDATE audit_auditevent SET sequence = sequence - 1000000 + %s "
        "WHERE org_id = %s AND sequence >= 1000000",
        [by, org],
    )


def test_intact_chains_verify_and_the_command_exits_zero(trail):
    acme_events = AuditEvent.objects.filter(org=trail[0].org_id).count()
    system_events = AuditEvent.objects.filter(org__isnull=True).count()
    chains = AuditChainHead.objects.count()

    result = verify()

    assert result.ok, result.error
    assert f"acme ({chain_key(trail[0].org_id)}): {acme_events} events" in result.out
    assert "globex (" in result.out
    assert f"system: {system_events} events" in result.out
    assert result.out.count(": intact") == chains
    assert f"{chains} chain(s), {AuditEvent.objects.count()} events checked" in result.out


def test_the_json_report_names_each_chain_and_its_head(trail):
    report = verify("--json").report

    assert report["ok"] is True
    acme = next(c for c in report["chains"] if c["name"].startswith("acme"))
    assert acme["chain"] == chain_key(trail[0].org_id)
    last = trail[-1].sequence  # the setup's own events come first
    assert (acme["events"], acme["head_sequence"], acme["head_hash"]) == (
        last,
        last,
        trail[-1].hash,
    )
    assert acme["first_break"] is None


@pytest.mark.parametrize(
    "column",
    ["action", "actor_id", "target_id", "outcome", "request_id", "metadata", "ip", "occurred_at"],
)
def test_an_altered_field_is_named_as_altered(trail, column):
    victim = trail[2]
    value: Any = {
        "action": "credential.view",
        "actor_id": "someone-else",
        "target_id": "c-other",
        "outcome": "denied",
        "request_id": "req-forged-0001",
        "metadata": '{"key_id": "local:v1", "n": 20}',
        "ip": "198.51.100.1",
        "occurred_at": connection.ops.adapt_datetimefield_value(
            victim.occurred_at - dt.timedelta(microseconds=1)
        ),
    }[column]

    sql = f"UPDATE audit_auditevent SET {column} = %s WHERE id = %s"  # noqa: S608 - fixed names
    touched = execute(sql, [value, victim.pk])

    assert touched == 1
    found = first_break()
    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "altered",
        victim.sequence,
        victim.pk,
    )


def test_a_deleted_event_is_named_as_missing(trail):
    execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[3].pk])

    found = first_break()

    assert (found["reason"], found["sequence"]) == ("missing", trail[3].sequence)
    assert found["event_id"] == trail[4].pk  # the event after the gap
    assert f"#{trail[3].sequence} is missing" in found["detail"]


def test_events_deleted_from_the_end_are_caught_by_the_chain_head(trail):
    execute("DELETE FROM audit_auditevent WHERE id IN (%s, %s)", [trail[4].pk, trail[5].pk])

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "missing",
        trail[4].sequence,
        None,
    )
    assert f"#{trail[4].sequence}-#{trail[5].sequence} is missing" in found["detail"]


def test_a_deletion_hidden_by_renumbering_is_named_as_missing(trail):
    execute("DELETE FROM audit_auditevent WHERE id = %s", [trail[1].pk])
    _renumber(trail[0].org_id, from_sequence=trail[2].sequence, by=-1)
    head = AuditChainHead.objects.filter(chain=chain_key(trail[0].org_id))
    head.update(sequence=trail[5].sequence - 1)

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "missing",
        trail[1].sequence,
        trail[2].pk,
    )
    assert f"it was event #{trail[2].sequence}" in found["detail"]


def test_an_event_added_after_the_head_is_named_as_inserted(trail):
    insert_copy(trail[5].pk, sequence="sequence + 1", hash="'forged'")
    forged = AuditEvent.objects.get(org=trail[0].org, sequence=trail[5].sequence + 1)

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "inserted",
        forged.sequence,
        forged.pk,
    )


def test_an_event_inserted_in_the_middle_is_named_as_inserted(trail):
    at = trail[2].sequence
    _renumber(trail[0].org_id, from_sequence=at, by=1)
    insert_copy(trail[1].pk, sequence=str(at), hash="'forged'")
    forged = AuditEvent.objects.get(org=trail[0].org, sequence=at)

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == ("inserted", at, forged.pk)


def test_an_insertion_with_a_correctly_computed_hash_is_still_named(trail):
    """The attacker knows the format: the forged event links and hashes correctly, but the
    event after it still chains to the one before it."""
    at = trail[2].sequence
    _renumber(trail[0].org_id, from_sequence=at, by=1)
    model = trail[1]
    forged_hash = event_hash(
        prev_hash=model.hash,
        chain=chain_key(model.org_id),
        sequence=at,
        occurred_at=model.occurred_at,
        actor_type=model.actor_type,
        actor_id=model.actor_id,
        actor_label=model.actor_label,
        action="credential.view",
        target_type=model.target_type,
        target_id=model.target_id,
        target_label=model.target_label,
        outcome=model.outcome,
        request_id=model.request_id,
        job_id=model.job_id,
        ip=model.ip,
        user_agent=model.user_agent,
        metadata=model.metadata,
    )
    insert_copy(
        model.pk,
        sequence=str(at),
        action="'credential.view'",
        prev_hash="hash",
        hash=f"'{forged_hash}'",
    )
    forged = AuditEvent.objects.get(org=model.org, sequence=at)
    assert forged.compute_hash() == forged.hash

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == ("inserted", at, forged.pk)


def test_two_events_swapped_are_named_as_reordered(trail):
    third, fourth = trail[2], trail[3]
    execute("UPDATE audit_auditevent SET sequence = -1 WHERE id = %s", [third.pk])
    execute("UPDATE audit_auditevent SET sequence = %s WHERE id = %s", [third.sequence, fourth.pk])
    execute("UPDATE audit_auditevent SET sequence = %s WHERE id = %s", [fourth.sequence, third.pk])

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "reordered",
        third.sequence,
        fourth.pk,
    )


def test_an_event_rewritten_with_a_recomputed_hash_breaks_the_next_link(trail):
    victim = AuditEvent.objects.get(pk=trail[2].pk)
    victim.action = "credential.view"
    execute(
        "UPDATE audit_auditevent SET action = %s, hash = %s WHERE id = %s",
        ["credential.view", victim.compute_hash(), victim.pk],
    )

    found = first_break()

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "broken-link",
        trail[3].sequence,
        trail[3].pk,
    )
    assert f"does not chain to #{trail[2].sequence}" in found["detail"]


def test_a_removed_chain_head_is_reported(trail):
    AuditChainHead.objects.filter(chain=chain_key(trail[0].org_id)).delete()

    found = first_break()

    assert found["reason"] == "head-mismatch"


def test_a_chain_rewritten_consistently_is_caught_by_an_anchor_kept_elsewhere(trail):
    kept_elsewhere = f"{trail[3].sequence}:{trail[3].hash}"
    assert verify("--org", "acme", "--anchor", kept_elsewhere).ok
    # Rewrite event 4 onwards and the head, every hash recomputed: the chain itself is
    # consistent again, and only a hash recorded outside the database shows it.
    previous = trail[2].hash
    for original in trail[3:]:
        event = AuditEvent.objects.get(pk=original.pk)
        event.action, event.prev_hash = "credential.view", previous
        previous = event.compute_hash()
        execute(
            "UPDATE audit_auditevent SET action = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [event.action, event.prev_hash, previous, event.pk],
        )
    AuditChainHead.objects.filter(chain=chain_key(trail[0].org_id)).update(hash=previous)
    assert verify("--org", "acme").ok

    found = first_break("--anchor", kept_elsewhere)

    assert (found["reason"], found["sequence"], found["event_id"]) == (
        "anchor-mismatch",
        trail[3].sequence,
        trail[3].pk,
    )


def test_the_text_report_names_the_first_broken_event_and_exits_non_zero(trail):
    execute("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [trail[1].pk])

    result = verify()

    chains = AuditChainHead.objects.count()
    assert not result.ok
    assert f"BROKEN at #{trail[1].sequence} (event id {trail[1].pk}): altered" in result.out
    assert f"1 of {chains} audit chain(s) broken: acme" in result.error
    assert result.out.count(": intact") == chains - 1  # the other chains are still checked


def test_a_deleted_orgs_trail_is_still_verified_by_its_id(trail, personas):
    org_id = personas.org.id
    events = AuditEvent.objects.filter(org_id=org_id).count()
    personas.org.delete()

    assert verify("--org", str(org_id)).ok
    assert f"deleted org ({org_id}): {events} events" in verify().out


def test_bad_arguments_are_refused_with_a_clear_error(trail):
    assert "No organisation with slug 'nope'" in verify("--org", "nope").error
    assert "No organisation with slug" in verify("--org", "acme\x00").error  # not a traceback
    assert "SEQUENCE:HASH" in verify("--org", "acme", "--anchor", "3:abc").error
    assert "--anchor needs one chain" in verify("--anchor", f"1:{'a' * 64}").error
