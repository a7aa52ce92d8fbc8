"""Refusals at the org boundary look the same from outside and are all audited inside:
another org's object answers exactly like a missing one, and the victim org's trail says who
probed it."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditEvent
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _denied() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="access.denied").order_by("id"))


def test_another_orgs_credential_answers_exactly_like_a_missing_one(world: World, api_for):
    client = api_for(world.p.member)
    foreign = client.get(f"/api/orgs/acme/credentials/{world.foreign_credential.id}/")
    missing = client.get(f"/api/orgs/acme/credentials/{uuid.uuid4()}/")
    malformed = client.get("/api/orgs/acme/credentials/not-a-uuid/")
    assert foreign.status_code == missing.status_code == malformed.status_code == 404
    assert foreign.content == missing.content == malformed.content
    assert {k: v for k, v in foreign.items() if k != "X-Request-ID"} == {
        k: v for k, v in missing.items() if k != "X-Request-ID"
    }
    cross, as_missing, not_found, bad = _denied()
    # The probe of globex's id is in globex's trail, saying who probed it from where ...
    assert (cross.org_id, cross.metadata["reason"], cross.metadata["from_org"]) == (
        world.p.other_org.id,
        "cross_org",
        "acme",
    )
    assert (cross.actor_label, cross.target_id) == ("member", str(world.foreign_credential.id))
    assert cross.metadata["attempted"] == "GET api:credential"
    # ... and in acme's exactly as a missing id would be (acme must not learn it exists).
    assert (as_missing.org_id, as_missing.metadata["reason"]) == (world.p.org.id, "not_found")
    assert as_missing.target_id == str(world.foreign_credential.id)
    assert (not_found.org_id, not_found.metadata["reason"]) == (world.p.org.id, "not_found")
    assert (bad.org_id, bad.metadata["reason"]) == (world.p.org.id, "not_found")


def _probers_view(client, org: str, probed_id: str) -> list[dict]:
    """What the prober's own org trail says about an id: the rows and every field of them that
    could differ between probes (not the event's own id, time, hash or request)."""
    rows = client.get(f"/api/orgs/{org}/audit/", {"target_id": probed_id}).json()["results"]
    varying = {"id", "sequence", "occurred_at", "request_id", "prev_hash", "hash", "target_id"}
    return [{k: v for k, v in row.items() if k not in varying} for row in rows]


def test_the_probers_own_trail_cannot_tell_another_orgs_id_from_a_missing_one(
    world: World, api_for
):
    """The prober reads their own org's trail (an owner or auditor may): a probe of another
    org's id must leave there exactly what a probe of a missing id leaves, or its absence
    would tell them the id exists elsewhere."""
    globex_owner = api_for(world.p.outsider)  # owner of globex, stranger to acme
    for probed in (str(world.credential.id), str(uuid.uuid4())):
        assert globex_owner.get(f"/api/orgs/globex/credentials/{probed}/").status_code == 404
    exists_elsewhere = _probers_view(globex_owner, "globex", str(world.credential.id))
    missing_ids = [
        e.target_id
        for e in AuditEvent.objects.filter(org=world.p.other_org, action="access.denied")
        if e.target_id != str(world.credential.id)
    ]
    (missing_id,) = missing_ids
    missing = _probers_view(globex_owner, "globex", missing_id)
    assert len(exists_elsewhere) == len(missing) == 1
    assert exists_elsewhere == missing
    # The org that owns the id still learns who probed it.
    assert AuditEvent.objects.filter(
        org=world.p.org, metadata__reason="cross_org", target_id=str(world.credential.id)
    ).exists()


def test_an_org_you_are_not_in_answers_like_one_that_does_not_exist(world: World, api_for):
    client = api_for(world.p.member)
    theirs = client.get("/api/orgs/globex/credentials/")
    nowhere = client.get("/api/orgs/no-such-org/credentials/")
    assert theirs.status_code == nowhere.status_code == 404
    assert theirs.content == nowhere.content
    not_member, unknown = _denied()
    assert (not_member.org_id, not_member.metadata["reason"]) == (
        world.p.other_org.id,
        "not_a_member",
    )
    assert (unknown.org_id, unknown.metadata["reason"]) == (None, "unknown_org")
    assert unknown.target_label == "no-such-org"


def test_a_too_weak_role_is_audited_in_the_orgs_trail(world: World, api_for):
    response = api_for(world.p.auditor).post(
        "/api/orgs/acme/credentials/", {"name": "x", "secret": "s3cr3t-value"}, format="json"
    )
    assert response.status_code == 403
    (event,) = _denied()
    assert (event.org_id, event.actor_label, event.outcome) == (world.p.org.id, "auditor", "denied")
    assert event.metadata == {
        "attempted": "POST api:credentials",
        "reason": "role",
        "role": "auditor",
    }
    assert "s3cr3t-value" not in str(event.metadata)


def test_the_html_pages_audit_refusals_the_same_way(world: World, client):
    client.force_login(world.p.auditor)
    assert client.get(f"/orgs/acme/credentials/{world.foreign_credential.id}/").status_code == 404
    assert client.get("/orgs/acme/credentials/new").status_code == 403
    cross, as_missing, role = _denied()
    assert (as_missing.org_id, as_missing.metadata["reason"]) == (world.p.org.id, "not_found")
    assert (cross.org_id, cross.metadata["reason"]) == (world.p.other_org.id, "cross_org")
    assert (role.org_id, role.metadata["reason"]) == (world.p.org.id, "role")
    assert role.metadata["attempted"] == "GET ui:credential-create"


def test_an_agent_tokens_probe_of_another_agent_is_audited(world: World):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.token_plaintext}")
    assert client.get(f"/api/orgs/globex/runs/{world.foreign_run.id}/").status_code == 404
    (event,) = _denied()
    assert (event.actor_type, event.actor_id) == ("agent_token", str(world.token.id))
    assert (event.org_id, event.metadata["reason"]) == (world.p.other_org.id, "not_a_member")
