"""Organisations, memberships and roles, personal API tokens. Every change is audited in the
transaction that makes it.

A role's permissions live in django-guardian: one group per (organisation, role) holding the
role's permissions on the Organization object, generated from orgs.permissions. A membership's
role and its user's group membership change together here, and nowhere else.
"""

from __future__ import annotations

import datetime
from importlib import import_module

from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import Actor, Target, record_event
from orgs import selectors, tokens
from orgs.models import (
    ApiToken,
    Membership,
    Organization,
    OrganizationGroupObjectPermission,
    OrgRoleGroup,
    PersonalToken,
    Role,
)
from orgs.permissions import role_permissions
from orgs.signals import membership_removed

ONLY_OWNERS = "Only an owner can grant, change or remove the owner role."
LAST_OWNER = "An organisation needs at least one owner: make someone else owner first."


def _actor(acting_user: User | None, actor: Actor | None) -> Actor:
    return actor if actor is not None else Actor.for_user(acting_user)


def _org_target(org: Organization) -> Target:
    return Target("organization", str(org.id), org.slug)


# --- role groups -------------------------------------------------------------------------


def _role_group(org: Organization, role: Role) -> Group:
    link = OrgRoleGroup.objects.filter(org=org, role=role).select_related("group").first()
    if link is not None:
        return link.group
    group = Group.objects.create(name=f"org:{org.id}:{role.value}")
    OrgRoleGroup.objects.create(org=org, role=role, group=group)
    return group


@transaction.atomic
def role_groups_sync(*, org: Organization) -> int:
    """Make the org's role groups hold exactly the matrix's permissions, and every member sit
    in exactly their role's group. Idempotent; returns the number of rows changed."""
    content_type = ContentType.objects.get_for_model(Organization)
    permissions = {p.codename: p for p in Permission.objects.filter(content_type=content_type)}
    changed = 0
    groups: dict[Role, Group] = {}
    for role in Role:
        group = groups[role] = _role_group(org, role)
        wanted = role_permissions(role)
        missing = sorted(wanted - set(permissions))
        if missing:
            # Meta.permissions are created by migrate's post_migrate; a matrix change without
            # a migration would otherwise silently grant nothing.
            raise RuntimeError(f"permissions missing, run migrate: {', '.join(missing)}")
        held = set(
            OrganizationGroupObjectPermission.objects.filter(
                group=group, content_object=org
            ).values_list("permission__codename", flat=True)
        )
        OrganizationGroupObjectPermission.objects.bulk_create(
            OrganizationGroupObjectPermission(
                group=group, content_object=org, permission=permissions[codename]
            )
            for codename in sorted(wanted - held)
        )
        extra = held - wanted
        if extra:
            OrganizationGroupObjectPermission.objects.filter(
                group=group, content_object=org, permission__codename__in=extra
            ).delete()
        changed += len(wanted - held) + len(extra)
    for membership in Membership.objects.filter(org=org).select_related("user"):
        changed += _place_in_role_group(membership.user, org, Role(membership.role), groups)
    return changed


def _place_in_role_group(
    user: User, org: Organization, role: Role, groups: dict[Role, Group] | None = None
) -> int:
    groups = groups or {r: _role_group(org, r) for r in Role}
    changed = 0
    for other_role, group in groups.items():
        is_in = user.groups.filter(pk=group.pk).exists()
        if other_role is role and not is_in:
            user.groups.add(group)
            changed += 1
        elif other_role is not role and is_in:
            user.groups.remove(group)
            changed += 1
    return changed


def role_groups_sync_all() -> int:
    """After migrate: carry a changed matrix into every organisation's grants."""
    return sum(role_groups_sync(org=org) for org in Organization.objects.all())


# --- organisations and memberships -----------------------------------------------------------


@transaction.atomic
def org_create(
    *,
    slug: str,
    name: str,
    owner: User | None = None,
    acting_user: User | None = None,
    actor: Actor | None = None,
) -> Organization:
    org = Organization.objects.create(slug=slug, name=name)
    role_groups_sync(org=org)
    record_event(
        action="org.create",
        org=org,
        actor=_actor(acting_user, actor),
        target=_org_target(org),
        metadata={"name": name},
    )
    if owner is not None:
        membership_set(org=org, user=owner, role=Role.OWNER, acting_user=acting_user, actor=actor)
    return org


@transaction.atomic
def org_rename(*, org: Organization, name: str, actor: Actor) -> Organization:
    previous = Organization.objects.filter(pk=org.pk).values_list("name", flat=True).first()
    if previous == name:
        return org
    Organization.objects.filter(pk=org.pk).update(name=name)
    org.name = name
    record_event(
        action="org.rename",
        org=org,
        actor=actor,
        target=_org_target(org),
        metadata={"name": name, "previous_name": previous},
    )
    return org


@transaction.atomic
def org_delete(*, org: Organization, actor: Actor) -> None:
    """Delete an organisation with everything in it. Its audit trail stays (the events keep
    the org's id); the deletion itself is recorded in the system trail."""
    role_groups = [link.group_id for link in OrgRoleGroup.objects.filter(org=org)]
    # Agents' principal groups (and with them the agents' grants) belong to the org too.
    agent_groups = list(Group.objects.filter(agent__org=org).values_list("pk", flat=True))
    record_event(
        action="org.delete",
        org=None,
        actor=actor,
        target=_org_target(org),
        metadata={"name": org.name},
    )
    Organization.objects.filter(pk=org.pk).delete()
    Group.objects.filter(pk__in=[*role_groups, *agent_groups]).delete()


@transaction.atomic
def membership_set(
    *,
    org: Organization,
    user: User,
    role: Role,
    acting_user: User | None = None,
    actor: Actor | None = None,
    acting_role: Role | None = None,
) -> Membership:
    """Add `user` to `org` with `role`, or change their role.

    `acting_role` is the role of the person doing it (None: an operator command or the
    system): only owners touch the owner role, and the last owner cannot be demoted.
    """
    role = Role(role)
    _lock_memberships(org)
    membership = Membership.objects.filter(org=org, user=user).first()
    previous = Role(membership.role) if membership is not None else None
    if membership is not None and previous is role:
        return membership
    if (
        acting_role is not None
        and acting_role is not Role.OWNER
        and Role.OWNER
        in (
            role,
            previous,
        )
    ):
        raise PermissionDenied(ONLY_OWNERS)
    if previous is Role.OWNER and _other_owners(org, user) == 0:
        raise ValidationError({"role": [LAST_OWNER]})
    if membership is None:
        membership = Membership.objects.create(org=org, user=user, role=role)
    else:
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
    _place_in_role_group(user, org, role)
    record_event(
        action="membership.add" if previous is None else "membership.role_change",
        org=org,
        actor=_actor(acting_user, actor),
        target=Target("user", str(user.pk), user.get_username()),
        metadata={"role": role.value, "previous_role": previous.value if previous else None},
    )
    return membership


@transaction.atomic
def membership_remove(
    *,
    membership: Membership,
    acting_user: User | None = None,
    actor: Actor | None = None,
    acting_role: Role | None = None,
) -> None:
    org, user = membership.org, membership.user
    _lock_memberships(org)
    # The role as it is now, not as the caller read it before the lock.
    current = Membership.objects.filter(pk=membership.pk).values_list("role", flat=True).first()
    if current is None:
        return  # removed meanwhile: nothing left to do
    role = Role(current)
    if acting_role is not None and acting_role is not Role.OWNER and role is Role.OWNER:
        raise PermissionDenied(ONLY_OWNERS)
    if role is Role.OWNER and _other_owners(org, user) == 0:
        raise ValidationError({"role": [LAST_OWNER]})
    Membership.objects.filter(pk=membership.pk).delete()
    user.groups.remove(*(link.group for link in OrgRoleGroup.objects.filter(org=org)))
    record_event(
        action="membership.remove",
        org=org,
        actor=_actor(acting_user, actor),
        target=Target("user", str(user.pk), user.get_username()),
        metadata={"previous_role": role.value},
    )
    membership_removed.send(sender=Membership, org=org, user=user, actor=_actor(acting_user, actor))


def _lock_memberships(org: Organization) -> None:
    """Serialise membership changes of one organisation (until the transaction ends).

    The organisation's row is the lock, so two owners demoting each other at once cannot leave
    the org with none: the second waits, then counts the first one's committed change.
    (Locking the owner rows instead would not do: Django drops FOR UPDATE from a COUNT.)
    """
    list(Organization.objects.select_for_update().filter(pk=org.pk).values_list("pk", flat=True))


def _other_owners(org: Organization, user: User) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).exclude(user=user).count()


# --- personal API tokens ------------------------------------------------------------------


@transaction.atomic
def personal_token_issue(
    *,
    user: User,
    name: str,
    expires_at: datetime.datetime | None = None,
    actor: Actor | None = None,
) -> tuple[PersonalToken, str]:
    """A new token for `user` and its plaintext, which the caller shows once."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["Must be in the future."]})
    new = tokens.issue(tokens.TokenKind.PERSONAL)
    token = PersonalToken.objects.create(
        user=user,
        name=name,
        digest=new.digest,
        display=new.display,
        created_by=user,
        expires_at=expires_at,
    )
    record_event(
        action="token.issue",
        org=None,
        actor=_actor(user, actor),
        target=Target("personal_token", str(token.id), f"{user.get_username()}/{name}"),
        metadata={
            "kind": "personal",
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, new.plaintext


@transaction.atomic
def personal_token_revoke(
    *, token: PersonalToken, acting_user: User | None, actor: Actor | None = None
) -> PersonalToken:
    """Idempotent: revoking a revoked token changes nothing and records nothing."""
    now = timezone.now()
    revoked = PersonalToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=acting_user
    )
    if revoked:
        token.revoked_at, token.revoked_by = now, acting_user
        record_event(
            action="token.revoke",
            org=None,
            actor=_actor(acting_user, actor),
            target=Target(
                "personal_token", str(token.id), f"{token.user.get_username()}/{token.name}"
            ),
            metadata={"kind": "personal"},
        )
    return token


def personal_tokens_revoke_for_members(
    *, org: Organization | None, actor: Actor, issued_before: datetime.datetime
) -> int:
    """Revoke the personal tokens of `org`'s members (None: everyone's) issued before a
    moment: a containment step of a breach. A personal token acts for its person in every
    organisation, so a leaked one must stop everywhere; its person issues a new one from a
    signed-in session. Each revocation is its own audited transaction."""
    active = selectors.personal_tokens_active_for_members(org=org, issued_before=issued_before)
    revoked = 0
    for token in active.select_related("user").order_by("created_at"):
        if personal_token_revoke(token=token, acting_user=None, actor=actor).revoked_at:
            revoked += 1
    return revoked


def sessions_end_for_members(*, org: Organization | None) -> int:
    """End the signed-in sessions of `org`'s members (None: every session): a containment step
    of a breach. A session is keyed by a value the database holds as it is, so a copy of the
    database signs anyone in as whoever was signed in. Works for the session engines that keep
    their sessions in the database (`db`, the default, and `cached_db`); returns how many
    sessions ended."""
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session

    if settings.SESSION_ENGINE not in {
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
    }:
        return 0
    store = import_module(settings.SESSION_ENGINE).SessionStore
    members = (
        None
        if org is None
        else {
            str(pk) for pk in Membership.objects.filter(org=org).values_list("user_id", flat=True)
        }
    )
    ended = 0
    for session in Session.objects.all().iterator():
        if members is None or str(session.get_decoded().get(SESSION_KEY)) in members:
            store(session.session_key).delete()  # the cache's copy too (cached_db)
            ended += 1
    return ended


def api_token_mark_used(*, token: ApiToken, now: datetime.datetime | None = None) -> None:
    """Record a token's use at most once a minute: a busy agent must not turn every call into
    a write."""
    now = now or timezone.now()
    stale = now - datetime.timedelta(seconds=60)
    type(token)._default_manager.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)
    ).update(last_used_at=now)
