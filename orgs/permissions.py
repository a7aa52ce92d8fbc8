"""The permission matrix: what each role may do. The one place the code asks.

Every action has a scope per role:

- ``ANY``: on every object of the organisation;
- ``OWN``: on objects the member created, or (where the action names an object grant) on
  objects the member holds that django-guardian grant for, e.g. ``use_credential`` on one
  credential;
- absent: never.

The matrix becomes django-guardian object permissions on the organisation: each role of each
organisation is a group holding ``<action>`` (ANY) or ``<action>_own`` (OWN) permissions on the
Organization object (orgs.services keeps them in line with this table). docs/permissions.md
is rendered from it (`markdown_table`), and the permission tests are generated from it, so the
documentation, the grants and the tests cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from orgs.roles import Role


class Scope(enum.Enum):
    ANY = "any"
    OWN = "own"


ANY, OWN = Scope.ANY, Scope.OWN


@dataclass(frozen=True)
class Rule:
    action: str
    description: str
    scopes: Mapping[Role, Scope]
    # A per-object django-guardian permission that also counts as "own" (codename on the
    # object's model), e.g. "use_credential" granted on one credential to one member.
    object_grant: str | None = None

    @property
    def codename(self) -> str:
        return self.action.replace(".", "_")

    def codename_for(self, scope: Scope) -> str:
        return self.codename if scope is ANY else f"{self.codename}_own"


def _all(scope: Scope = ANY) -> dict[Role, Scope]:
    return dict.fromkeys(Role, scope)


_MANAGERS = {Role.OWNER: ANY, Role.ADMIN: ANY}
_WRITERS = {Role.OWNER: ANY, Role.ADMIN: ANY, Role.MEMBER: ANY}
_WRITERS_OWN = {Role.OWNER: ANY, Role.ADMIN: ANY, Role.MEMBER: OWN}

RULES: tuple[Rule, ...] = (
    Rule("org.view", "See the organisation, its members and their roles", _all()),
    Rule(
        "member.manage",
        "Add and remove members, change roles (only an owner grants, changes or removes the "
        "owner role; the last owner cannot leave)",
        _MANAGERS,
    ),
    Rule("credential.view", "List credentials and read their metadata", _all()),
    Rule("credential.create", "Create a credential", _WRITERS),
    Rule(
        "credential.change",
        "Change a credential's metadata and replace its secret",
        _WRITERS_OWN,
        object_grant="change_credential",
    ),
    Rule("credential.delete", "Delete a credential", _WRITERS_OWN),
    Rule(
        "credential.grant",
        "Grant or revoke use or change of a credential to a member or an agent",
        _WRITERS_OWN,
    ),
    Rule(
        "credential.use",
        "Use a credential: run an agent bound to it, bind it to an agent",
        _WRITERS_OWN,
        object_grant="use_credential",
    ),
    Rule("agent.view", "List agents, their tool config and credential bindings", _all()),
    Rule("agent.create", "Create an agent", _WRITERS),
    Rule("agent.change", "Change an agent's config and bindings", _WRITERS_OWN),
    Rule("agent.delete", "Delete an agent", _WRITERS_OWN),
    Rule(
        "agent.run",
        "Queue a run of an agent (also needs credential.use on every credential bound to it)",
        _WRITERS,
    ),
    Rule("agent.tokens", "List, issue and revoke an agent's tokens", _WRITERS_OWN),
    Rule("run.view", "List runs and read their status and redacted output", _all()),
    Rule(
        "audit.view",
        "Read the organisation's audit trail",
        {Role.OWNER: ANY, Role.ADMIN: ANY, Role.AUDITOR: ANY},
    ),
)

RULES_BY_ACTION: dict[str, Rule] = {rule.action: rule for rule in RULES}
ACTIONS = tuple(RULES_BY_ACTION)

# Every permission the matrix can grant on an Organization, for its Meta.permissions.
ORG_PERMISSIONS: tuple[tuple[str, str], ...] = tuple(
    (rule.codename_for(scope), f"{rule.description}{' (own objects)' if scope is OWN else ''}")
    for rule in RULES
    for scope in (ANY, OWN)
    if scope in rule.scopes.values()
)


def role_permissions(role: Role) -> frozenset[str]:
    """The Organization permission codenames a role's group holds."""
    return frozenset(rule.codename_for(rule.scopes[role]) for rule in RULES if role in rule.scopes)


def scope_of(role: Role, action: str) -> Scope | None:
    return RULES_BY_ACTION[action].scopes.get(role)


def markdown_table() -> str:
    """The matrix as docs/permissions.md shows it (a test keeps the two identical)."""
    roles = list(Role)
    lines = [
        "| action | what | " + " | ".join(r.value for r in roles) + " |",
        "|---|---|" + "---|" * len(roles),
    ]
    marks = {ANY: "✓", OWN: "own", None: ""}
    for rule in RULES:
        cells = [marks[rule.scopes.get(role)] for role in roles]
        lines.append(f"| `{rule.action}` | {rule.description} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
