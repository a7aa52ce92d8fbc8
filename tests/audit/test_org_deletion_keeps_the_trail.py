"""Deleting an organisation leaves its audit trail whole: no cascade, no SET NULL (an UPDATE
the PostgreSQL trigger would refuse, and a rewrite of every hash), still verifiable."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from audit.chain import chain_key
from audit.models import AuditEvent
from audit.services import SYSTEM, record_event
from credentials.services import credential_create

pytestmark = pytest.mark.django_db


def test_deleting_an_org_keeps_its_events_with_their_org_id_and_chain(personas, canary):
    org_id = personas.org.id
    credential_create(org=personas.org, acting_user=personas.owner, name="api", secret=canary)
    record_event(action="test.before_delete", org=personas.org, actor=SYSTEM)
    before = list(AuditEvent.objects.filter(org_id=org_id).values_list("id", "hash"))

    personas.org.delete()  # cascades to memberships and credentials, not to the trail

    after = list(AuditEvent.objects.filter(org_id=org_id).values_list("id", "hash"))
    assert after == before
    out = io.StringIO()
    call_command("audit", "verify", "--org", str(org_id), stdout=out)
    assert f"deleted org ({chain_key(org_id)}): {len(before)} events" in out.getvalue()
    assert "intact" in out.getvalue()


def test_the_admin_still_lists_a_deleted_orgs_events(personas, client):
    record_event(action="test.before_delete", org=personas.org, actor=SYSTEM)
    personas.org.delete()
    operator = User.objects.create_superuser(username="operator", password="pw-operator-1")
    client.force_login(operator)

    response = client.get("/admin/audit/auditevent/")

    assert response.status_code == 200
    assert "test.before_delete" in response.content.decode()
