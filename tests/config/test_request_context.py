"""requestId: accepted when well formed, generated otherwise, echoed, on every log line."""

from __future__ import annotations

import json
import logging

import pytest

pytestmark = pytest.mark.django_db


def test_a_well_formed_request_id_is_accepted_and_echoed(personas, client):
    client.force_login(personas.member)
    response = client.get("/api/orgs/", HTTP_X_REQUEST_ID="abc-123.DEF_456:7")
    assert response["X-Request-ID"] == "abc-123.DEF_456:7"


@pytest.mark.parametrize(
    "incoming",
    ["short", "x" * 129, "bad id with spaces", "inject\nnewline-abcdef", "<script>alert1</script>"],
)
def test_a_malformed_request_id_is_replaced(personas, client, incoming):
    client.force_login(personas.member)
    response = client.get("/api/orgs/", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32


def test_without_an_incoming_id_each_request_gets_its_own(client):
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]
    assert first != second


def test_every_log_line_of_a_request_carries_its_request_id_and_user(
    personas, api_for, json_logs, canary, django_capture_on_commit_callbacks
):
    # Audit events are logged once they commit, still with the request's context.
    with django_capture_on_commit_callbacks(execute=True):
        api_for(personas.member).post(
            "/api/orgs/acme/credentials/",
            {"name": "n", "secret": canary},
            format="json",
            HTTP_X_REQUEST_ID="req-logline-0001",
        )
    records = [json.loads(line) for line in json_logs.lines]
    audit_lines = [r for r in records if r["logger"] == "audit.services"]
    assert audit_lines
    for record in audit_lines:
        assert record["requestId"] == "req-logline-0001"
        assert record["user"] == "member"
        assert {
            "timestamp",
            "level",
            "logger",
            "message",
            "jobId",
            "trace_id",
            "span_id",
            "org",
        } <= set(record)
    assert canary not in json_logs.text


def test_a_log_line_outside_any_request_has_null_ids(json_logs):
    logging.getLogger("everesthood.test").info("idle")
    (record,) = [json.loads(line) for line in json_logs.lines]
    assert record["requestId"] is None
    assert record["jobId"] is None
    assert record["timestamp"].endswith("+00:00")


def test_djangos_own_request_line_carries_the_request_id(client, json_logs):
    response = client.get("/api/metrics", HTTP_X_REQUEST_ID="req-django-line-01")
    assert response.status_code == 401
    (line,) = [json.loads(r) for r in json_logs.lines if '"django.request"' in r]
    assert line["message"] == "Unauthorized: /api/metrics"
    assert line["requestId"] == "req-django-line-01"
