"""REST authentication with agent and personal API tokens (``Authorization: Bearer evh_…``).

Every way a token can fail (malformed, truncated, unknown, revoked, expired) gets the same
401 body; the audit trail records which it was. Failures are counted per client address and,
past the rate in `DEFAULT_THROTTLE_RATES["token_failure"]`, the client gets 429 before its
token is even looked at, so guessing costs time as well as 256 bits of luck.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from agents.models import AgentToken
from agents.selectors import agent_token_by_plaintext
from audit.models import ActorType, Outcome
from audit.services import Actor, Target, record_event
from orgs import tokens
from orgs.access import AgentPrincipal
from orgs.models import PersonalToken, TokenState
from orgs.selectors import personal_token_by_plaintext
from orgs.services import api_token_mark_used
from orgs.throttling import FailureThrottle

FAILED = "Invalid or expired token."


class VaultTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None  # not ours: session authentication may still apply
        throttle = FailureThrottle("token_failure")
        wait = throttle.blocked_for(request)
        if wait is not None:
            if throttle.first_block_in_window():
                _audit_failure("throttled", kind=None)
            raise exceptions.Throttled(wait=wait)
        candidate = parts[1].decode("ascii", "replace") if len(parts) == 2 else ""
        kind = tokens.parse(candidate)
        token: AgentToken | PersonalToken | None = None
        if kind is tokens.TokenKind.AGENT:
            token = agent_token_by_plaintext(candidate)
        elif kind is tokens.TokenKind.PERSONAL:
            token = personal_token_by_plaintext(candidate)
        # The lookup was by digest; comparing again in constant time costs nothing and keeps
        # the check independent of how the database compares strings.
        if token is None or not hmac.compare_digest(token.digest, tokens.digest(candidate)):
            throttle.record_failure()
            _audit_failure("malformed" if kind is None else "unknown", kind=kind)
            raise exceptions.AuthenticationFailed(FAILED)
        state = token.state(timezone.now())
        owner_inactive = isinstance(token, PersonalToken) and not token.user.is_active
        if state is not TokenState.ACTIVE or owner_inactive:
            throttle.record_failure()
            _audit_refused(token, "inactive_user" if owner_inactive else state.value)
            raise exceptions.AuthenticationFailed(FAILED)
        api_token_mark_used(token=token)
        if isinstance(token, AgentToken):
            principal = AgentPrincipal(
                agent_id=token.agent_id,
                org_id=token.org_id,
                token_id=token.id,
                label=f"{token.agent.name}/{token.name}",
            )
            return principal, token
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="everesthood"'


def _audit_failure(reason: str, *, kind: tokens.TokenKind | None) -> None:
    record_event(
        action="token.auth_failed",
        org=None,
        actor=Actor(ActorType.ANONYMOUS),
        outcome=Outcome.DENIED,
        metadata={"reason": reason, "kind": _kind_name(kind)},
    )


def _audit_refused(token: AgentToken | PersonalToken, reason: str) -> None:
    if isinstance(token, AgentToken):
        org = token.org
        actor = Actor(ActorType.AGENT_TOKEN, str(token.id), f"{token.agent.name}/{token.name}")
        target = Target("agent_token", str(token.id), f"{token.agent.name}/{token.name}")
        kind = tokens.TokenKind.AGENT
    else:
        org = None
        actor = Actor.for_user(token.user)
        target = Target(
            "personal_token", str(token.id), f"{token.user.get_username()}/{token.name}"
        )
        kind = tokens.TokenKind.PERSONAL
    record_event(
        action="token.use_denied",
        org=org,
        actor=actor,
        target=target,
        outcome=Outcome.DENIED,
        metadata={"reason": reason, "kind": _kind_name(kind)},
    )


def _kind_name(kind: tokens.TokenKind | None) -> str | None:
    return {tokens.TokenKind.AGENT: "agent", tokens.TokenKind.PERSONAL: "personal"}.get(kind)  # type: ignore[arg-type]
