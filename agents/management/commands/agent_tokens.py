"""`manage.py agent_tokens issue|list|revoke`: agent API tokens from the operator's shell.

    manage.py agent_tokens issue --org acme --agent invoice-fetcher --name ci [--expires-in-days 90]
    manage.py agent_tokens list --org acme [--agent invoice-fetcher] [--json]
    manage.py agent_tokens revoke --org acme TOKEN_ID
    manage.py agent_tokens revoke --org acme --all [--agent invoice-fetcher]

`issue` prints the token, and only the token, on stdout (shown once; redirect it into your
secret store), and what it did on stderr. Every issue and revocation is audited with the
operator as actor.
"""

from __future__ import annotations

import datetime
import getpass
import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agents import selectors, services
from agents.models import Agent, AgentToken
from audit.models import ActorType
from audit.services import Actor
from config.text import printable
from orgs.models import Organization
from orgs.selectors import organization_get_by_slug, scoped

MAX_DAYS = 36500  # a hundred years; far more overflows the date


def _operator() -> Actor:
    try:
        who = getpass.getuser()
    except OSError:
        who = "unknown"
    return Actor(ActorType.SYSTEM, "", f"manage.py agent_tokens ({who})")


class Command(BaseCommand):
    help = "Issue, list and revoke agent API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)

        issue = sub.add_parser("issue", help="issue a token (printed once on stdout)")
        issue.add_argument("--org", required=True, help="organisation slug")
        issue.add_argument("--agent", required=True, help="agent name or id")
        issue.add_argument("--name", required=True, help="what the token is for")
        issue.add_argument("--expires-in-days", type=int, default=None)

        listing = sub.add_parser("list", help="list tokens (metadata only)")
        listing.add_argument("--org", required=True, help="organisation slug")
        listing.add_argument("--agent", default=None, help="agent name or id")
        listing.add_argument("--json", action="store_true", help="one JSON array")

        revoke = sub.add_parser("revoke", help="revoke one token, or --all")
        revoke.add_argument("--org", required=True, help="organisation slug")
        revoke.add_argument("token_id", nargs="?", default=None)
        revoke.add_argument("--all", action="store_true", help="every active token in scope")
        revoke.add_argument("--agent", default=None, help="with --all: only this agent's")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        org = organization_get_by_slug(slug=options["org"])
        if org is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        if subcommand == "issue":
            self._issue(org, options)
        elif subcommand == "list":
            self._list(org, options)
        else:
            self._revoke(org, options)

    def _agent(self, org: Organization, name_or_id: str) -> Agent:
        agents = scoped(Agent, org=org)
        try:
            agent = agents.filter(pk=uuid.UUID(name_or_id)).first()
        except ValueError:
            # No agent's name holds a NUL (PostgreSQL refuses one in a query).
            agent = agents.filter(name=name_or_id).first() if "\x00" not in name_or_id else None
        if agent is None:
            raise CommandError(f"No agent {name_or_id!r} in organisation {org.slug!r}.")
        return agent

    def _issue(self, org: Organization, options: dict[str, Any]) -> None:
        agent = self._agent(org, options["agent"])
        name = options["name"]
        max_length = AgentToken._meta.get_field("name").max_length or 100
        if not name.strip() or len(name) > max_length or "\x00" in name:
            raise CommandError(f"--name must be 1 to {max_length} characters, without NUL.")
        days = options["expires_in_days"]
        if days is not None and not 0 < days <= MAX_DAYS:
            raise CommandError(
                f"--expires-in-days must be a positive number of days, at most {MAX_DAYS}."
            )
        expires_at = timezone.now() + datetime.timedelta(days=days) if days else None
        token, plaintext = services.agent_token_issue(
            agent=agent,
            name=name,
            expires_at=expires_at,
            acting_user=None,
            actor=_operator(),
        )
        self.stdout.write(plaintext)
        self.stderr.write(
            f"Issued token {token.display}… ({token.id}) for agent {agent.name} in {org.slug}"
            f"{f', expires {expires_at:%Y-%m-%d %H:%M} UTC' if expires_at else ''}. "
            "It is shown once (above, on stdout) and stored only as a digest."
        )

    def _list(self, org: Organization, options: dict[str, Any]) -> None:
        tokens = scoped(AgentToken, org=org).select_related("agent").order_by("-created_at")
        if options["agent"]:
            tokens = selectors.agent_tokens_list(agent=self._agent(org, options["agent"]))
        now = timezone.now()
        rows = [
            {
                "id": str(t.id),
                "agent": t.agent.name,
                "name": t.name,
                "token": f"{t.display}…",
                "state": t.state(now).value,
                "created_at": t.created_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            }
            for t in tokens
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(f"No agent tokens in {org.slug}.")
            return
        columns = ["id", "agent", "name", "token", "state", "created_at", "last_used_at"]
        # Agent and token names are anyone's text: no raw control characters on a terminal.
        table = [columns, *[[printable(str(r[c] or "-")) for c in columns] for r in rows]]
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        for row in table:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )

    def _revoke(self, org: Organization, options: dict[str, Any]) -> None:
        if options["all"] == bool(options["token_id"]):
            raise CommandError("Give either a token id or --all.")
        if options["all"]:
            agent = self._agent(org, options["agent"]) if options["agent"] else None
            count = services.agent_tokens_revoke_all(
                org=org, agent=agent, acting_user=None, actor=_operator()
            )
            scope = f"agent {agent.name}" if agent else f"organisation {org.slug}"
            self.stdout.write(f"Revoked {count} active token(s) of {scope}.")
            return
        if options["agent"]:
            raise CommandError("--agent goes with --all only.")
        try:
            token_id = uuid.UUID(options["token_id"])
        except ValueError:
            raise CommandError(f"{options['token_id']!r} is not a token id.") from None
        token = scoped(AgentToken, org=org).select_related("agent").filter(pk=token_id).first()
        if token is None:
            raise CommandError(f"No agent token {token_id} in organisation {org.slug}.")
        if services.agent_token_revoke(token=token, acting_user=None, actor=_operator()):
            self.stdout.write(
                f"Revoked token {token.display}… ({token.id}) of agent {token.agent.name}."
            )
        else:
            self.stdout.write(f"Token {token.display}… ({token.id}) was already revoked.")
