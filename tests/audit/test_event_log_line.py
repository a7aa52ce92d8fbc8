"""Each committed event is logged with its chain position and hash (an anchor kept outside the
database); an event that rolled back with its change is never logged."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from audit.chain import chain_key
from audit.services import SYSTEM, record_event
from audit.verification import Anchor, verify_chain

pytestmark = pytest.mark.django_db


def _audit_lines(json_logs) -> list[dict]:
    return [line["audit"] for line in map(json.loads, json_logs.lines) if "audit" in line]


def test_a_committed_event_is_logged_with_its_chain_position_and_hash(
    personas, json_logs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        event = record_event(action="test.logged", org=personas.org, actor=SYSTEM)

    (line,) = [entry for entry in _audit_lines(json_logs) if entry["action"] == "test.logged"]
    assert line == {
        "action": "test.logged",
        "outcome": "success",
        "target_id": "",
        "chain": chain_key(personas.org.id),
        "sequence": event.sequence,
        "hash": event.hash,
    }
    anchor = Anchor(sequence=line["sequence"], hash=line["hash"])
    assert verify_chain(line["chain"], anchors=(anchor,)).ok


def test_an_event_rolled_back_with_its_change_is_never_logged(
    personas, json_logs, django_capture_on_commit_callbacks
):
    def failing_change() -> None:
        with transaction.atomic():
            record_event(action="test.rolled_back", org=personas.org, actor=SYSTEM)
            raise RuntimeError("the change failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        failing_change()

    assert [e for e in _audit_lines(json_logs) if e["action"] == "test.rolled_back"] == []
