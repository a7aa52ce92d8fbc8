"""DRF permission classes, in a module of their own: DRF imports its default permission
classes while rest_framework.views loads, so this module must not import views."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from orgs.access import AGENT_TOKEN_SCOPE, AgentPrincipal


class AgentTokenScope(BasePermission):
    """Default permission: an agent token may use no endpoint unless the view lets it.

    Org-scoped views check it themselves once the organisation is resolved, so that another
    org's URL answers 404 to a token as it does to a person.
    """

    message = AGENT_TOKEN_SCOPE

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, AgentPrincipal):
            return True
        return bool(getattr(view, "checks_agent_token_scope", False))
