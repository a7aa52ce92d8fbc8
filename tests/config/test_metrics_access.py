"""/api/metrics: a staff session or the bearer METRICS_TOKEN reads it; everyone else gets 401
or 403, and every refusal is audited (and counted)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

TOKEN = "t0ken-" + "x" * 40
URL = "/api/metrics"


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def _denials():
    return list(
        AuditEvent.objects.filter(action="metrics.access_denied").values_list(
            "outcome", "actor_type", "actor_label", "metadata"
        )
    )


def test_anonymous_gets_401_with_a_bearer_challenge_and_is_audited(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response["Cache-Control"] == "no-store"
    assert b"everesthood_" not in response.content
    assert _denials() == [("denied", "anonymous", "", {"reason": "no_credentials", "status": 401})]


def test_an_ordinary_member_gets_403_and_is_audited(client, personas):
    client.force_login(personas.owner)  # an org owner is still not staff
    response = client.get(URL)
    assert response.status_code == 403
    assert b"everesthood_" not in response.content
    assert _denials() == [("denied", "user", "owner", {"reason": "not_staff", "status": 403})]


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Basic {TOKEN}", TOKEN],
)
def test_a_wrong_token_gets_401_and_is_audited_without_the_token(client, authorization):
    response = client.get(URL, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics", error="invalid_token"'
    assert _denials() == [("denied", "anonymous", "", {"reason": "invalid_token", "status": 401})]
    assert TOKEN[:10] not in str(AuditEvent.objects.values())


def test_a_wrong_token_is_refused_even_with_a_staff_session(client):
    client.force_login(User.objects.create_user(username="ops", is_staff=True))
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_the_right_token_reads_the_metrics_without_an_audit_event(client):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"
    assert b"django_http_requests_total_by_method" in response.content
    assert _denials() == []


def test_a_staff_session_reads_the_metrics(client):
    client.force_login(User.objects.create_user(username="ops", is_staff=True))
    response = client.get(URL)
    assert response.status_code == 200
    assert b"django_http_requests_total_by_method" in response.content


def test_without_a_configured_token_no_bearer_is_accepted(client, settings):
    settings.METRICS_TOKEN = None
    for authorization in ("Bearer ", "Bearer None", f"Bearer {TOKEN}"):
        assert client.get(URL, HTTP_AUTHORIZATION=authorization).status_code == 401


def test_only_get_is_allowed(client):
    assert client.post(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_refusals_are_counted_as_denied_accesses_of_kind_metrics(client):
    def denied() -> float:
        body = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        prefix = 'everesthood_denied_accesses_total{kind="metrics"} '
        values = [line[len(prefix) :] for line in body.splitlines() if line.startswith(prefix)]
        return float(values[0]) if values else 0.0

    before = denied()
    client.get(URL)
    client.get(URL, HTTP_AUTHORIZATION="Bearer wrong")
    assert denied() == before + 2


def test_a_short_metrics_token_stops_startup_naming_the_variable(settings):
    from django.core.checks import run_checks

    from config.startup import STARTUP_TAG

    settings.METRICS_TOKEN = "short"
    messages = [m.msg for m in run_checks(tags=[STARTUP_TAG]) if m.id == "config.E003"]
    assert messages == [
        "METRICS_TOKEN must be at least 32 characters (or unset, so that only staff sessions "
        "may read /api/metrics)"
    ]
    assert "short" not in messages[0]
