"""The write-only credential API: secrets go in and never come out, in any answer."""

from __future__ import annotations

import json
import uuid

import pytest

from audit.models import AuditEvent
from credentials.models import Credential
from tests.raw_storage import read_envelope

pytestmark = pytest.mark.django_db

BASE = "/api/orgs/acme/credentials/"


def _create(client, secret, **extra):
    payload = {"name": extra.pop("name", "stripe"), "secret": secret, **extra}
    return client.post(BASE, payload, format="json")


def test_create_answers_metadata_only(personas, api_for, canary):
    response = _create(api_for(personas.member), canary, kind="token", description="ci bot")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "kind",
        "description",
        "status",
        "key_id",
        "format_version",
        "created_by",
        "created_at",
        "updated_at",
        "secret_updated_at",
        "last_used_at",
    }
    assert body["kind"] == "token"
    assert body["key_id"] == "local:v2"
    assert body["status"] == "active"
    assert body["created_by"] == "member"
    assert canary not in response.content.decode()
    assert response["Cache-Control"] == "no-store"


def test_every_read_and_write_answer_omits_the_secret(personas, api_for, canary):
    client = api_for(personas.owner)
    created = _create(client, canary).json()
    url = f"{BASE}{created['id']}/"
    replacement = canary + "-v2"
    answers = [
        client.get(BASE),
        client.get(url),
        client.patch(url, {"description": "rotated monthly"}, format="json"),
        client.put(f"{url}secret", {"secret": replacement}, format="json"),
        client.options(BASE),
        client.options(url),
        client.get(BASE, HTTP_ACCEPT="text/html"),
        client.get(url, HTTP_ACCEPT="text/html"),
        client.get("/api/schema/"),
        client.get("/api/orgs/acme/audit/"),
    ]
    for answer in answers:
        assert answer.status_code in {200, 201}, (answer.request["PATH_INFO"], answer.status_code)
        text = answer.content.decode()
        assert canary not in text
    assert client.delete(url).status_code == 204
    assert not Credential.objects.filter(pk=created["id"]).exists()


def test_browsable_api_does_not_refill_a_failed_form_with_the_secret(personas, api_for, canary):
    client = api_for(personas.member)
    response = client.post(BASE, {"name": "x" * 201, "secret": canary}, HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    assert canary not in response.content.decode()


def test_secret_is_stored_only_as_an_envelope(personas, api_for, canary):
    created = _create(api_for(personas.member), canary).json()
    key_id, wrapped, ciphertext = read_envelope(uuid.UUID(created["id"]))
    assert key_id == "local:v2"
    assert len(wrapped) == 12 + 32 + 16
    assert len(ciphertext) == 12 + len(canary) + 16
    for stored in (wrapped, ciphertext):
        assert canary.encode() not in stored


def test_metadata_edit_never_rewrites_the_ciphertext(personas, api_for, canary):
    client = api_for(personas.member)
    created = _create(client, canary).json()
    before = read_envelope(uuid.UUID(created["id"]))
    response = client.patch(
        f"{BASE}{created['id']}/",
        {"name": "renamed", "description": "d", "kind": "password"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert read_envelope(uuid.UUID(created["id"])) == before


def test_replacing_the_secret_makes_a_new_envelope(personas, api_for, canary):
    client = api_for(personas.member)
    created = _create(client, canary).json()
    before = read_envelope(uuid.UUID(created["id"]))
    response = client.put(
        f"{BASE}{created['id']}/secret", {"secret": "new-" + canary}, format="json"
    )
    assert response.status_code == 200
    after = read_envelope(uuid.UUID(created["id"]))
    assert after[1] != before[1]
    assert after[2] != before[2]


def test_patch_refuses_a_secret_and_points_to_the_secret_endpoint(personas, api_for, canary):
    client = api_for(personas.member)
    created = _create(client, canary).json()
    response = client.patch(f"{BASE}{created['id']}/", {"secret": canary}, format="json")
    assert response.status_code == 400
    assert "secret" in response.json()
    assert canary not in response.content.decode()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"secret": "CANARY-x"}, "name", id="missing-name"),
        pytest.param({"name": "n"}, "secret", id="missing-secret"),
        pytest.param({"name": "n", "secret": ""}, "secret", id="blank-secret"),
        pytest.param({"name": "n", "secret": "   "}, "secret", id="whitespace-secret"),
        # Shorter than the redaction scrubs: echoed back, it would stay in the run's output.
        pytest.param({"name": "n", "secret": "C4n"}, "secret", id="too-short-to-redact"),
        pytest.param({"name": "n", "secret": "CANARY-" + "x" * 16384}, "secret", id="too-long"),
        pytest.param({"name": "n", "secret": 123456789}, "secret", id="number-secret"),
        pytest.param({"name": "n", "secret": ["CANARY-in-list"]}, "secret", id="list-secret"),
        pytest.param({"name": "n", "secret": {"v": "CANARY-in-obj"}}, "secret", id="object-secret"),
        pytest.param({"name": "n", "secret": "CANARY-\x00-nul"}, "secret", id="nul-secret"),
        pytest.param({"name": "x" * 201, "secret": "CANARY-long-name"}, "name", id="long-name"),
        pytest.param({"name": ["a"], "secret": "CANARY-bad-name"}, "name", id="list-name"),
        pytest.param(
            {"name": "n", "secret": "CANARY-k", "kind": "CANARY-kind"}, "kind", id="bad-kind"
        ),
    ],
)
def test_bad_input_gets_400_with_field_errors_that_never_echo(personas, api_for, payload, field):
    response = api_for(personas.member).post(BASE, payload, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert field in errors
    text = response.content.decode()
    assert "CANARY" not in text
    assert "123456789" not in text
    assert not Credential.objects.exists()


def test_malformed_json_is_a_400_that_does_not_echo(personas, api_for):
    response = api_for(personas.member).post(
        BASE, data='{"name": "n", "secret": "CANARY-broken', content_type="application/json"
    )
    assert response.status_code == 400
    assert "CANARY" not in response.content.decode()


def test_deeply_nested_json_is_a_400_that_does_not_echo(personas, api_for):
    # Python's JSON decoder recurses: nesting past its limit raised RecursionError (a 500).
    nested = "[" * 100_000 + "]" * 100_000
    response = api_for(personas.member).post(
        BASE,
        data='{"name": "n", "secret": "CANARY-deep", "x": ' + nested + "}",
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "CANARY" not in response.content.decode()


def test_duplicate_name_is_a_field_error(personas, api_for, canary):
    client = api_for(personas.member)
    assert _create(client, canary).status_code == 201
    again = _create(client, canary + "2")
    assert again.status_code == 400
    assert "already exists" in again.json()["name"][0]
    assert canary not in again.content.decode()


def test_same_name_may_exist_in_two_orgs(personas, api_for, canary):
    assert _create(api_for(personas.member), canary).status_code == 201
    other = api_for(personas.outsider).post(
        "/api/orgs/globex/credentials/", {"name": "stripe", "secret": canary}, format="json"
    )
    assert other.status_code == 201


def test_unknown_org_and_foreign_org_answer_the_same_404(personas, api_for, canary):
    client = api_for(personas.member)
    unknown = client.get("/api/orgs/nope/credentials/")
    foreign = client.get("/api/orgs/globex/credentials/")
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.json() == foreign.json()
    posted = client.post(
        "/api/orgs/globex/credentials/", {"name": "n", "secret": canary}, format="json"
    )
    assert posted.status_code == 404
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("get", "/", None),
        ("patch", "/", {"description": "pwned"}),
        ("delete", "/", None),
        ("put", "/secret", {"secret": "CANARY-overwrite"}),
    ],
)
def test_another_orgs_credential_is_404_like_a_missing_one(
    personas, api_for, canary, method, suffix, payload
):
    theirs = _create(api_for(personas.member), canary).json()
    client = api_for(personas.outsider)
    kwargs = {"format": "json"} if payload else {}
    via_own_org = getattr(client, method)(
        f"/api/orgs/globex/credentials/{theirs['id']}{suffix}", payload, **kwargs
    )
    missing = getattr(client, method)(
        f"/api/orgs/globex/credentials/{uuid.uuid4()}{suffix}", payload, **kwargs
    )
    via_their_org = getattr(client, method)(
        f"/api/orgs/acme/credentials/{theirs['id']}{suffix}", payload, **kwargs
    )
    assert via_own_org.status_code == missing.status_code == via_their_org.status_code == 404
    assert via_own_org.json() == missing.json()
    stored = Credential.objects.get(pk=theirs["id"])
    assert stored.description == ""


def test_malformed_id_is_404_not_500(personas, api_for):
    response = api_for(personas.member).get(f"{BASE}not-a-uuid/")
    assert response.status_code == 404


def test_auditor_may_read_but_not_write(personas, api_for, canary):
    created = _create(api_for(personas.member), canary).json()
    auditor = api_for(personas.auditor)
    assert auditor.get(BASE).status_code == 200
    assert _create(auditor, canary, name="other").status_code == 403
    assert (
        auditor.put(f"{BASE}{created['id']}/secret", {"secret": canary}, format="json").status_code
        == 403
    )
    assert auditor.delete(f"{BASE}{created['id']}/").status_code == 403


def test_anonymous_requests_are_refused(personas, canary):
    from rest_framework.test import APIClient

    response = APIClient().post(BASE, {"name": "n", "secret": canary}, format="json")
    assert response.status_code in {401, 403}
    assert canary not in response.content.decode()


def test_create_replace_delete_are_audited_with_actor_org_and_request_id(personas, api_for, canary):
    client = api_for(personas.member)
    created = client.post(
        BASE, {"name": "n", "secret": canary}, format="json", HTTP_X_REQUEST_ID="req-create-000001"
    ).json()
    client.put(
        f"{BASE}{created['id']}/secret",
        {"secret": canary + "x"},
        format="json",
        HTTP_X_REQUEST_ID="req-replace-00001",
    )
    client.delete(f"{BASE}{created['id']}/", HTTP_X_REQUEST_ID="req-delete-000001")
    events = list(AuditEvent.objects.filter(target_id=created["id"]).order_by("occurred_at", "id"))
    assert [(e.action, e.request_id, e.actor_label, e.org_id) for e in events] == [
        ("credential.create", "req-create-000001", "member", personas.org.id),
        ("credential.replace", "req-replace-00001", "member", personas.org.id),
        ("credential.delete", "req-delete-000001", "member", personas.org.id),
    ]
    assert canary not in json.dumps([e.metadata for e in events])


def test_org_list_shows_only_my_orgs_with_my_role(personas, api_for):
    response = api_for(personas.auditor).get("/api/orgs/")
    assert response.json() == [{"slug": "acme", "name": "Acme", "role": "auditor"}]


def test_openapi_schema_marks_the_secret_write_only(personas, api_for):
    response = api_for(personas.member).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    components = schema["components"]["schemas"]
    assert "secret" in components["CredentialCreateInputRequest"]["properties"]
    assert "secret" not in components["CredentialOutput"]["properties"]
    paths = schema["paths"]
    assert "/api/orgs/{org}/credentials/{credential_id}/secret" in paths
