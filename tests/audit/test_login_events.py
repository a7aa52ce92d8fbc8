"""Logins, good and bad, are recorded in the system chain with the request's context, and a
failed login never stores what was typed unless it names an existing account."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import ActorType, AuditEvent, Outcome
from audit.verification import verify_chain

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def member(personas):
    personas.member.set_password(PASSWORD)
    personas.member.save()
    return personas.member


def _login(username: str, password: str) -> None:
    Client(HTTP_USER_AGENT="pytest-browser", REMOTE_ADDR="203.0.113.5").post(
        reverse("login"),
        {"username": username, "password": password},
        HTTP_X_REQUEST_ID="req-login-000001",
    )


def test_a_successful_login_is_recorded_with_ip_user_agent_and_request_id(member):
    _login("member", PASSWORD)

    event = AuditEvent.objects.get(action="auth.login")
    assert event.org_id is None  # the system chain
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        ActorType.USER,
        str(member.pk),
        "member",
    )
    assert event.outcome == Outcome.SUCCESS
    assert (event.ip, event.user_agent, event.request_id) == (
        "203.0.113.5",
        "pytest-browser",
        "req-login-000001",
    )
    assert verify_chain("system").ok


def test_a_failed_login_for_an_existing_account_names_the_account(member):
    _login("member", "wrong-password-CANARY-1b2c")

    event = AuditEvent.objects.get(action="auth.login")
    assert event.outcome == Outcome.FAILURE
    assert (event.actor_type, event.actor_id) == (ActorType.USER, str(member.pk))
    assert event.metadata == {"known_account": True}
    assert event.ip == "203.0.113.5"


def test_a_failed_login_for_no_account_keeps_nothing_that_was_typed(member, canary):
    # Someone typed their password into the username box.
    _login(canary, "also-" + canary)

    event = AuditEvent.objects.get(action="auth.login")
    assert (event.outcome, event.actor_type, event.actor_id, event.actor_label) == (
        Outcome.FAILURE,
        ActorType.ANONYMOUS,
        "",
        "",
    )
    assert event.metadata == {"known_account": False}
    every_row = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert canary not in every_row
