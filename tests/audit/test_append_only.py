from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import ActorType, AuditEvent
from audit.services import SYSTEM, Actor, Target, record_event
from config import context
from tests.audit.tamper import postgresql_only

pytestmark = pytest.mark.django_db


def test_record_event_takes_ids_from_the_context(personas):
    with context.bound(
        request_id="req-audit-00001", job_id="job-1", ip="10.0.0.1", user_agent="pytest"
    ):
        event = record_event(
            action="credential.create",
            org=personas.org,
            actor=Actor(ActorType.USER, "1", "member"),
            target=Target("credential", "c", "n"),
            metadata={"token": "opaque", "kind": "api_key"},
        )
    event.refresh_from_db()
    assert (event.request_id, event.job_id, event.ip, event.user_agent) == (
        "req-audit-00001",
        "job-1",
        "10.0.0.1",
        "pytest",
    )
    assert event.metadata == {"token": "[REDACTED]", "kind": "api_key"}


def test_the_orm_refuses_to_change_or_delete_events(personas):
    event = record_event(action="x", org=personas.org, actor=SYSTEM)
    event.action = "y"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(action="y")
    with pytest.raises(TypeError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "x"


def test_audit_api_is_for_trail_readers_and_filters(personas, api_for):
    record_event(action="a.one", org=personas.org, actor=SYSTEM)
    with context.bound(request_id="req-filter-00001"):
        record_event(action="a.two", org=personas.org, actor=SYSTEM)
    record_event(action="a.one", org=personas.other_org, actor=SYSTEM)
    auditor = api_for(personas.auditor)
    everything = auditor.get("/api/orgs/acme/audit/").json()
    actions = [e["action"] for e in everything["results"]]
    assert actions[:2] == ["a.two", "a.one"]  # newest first, then the setup's own events
    assert actions.count("a.one") == 1  # globex's is not shown
    filtered = auditor.get("/api/orgs/acme/audit/?request_id=req-filter-00001").json()
    assert [e["action"] for e in filtered["results"]] == ["a.two"]
    assert api_for(personas.member).get("/api/orgs/acme/audit/").status_code == 403
    assert api_for(personas.outsider).get("/api/orgs/acme/audit/").status_code == 404


def _raw(sql: str, params: list[int] | None = None) -> None:
    # A savepoint, so the refused statement does not abort the test's transaction.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@postgresql_only
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'y' WHERE id = %s",
        "UPDATE audit_auditevent SET org_id = NULL WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id <> %s",  # matches no row: refused all the same
        "TRUNCATE audit_auditevent",
    ],
)
def test_postgresql_refuses_raw_updates_deletes_and_truncate(personas, sql):
    event = record_event(action="x", org=personas.org, actor=SYSTEM)
    before = list(AuditEvent.objects.order_by("id").values_list("id", "org_id", "action", "hash"))

    with pytest.raises(DatabaseError, match="audit events are append-only"):
        _raw(sql, [event.pk] if "%s" in sql else [])

    after = list(AuditEvent.objects.order_by("id").values_list("id", "org_id", "action", "hash"))
    assert after == before


@postgresql_only
def test_the_trigger_does_not_stand_in_the_way_of_appending(personas):
    for _ in range(3):
        record_event(action="x", org=personas.org, actor=SYSTEM)
    assert AuditEvent.objects.filter(org=personas.org, action="x").count() == 3
