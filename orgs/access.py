"""Who is acting, in which organisation, and what the matrix lets them do.

An `Access` is resolved once per request (API view, HTML view, management command) from the
organisation slug in the URL and the authenticated principal, and then handed to selectors,
which fetch and authorise in one step. Permissions come from django-guardian: the role's group
permissions on the organisation, plus per-object grants (``use_credential``, ...).

Superusers get no shortcut here: in the product, a superuser acts with the role they hold in
the organisation (their extra power is Django admin, which is audited separately).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404
from guardian.core import ObjectPermissionChecker
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from audit.models import ActorType, Outcome
from audit.services import Actor, Target, record_event
from orgs.models import Membership, Organization, Role
from orgs.permissions import ANY, OWN, RULES_BY_ACTION

ROLE_DENIED = "Your role in this organisation does not allow this."
AGENT_TOKEN_SCOPE = "Agent tokens may only queue and read runs of their own agent."  # noqa: S105


@dataclass(frozen=True)
class AgentPrincipal:
    """What an agent token authenticates as: one agent of one organisation, nothing else.

    Not a User: it cannot log in, hold a membership or reach Django admin, and code that
    expects a person fails closed on it.
    """

    agent_id: uuid.UUID
    org_id: uuid.UUID
    token_id: uuid.UUID
    label: str  # "<agent name>/<token name>"

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> str:  # DRF's throttles key on request.user.pk
        return f"agent-token:{self.token_id}"

    def get_username(self) -> str:
        return f"agent-token:{self.label}"


Principal = User | AnonymousUser | AgentPrincipal


class MembershipNotFound(Http404):
    """Unknown organisation, or one the principal does not belong to: the same 404."""

    def __init__(self, org_slug: str) -> None:
        self.org_slug = org_slug
        super().__init__("No such organisation.")


class ScopedObjectNotFound(Http404):
    """No such object in this organisation (missing, malformed id, or another org's)."""

    def __init__(self, model: type[Model], key: Any, org: Organization) -> None:
        self.model = model
        self.key = key
        self.org = org
        super().__init__("Not found.")


@dataclass
class Access:
    org: Organization
    user: User | None  # the person acting; None when an agent token acts
    membership: Membership | None
    agent: AgentPrincipal | None = None
    _org_perms: frozenset[str] | None = field(default=None, repr=False)
    _object_grants: dict[tuple[str, Any], frozenset[str]] = field(default_factory=dict, repr=False)

    @property
    def role(self) -> Role | None:
        return Role(self.membership.role) if self.membership is not None else None

    @property
    def actor(self) -> Actor:
        if self.agent is not None:
            return Actor(ActorType.AGENT_TOKEN, str(self.agent.token_id), self.agent.label)
        return Actor.for_user(self.user)

    # --- the matrix -------------------------------------------------------------------------

    def may_ever(self, action: str) -> bool:
        """Whether the role can do this to anything (offer a control; refuse early)."""
        perms = self._role_perms()
        rule = RULES_BY_ACTION[action]
        return rule.codename_for(ANY) in perms or rule.codename_for(OWN) in perms

    def can(self, action: str, obj: Model | None = None) -> bool:
        """Whether the principal may do `action` (to `obj`, for object-level actions).

        An OWN-scoped action without an object is refused: a view that forgot to pass the
        object fails closed instead of letting a member act on everything.
        """
        perms = self._role_perms()
        rule = RULES_BY_ACTION[action]
        if rule.codename_for(ANY) in perms:
            return True
        if rule.codename_for(OWN) not in perms or obj is None or self.user is None:
            return False
        if getattr(obj, "created_by_id", None) == self.user.pk:
            return True
        return rule.object_grant is not None and rule.object_grant in self._grants_on(obj)

    def require(self, action: str, obj: Model | None = None) -> None:
        if not self.can(action, obj):
            raise PermissionDenied(ROLE_DENIED)

    def require_ever(self, action: str) -> None:
        if not self.may_ever(action):
            raise PermissionDenied(ROLE_DENIED)

    def abilities(self) -> dict[str, bool]:
        """`credential_create: True/False` for every action, for templates (`may.<action>`)."""
        return {action.replace(".", "_"): self.may_ever(action) for action in RULES_BY_ACTION}

    def prefetch_grants(self, objects: Iterable[Model]) -> None:
        """Load this person's object grants for many objects in two queries (list pages)."""
        objs = [o for o in objects if self._grant_key(o) not in self._object_grants]
        if not objs or self.user is None:
            return
        found: dict[tuple[str, Any], set[str]] = {self._grant_key(o): set() for o in objs}
        user_model = get_user_obj_perms_model(objs[0])
        group_model = get_group_obj_perms_model(objs[0])
        rows = list(
            user_model.objects.filter(user=self.user, content_object__in=objs).values_list(  # type: ignore[attr-defined]
                "content_object_id", "permission__codename"
            )
        ) + list(
            group_model.objects.filter(  # type: ignore[attr-defined]
                group__user=self.user, content_object__in=objs
            ).values_list("content_object_id", "permission__codename")
        )
        label = objs[0]._meta.label
        for pk, codename in rows:
            found[(label, pk)].add(codename)
        self._object_grants.update({key: frozenset(v) for key, v in found.items()})

    # --- internals ---------------------------------------------------------------------------

    def _role_perms(self) -> frozenset[str]:
        if self._org_perms is None:
            if self.user is None:
                self._org_perms = frozenset()  # agent tokens hold no role permissions
            else:
                checker = ObjectPermissionChecker(self.user)
                # get_user_perms/get_group_perms, not has_perm: no superuser shortcut.
                self._org_perms = frozenset(checker.get_user_perms(self.org)) | frozenset(
                    checker.get_group_perms(self.org)
                )
        return self._org_perms

    @staticmethod
    def _grant_key(obj: Model) -> tuple[str, Any]:
        return (obj._meta.label, obj.pk)

    def _grants_on(self, obj: Model) -> frozenset[str]:
        key = self._grant_key(obj)
        if key not in self._object_grants:
            self.prefetch_grants([obj])
        return self._object_grants.get(key, frozenset())


def access_for(*, principal: Principal, org_slug: str) -> Access:
    """Resolve the organisation once: 404 (the same for every reason) unless the principal
    belongs to it."""
    if isinstance(principal, AgentPrincipal):
        org = Organization.objects.filter(slug=org_slug, id=principal.org_id).first()
        if org is None:
            raise MembershipNotFound(org_slug)
        return Access(org=org, user=None, membership=None, agent=principal)
    if not principal.is_authenticated:
        raise MembershipNotFound(org_slug)
    membership = (
        Membership.objects.filter(user=principal, org__slug=org_slug)
        .select_related("org", "user")
        .first()
    )
    if membership is None:
        raise MembershipNotFound(org_slug)
    return Access(org=membership.org, user=membership.user, membership=membership)


def record_denied_access(
    *, principal: Principal, exc: Exception, access: Access | None, attempted: str
) -> None:
    """Audit a refused request (a 404 at an org boundary, or a 403 for a too-weak role).

    Every refusal is recorded, whatever the reason, so a probe for another org's id takes the
    same path as a probe for a missing one. Another org's object or organisation is recorded
    in *that* org's trail (its admins should know); a missing one in the prober's own (or the
    system) trail. A probe of another org's object is also recorded in the prober's own trail,
    exactly as a missing one would be: without it, the event missing there would tell anyone
    who reads that trail (the prober, if their role may) that the id exists elsewhere.
    """
    actor = (
        Actor(ActorType.AGENT_TOKEN, str(principal.token_id), principal.label)
        if isinstance(principal, AgentPrincipal)
        else Actor.for_user(principal)
    )
    metadata: dict[str, Any] = {"attempted": attempted}
    org: Organization | None
    probers_org: Organization | None = None  # set for a probe of another org's object
    if isinstance(exc, MembershipNotFound):
        org = Organization.objects.filter(slug=exc.org_slug).first()
        metadata["reason"] = "not_a_member" if org is not None else "unknown_org"
        target = Target("organization", str(org.id) if org else "", exc.org_slug[:64])
    elif isinstance(exc, ScopedObjectNotFound):
        owner_org_id = (
            exc.model._default_manager.filter(pk=exc.key).values_list("org_id", flat=True).first()
            if exc.key is not None
            else None
        )
        target = Target(exc.model._meta.model_name or "", str(exc.key or "")[:64])
        if owner_org_id is not None and owner_org_id != exc.org.id:
            probers_org = exc.org
            org = Organization.objects.filter(pk=owner_org_id).first()
            metadata["reason"] = "cross_org"
            metadata["from_org"] = exc.org.slug
        else:
            org = exc.org
            metadata["reason"] = "not_found"
    elif isinstance(exc, PermissionDenied) and access is not None:
        org = access.org
        metadata["reason"] = "role"
        metadata["role"] = access.role.value if access.role else "agent_token"
        target = None
    else:
        return
    record_event(
        action="access.denied",
        org=org,
        actor=actor,
        target=target,
        outcome=Outcome.DENIED,
        metadata=metadata,
    )
    if probers_org is not None:
        record_event(
            action="access.denied",
            org=probers_org,
            actor=actor,
            target=target,
            outcome=Outcome.DENIED,
            metadata={"attempted": attempted, "reason": "not_found"},
        )


def require_person(access: Access) -> User:
    """The acting person; agent tokens may not take actions reserved to people."""
    if access.user is None:
        raise PermissionDenied(AGENT_TOKEN_SCOPE)
    return access.user
