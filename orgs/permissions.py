"""What each role may do: the one place the code asks. (docs/permissions.md mirrors it.)

Issue #4 refines this (per-credential grants, own-credential rules for members); every view
already asks through `authorize`, so refining it here changes every endpoint at once.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from orgs.models import Membership, Role

_ALL = frozenset(Role)
_WRITERS = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})
_TRAIL_READERS = frozenset({Role.OWNER, Role.ADMIN, Role.AUDITOR})

PERMISSIONS: dict[str, frozenset[Role]] = {
    "org.view": _ALL,
    "credential.view": _ALL,
    "credential.create": _WRITERS,
    "credential.change": _WRITERS,
    "credential.delete": _WRITERS,
    "agent.view": _ALL,
    "agent.manage": _WRITERS,
    "agent.run": _WRITERS,
    "run.view": _ALL,
    "audit.view": _TRAIL_READERS,
}


def can(membership: Membership, action: str) -> bool:
    return Role(membership.role) in PERMISSIONS[action]


def authorize(membership: Membership, action: str) -> None:
    if not can(membership, action):
        raise PermissionDenied("Your role in this organisation does not allow this.")
