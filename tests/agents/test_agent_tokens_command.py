"""`manage.py agent_tokens issue|list|revoke`: the token on stdout once, metadata after,
revocation audited with the operator as actor, bad input refused with a non-zero exit."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.models import AgentToken
from audit.models import AuditEvent
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("agent_tokens", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_prints_only_the_token_and_it_works(world: World):
    out, err = _run(
        "issue", "--org", "acme", "--agent", "invoicer", "--name", "cli", "--expires-in-days", "7"
    )
    token = out.strip()
    assert token.startswith("evh_at_")
    assert "\n" not in token
    assert token not in err
    assert "shown once" in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(f"/api/orgs/acme/agents/{world.agent.id}/runs/").status_code == 200
    issued = AuditEvent.objects.get(
        action="token.issue", metadata__kind="agent", target_label="invoicer/cli"
    )
    assert issued.actor_type == "system"
    assert issued.actor_label.startswith("manage.py agent_tokens")
    assert AgentToken.objects.get(name="cli").expires_at is not None


def test_list_escapes_control_characters_in_names(world: World):
    # A member names agents and tokens; the table must not carry terminal escapes.
    world.agent.name = "invoicer\x1b[2J"
    world.agent.save()
    AgentToken.objects.filter(pk=world.token.pk).update(name="ci\r\u202e")
    out, _ = _run("list", "--org", "acme")
    assert "invoicer\\x1b[2J" in out
    assert "ci\\x0d\\u202e" in out
    assert all(ch == "\n" or ch.isprintable() for ch in out)


def test_list_shows_metadata_and_never_a_token(world: World):
    out, _ = _run("list", "--org", "acme", "--json")
    rows = json.loads(out)
    assert [(r["agent"], r["name"], r["state"]) for r in rows] == [("invoicer", "ci", "active")]
    assert world.token_plaintext not in out
    assert rows[0]["token"] == world.token.display + "…"
    table, _ = _run("list", "--org", "acme")
    assert "invoicer" in table
    assert world.token_plaintext not in table
    # Another org's tokens stay in their org.
    assert str(world.foreign_token.id) not in out + table


def test_revoke_one_then_all(world: World):
    out, _ = _run("revoke", "--org", "acme", str(world.token.id))
    assert "Revoked token" in out
    again, _ = _run("revoke", "--org", "acme", str(world.token.id))
    assert "already revoked" in again
    _run("issue", "--org", "acme", "--agent", "invoicer", "--name", "a")
    _run("issue", "--org", "acme", "--agent", "invoicer", "--name", "b")
    out, _ = _run("revoke", "--org", "acme", "--all")
    assert out.strip() == "Revoked 2 active token(s) of organisation acme."
    assert not AgentToken.objects.filter(org=world.p.org, revoked_at__isnull=True).exists()
    assert AgentToken.objects.get(pk=world.foreign_token.pk).revoked_at is None
    assert AuditEvent.objects.filter(action="token.revoke").count() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--org", "nope"], "No organisation with slug 'nope'"),
        (["issue", "--org", "acme", "--agent", "ghost", "--name", "x"], "No agent 'ghost'"),
        (
            [
                "issue",
                "--org",
                "globex",
                "--agent",
                "invoicer",
                "--name",
                "x",
                "--expires-in-days",
                "0",
            ],
            "positive",
        ),
        (["revoke", "--org", "acme"], "either a token id or --all"),
        (["revoke", "--org", "acme", "not-a-uuid"], "is not a token id"),
        # Odd arguments are refused like any bad input, not a traceback (PostgreSQL refuses
        # NUL and over-long names; a date past the year 9999 overflows).
        (["list", "--org", "acme\x00"], "No organisation with slug"),
        (["list", "--org", "acme", "--agent", "invoicer\x00"], "No agent"),
        (["issue", "--org", "acme", "--agent", "invoicer", "--name", "a\x00"], "--name"),
        (["issue", "--org", "acme", "--agent", "invoicer", "--name", "x" * 101], "--name"),
        (["issue", "--org", "acme", "--agent", "invoicer", "--name", " "], "--name"),
        (
            [
                *("issue", "--org", "acme", "--agent", "invoicer", "--name", "x"),
                *("--expires-in-days", "99999999"),
            ],
            "--expires-in-days",
        ),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(world: World, args, message):
    before = AgentToken.objects.count(), AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message):
        _run(*args)
    assert (AgentToken.objects.count(), AuditEvent.objects.count()) == before


def test_a_token_of_another_org_cannot_be_revoked_through_this_one(world: World):
    with pytest.raises(CommandError, match="No agent token"):
        _run("revoke", "--org", "acme", str(world.foreign_token.id))
    assert AgentToken.objects.get(pk=world.foreign_token.pk).revoked_at is None
