"""Every event is appended to its org's hash chain, and its hash is of what the database keeps."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from audit.chain import GENESIS_HASH, SYSTEM_CHAIN, chain_key
from audit.models import ActorType, AuditChainHead, AuditEvent
from audit.services import SYSTEM, Actor, Target, record_event
from config import context

pytestmark = pytest.mark.django_db


def _chain(org) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org=org).order_by("sequence"))


def test_each_org_has_its_own_gapless_chain_and_system_events_have_theirs(personas):
    for number in range(3):
        record_event(action=f"acme.{number}", org=personas.org, actor=SYSTEM)
        record_event(action=f"globex.{number}", org=personas.other_org, actor=SYSTEM)
    record_event(action="system.0", org=None, actor=SYSTEM)

    for org in (personas.org, personas.other_org):
        events = _chain(org)  # the setup's own events (org created, members added), then ours
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [e.action for e in events[-3:]] == [f"{org.slug}.{n}" for n in range(3)]
        assert events[0].prev_hash == GENESIS_HASH
        assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
        head = AuditChainHead.objects.get(chain=chain_key(org.id))
        assert (head.sequence, head.hash) == (len(events), events[-1].hash)
    system = AuditEvent.objects.get(org__isnull=True, action="system.0")
    assert AuditChainHead.objects.get(chain=SYSTEM_CHAIN).hash == system.hash


def test_the_hash_is_of_the_values_the_database_gives_back(personas):
    """JSON key order and number forms, microseconds, IPv6 spellings, overlong text: what is
    read back must hash to the stored value on SQLite and on PostgreSQL (jsonb, inet)."""
    awkward_metadata = {
        "zeta": 1,
        "alpha": {"nested_b": [3, 2, 1], "nested_a": None},
        "one_point_zero": 1.0,
        "big_float": 1e20,
        "huge_float": 1.5e300,
        "small": 1.5e-7,
        "third": 1 / 3,
        "negative_zero": -0.0,
        "big_int": 2**70,
        "tuple": (1, "two"),
        "unicode": "Zürich ✓ 東京",
        "true": True,
    }
    cases = [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("not an address", None),
    ]
    for raw_ip, stored_ip in cases:
        with context.bound(
            request_id="req-chain-00001", job_id="job-1", ip=raw_ip, user_agent="ua " * 300
        ):
            written = record_event(
                action="test.awkward",
                org=personas.org,
                actor=Actor(ActorType.USER, "1", "x" * 500),
                target=Target("credential", "c" * 100, "label"),
                metadata=awkward_metadata,
            )
        event = AuditEvent.objects.get(pk=written.pk)
        assert event.ip == stored_ip
        assert len(event.actor_label) == 200
        assert len(event.user_agent) == 512
        assert event.occurred_at == written.occurred_at  # microseconds survive
        assert event.compute_hash() == written.hash == event.hash
    assert event.metadata["one_point_zero"] == 1
    assert event.metadata["big_float"] == 10**20
    assert event.metadata["tuple"] == [1, "two"]


def test_the_hash_covers_every_field(personas):
    event = record_event(
        action="test.fields",
        org=personas.org,
        actor=Actor(ActorType.USER, "1", "member"),
        target=Target("credential", "c-1", "name"),
        metadata={"kind": "api_key"},
    )
    original = event.compute_hash()
    changes = {
        "action": "test.other",
        "actor_type": ActorType.AGENT,
        "actor_id": "2",
        "actor_label": "someone",
        "target_type": "agent",
        "target_id": "c-2",
        "target_label": "other",
        "outcome": "failure",
        "request_id": "req-other-0001",
        "job_id": "job-2",
        "ip": "10.0.0.9",
        "user_agent": "curl",
        "metadata": {"kind": "password"},
        "sequence": 2,
        "prev_hash": "1" * 64,
        "org_id": personas.other_org.id,
    }
    for name, value in changes.items():
        copy = AuditEvent.objects.get(pk=event.pk)
        setattr(copy, name, value)
        assert copy.compute_hash() != original, name
    copy = AuditEvent.objects.get(pk=event.pk)
    copy.occurred_at += dt.timedelta(microseconds=1)
    assert copy.compute_hash() != original


def test_an_event_that_fails_rolls_back_with_the_change_and_leaves_no_gap(personas):
    def failing_change() -> None:
        with transaction.atomic():
            record_event(action="test.rolled_back", org=personas.org, actor=SYSTEM)
            raise RuntimeError("the change failed")

    record_event(action="test.kept", org=personas.org, actor=SYSTEM)
    with pytest.raises(RuntimeError, match="the change failed"):
        failing_change()
    record_event(action="test.after", org=personas.org, actor=SYSTEM)

    (kept, after) = _chain(personas.org)[-2:]
    assert (kept.action, after.action) == ("test.kept", "test.after")
    assert after.sequence == kept.sequence + 1
    assert after.prev_hash == kept.hash


def test_metadata_json_cannot_hold_is_refused_not_stored(personas):
    with pytest.raises(ValueError, match="JSON compliant"):
        record_event(
            action="test.nan", org=personas.org, actor=SYSTEM, metadata={"x": float("nan")}
        )
    assert not AuditEvent.objects.filter(action="test.nan").exists()
