"""Writes to credentials, each in one transaction with its audit event."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.models import Outcome
from audit.services import Actor, Target, record_event
from config import metrics, redaction
from credentials import crypto
from credentials.models import (
    Credential,
    CredentialGroupObjectPermission,
    CredentialKind,
    CredentialStatus,
    CredentialUserObjectPermission,
)
from orgs.models import Organization

logger = logging.getLogger(__name__)

DUPLICATE_NAME = "A credential with this name already exists in this organisation."


def validate_secret(secret: object) -> str:
    """The secret as str, or ValidationError with a message that never echoes the value."""
    if not isinstance(secret, str):
        raise ValidationError("The secret must be a string.", code="invalid")
    if not secret.strip():
        raise ValidationError("The secret must not be empty.", code="blank")
    if "\x00" in secret:
        raise ValidationError("The secret must not contain NUL characters.", code="invalid")
    limit = settings.CREDENTIAL_MAX_SECRET_BYTES
    if len(secret.encode("utf-8")) > limit:
        raise ValidationError(
            f"The secret is too long: at most {limit} bytes (UTF-8).", code="max_length"
        )
    return secret


def encryption_context(
    *,
    org_id: uuid.UUID | str,
    credential_id: uuid.UUID | str,
    format_version: int = crypto.FORMAT_VERSION,
) -> crypto.EncryptionContext:
    return crypto.EncryptionContext(
        org_id=str(org_id), credential_id=str(credential_id), format_version=format_version
    )


def _target(credential: Credential) -> Target:
    return Target("credential", str(credential.id), credential.name)


@transaction.atomic
def credential_create(
    *,
    org: Organization,
    acting_user: User | None,
    name: str,
    secret: str,
    kind: str = CredentialKind.API_KEY,
    description: str = "",
) -> Credential:
    validate_secret(secret)
    credential_id = uuid.uuid4()
    sealed = crypto.seal(
        secret.encode("utf-8"),
        context=encryption_context(org_id=org.id, credential_id=credential_id),
    )
    now = timezone.now()
    credential = Credential(
        id=credential_id,
        org=org,
        name=name,
        kind=kind,
        description=description,
        key_id=sealed.key_id,
        format_version=sealed.format_version,
        wrapped_data_key=sealed.wrapped_data_key,
        ciphertext=sealed.ciphertext,
        created_by=acting_user,
        secret_updated_at=now,
    )
    try:
        with transaction.atomic():
            credential.save(force_insert=True)
    except IntegrityError:
        raise ValidationError({"name": [DUPLICATE_NAME]}) from None
    record_event(
        action="credential.create",
        org=org,
        actor=Actor.for_user(acting_user),
        target=_target(credential),
        metadata={"kind": kind, "key_id": sealed.key_id},
    )
    transaction.on_commit(lambda: metrics.observe_encryption(key_id=sealed.key_id))
    return credential


@transaction.atomic
def credential_update_metadata(
    *,
    credential: Credential,
    acting_user: User | None,
    name: str | None = None,
    kind: str | None = None,
    description: str | None = None,
) -> Credential:
    """Change metadata. Updates only the named columns: the envelope is never rewritten."""
    changes: dict[str, Any] = {}
    if name is not None and name != credential.name:
        changes["name"] = name
    if kind is not None and kind != credential.kind:
        changes["kind"] = kind
    if description is not None and description != credential.description:
        changes["description"] = description
    if not changes:
        return credential
    changes["updated_at"] = timezone.now()
    try:
        with transaction.atomic():
            Credential.objects.filter(pk=credential.pk).update(**changes)
    except IntegrityError:
        raise ValidationError({"name": [DUPLICATE_NAME]}) from None
    for field, value in changes.items():
        setattr(credential, field, value)
    record_event(
        action="credential.update",
        org=credential.org,
        actor=Actor.for_user(acting_user),
        target=_target(credential),
        metadata={"fields": sorted(k for k in changes if k != "updated_at")},
    )
    return credential


@transaction.atomic
def credential_replace_secret(
    *, credential: Credential, acting_user: User | None, secret: str
) -> Credential:
    """A new secret gets a new data key under the active KEK; a compromised one becomes active."""
    validate_secret(secret)
    sealed = crypto.seal(
        secret.encode("utf-8"),
        context=encryption_context(org_id=credential.org_id, credential_id=credential.id),
    )
    now = timezone.now()
    changes = {
        "key_id": sealed.key_id,
        "format_version": sealed.format_version,
        "wrapped_data_key": sealed.wrapped_data_key,
        "ciphertext": sealed.ciphertext,
        "secret_updated_at": now,
        "updated_at": now,
        "status": CredentialStatus.ACTIVE,
    }
    Credential.objects.filter(pk=credential.pk).update(**changes)
    previous_status = credential.status
    for field in ("key_id", "format_version", "secret_updated_at", "updated_at", "status"):
        setattr(credential, field, changes[field])
    record_event(
        action="credential.replace",
        org=credential.org,
        actor=Actor.for_user(acting_user),
        target=_target(credential),
        metadata={"key_id": sealed.key_id, "previous_status": previous_status},
    )
    transaction.on_commit(lambda: metrics.observe_encryption(key_id=sealed.key_id))
    return credential


@transaction.atomic
def credential_delete(*, credential: Credential, acting_user: User | None) -> None:
    record_event(
        action="credential.delete",
        org=credential.org,
        actor=Actor.for_user(acting_user),
        target=_target(credential),
        metadata={"key_id": credential.key_id},
    )
    Credential.objects.filter(pk=credential.pk).delete()


def credentials_mark_compromised(
    *,
    org: Organization,
    secret_replaced_before: datetime.datetime,
    actor: Actor,
    incident_id: str = "",
    batch_size: int = 500,
) -> int:
    """Mark every active credential of `org` whose secret predates `secret_replaced_before`
    compromised: workers refuse it until a person submits a new secret.

    Idempotent and resumable: a credential already marked, or whose secret was replaced after
    the cut-off (someone already reset it), is left alone. One transaction per batch, each
    credential's event in the batch that marks it. Returns how many were marked now.
    """
    marked = 0
    while True:
        with transaction.atomic():
            batch = list(
                Credential.objects.select_for_update(skip_locked=True)
                .filter(
                    org=org,
                    status=CredentialStatus.ACTIVE,
                    secret_updated_at__lt=secret_replaced_before,
                )
                .defer("wrapped_data_key", "ciphertext")
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return marked
            Credential.objects.filter(pk__in=[c.pk for c in batch]).update(
                status=CredentialStatus.COMPROMISED, updated_at=timezone.now()
            )
            for credential in batch:
                record_event(
                    action="credential.mark_compromised",
                    org=org,
                    actor=actor,
                    target=_target(credential),
                    metadata={"incident": incident_id} if incident_id else {},
                )
            marked += len(batch)


def _configured(key_id: str) -> str | None:
    """The key id as a metric label only if it is configured: a row's key_id is data, and a
    tampered row must not mint metric series."""
    return key_id if key_id in crypto.get_keyring().key_ids else None


class CredentialUnavailableError(Exception):
    """A credential could not be used for a job; the message is safe to store and show."""


# --- grants ------------------------------------------------------------------------------

GRANT_PERMISSIONS = {"use": "use_credential", "change": "change_credential"}


@dataclass(frozen=True)
class Grantee:
    """Who a per-credential grant is for: a member (a user) or an agent (its principal group)."""

    kind: str  # "user" | "agent"
    id: str
    label: str
    user: User | None = None
    group: Group | None = None

    def __post_init__(self) -> None:
        if (self.user is None) == (self.group is None):
            raise ValueError("a grantee is a user or a group")

    @classmethod
    def for_user(cls, user: User) -> Grantee:
        return cls("user", str(user.pk), user.get_username(), user=user)


def _grant_rows(credential: Credential, grantee: Grantee, codename: str) -> Any:
    if grantee.user is not None:
        return CredentialUserObjectPermission.objects.filter(
            user=grantee.user, content_object=credential, permission__codename=codename
        )
    return CredentialGroupObjectPermission.objects.filter(
        group=grantee.group, content_object=credential, permission__codename=codename
    )


@transaction.atomic
def credential_grant(
    *,
    credential: Credential,
    permission: str,
    grantee: Grantee,
    acting_user: User | None,
    actor: Actor | None = None,
) -> bool:
    """Grant `use` or `change` of one credential. Idempotent; True if a grant was added."""
    codename = GRANT_PERMISSIONS[permission]
    if _grant_rows(credential, grantee, codename).exists():
        return False
    assign_perm(f"credentials.{codename}", grantee.user or grantee.group, credential)
    record_event(
        action="credential.grant",
        org=credential.org,
        actor=actor or Actor.for_user(acting_user),
        target=_target(credential),
        metadata={
            "permission": permission,
            "grantee_type": grantee.kind,
            "grantee_id": grantee.id,
            "grantee": grantee.label,
        },
    )
    return True


@transaction.atomic
def credential_revoke_grant(
    *,
    credential: Credential,
    permission: str,
    grantee: Grantee,
    acting_user: User | None,
    actor: Actor | None = None,
) -> bool:
    """Revoke a grant. Idempotent; True if a grant was removed. Takes effect for runs already
    queued: the worker checks grants just before it decrypts."""
    codename = GRANT_PERMISSIONS[permission]
    removed, _ = _grant_rows(credential, grantee, codename).delete()
    if removed:
        record_event(
            action="credential.grant_revoke",
            org=credential.org,
            actor=actor or Actor.for_user(acting_user),
            target=_target(credential),
            metadata={
                "permission": permission,
                "grantee_type": grantee.kind,
                "grantee_id": grantee.id,
                "grantee": grantee.label,
            },
        )
    return bool(removed)


# --- decryption, in workers only --------------------------------------------------------------


def credentials_decrypt_for_job(
    *,
    org_id: uuid.UUID,
    credential_ids: Sequence[uuid.UUID],
    principal: Group,
    actor: Actor,
    now: datetime.datetime | None = None,
) -> dict[uuid.UUID, str]:
    """Authorise, then decrypt, the credentials a job needs. Worker processes only.

    Just before decrypting, every credential must be of `org_id`, held under a `use` grant by
    `principal` (the agent's group) and active; if any is not, nothing is decrypted. Every
    attempt is audited (success, denied, failure). Plaintexts are registered with the log
    redactor before they are returned, so nothing the job logs afterwards can carry them.
    Raises CredentialUnavailableError with a reason that is safe to store and show.
    """
    ids = list(dict.fromkeys(credential_ids))
    # The audit events of a refusal or failure commit with the caller's transaction; the
    # exception is raised only once they are written.
    with transaction.atomic():
        error, plaintexts = _decrypt_for_job(
            org_id=org_id, ids=ids, principal=principal, actor=actor, now=now or timezone.now()
        )
    if error:
        raise CredentialUnavailableError(error)
    return plaintexts


def _decrypt_for_job(
    *,
    org_id: uuid.UUID,
    ids: list[uuid.UUID],
    principal: Group,
    actor: Actor,
    now: datetime.datetime,
) -> tuple[str, dict[uuid.UUID, str]]:
    credentials = {
        c.id: c for c in Credential.objects.select_related("org").filter(org_id=org_id, pk__in=ids)
    }
    granted = set(
        CredentialGroupObjectPermission.objects.filter(
            group=principal, content_object_id__in=ids, permission__codename="use_credential"
        ).values_list("content_object_id", flat=True)
    )
    for credential_id in ids:
        credential = credentials.get(credential_id)
        if credential is None:
            return "a bound credential does not exist in this organisation", {}
        refusal = _refusal(credential, granted=credential_id in granted)
        if refusal is not None:
            reason, message = refusal
            record_event(
                action="credential.decrypt",
                org=credential.org,
                actor=actor,
                target=_target(credential),
                outcome=Outcome.DENIED,
                metadata={"reason": reason, "key_id": credential.key_id},
            )
            metrics.observe_decrypt(key_id=_configured(credential.key_id), outcome="denied")
            return message, {}
    plaintexts: dict[uuid.UUID, str] = {}
    for credential_id in ids:
        credential = credentials[credential_id]
        try:
            plaintexts[credential_id] = _open(credential)
        except _OpenFailedError as failure:
            record_event(
                action="credential.decrypt_failed",
                org=credential.org,
                actor=actor,
                target=_target(credential),
                outcome=Outcome.FAILURE,
                metadata={"key_id": credential.key_id, "reason": failure.reason},
            )
            metrics.observe_decrypt(key_id=_configured(credential.key_id), outcome=failure.outcome)
            logger.warning(
                "credential decrypt failed",
                extra={
                    "credential_id": str(credential.id),
                    "key_id": credential.key_id,
                    "reason": failure.reason,
                },
            )
            return f"credential {credential.name!r} could not be decrypted: {failure.reason}", {}
    for plaintext in plaintexts.values():
        redaction.register_secret(plaintext)
    Credential.objects.filter(pk__in=ids).update(last_used_at=now)
    for credential_id in ids:
        credential = credentials[credential_id]
        record_event(
            action="credential.decrypt",
            org=credential.org,
            actor=actor,
            target=_target(credential),
            metadata={"key_id": credential.key_id},
        )
        metrics.observe_decrypt(key_id=credential.key_id, outcome="success")
    return "", plaintexts


def _refusal(credential: Credential, *, granted: bool) -> tuple[str, str] | None:
    """(audit reason, message) when the job may not use this credential, else None."""
    if not granted:
        return "not_granted", f"the agent holds no use grant on credential {credential.name!r}"
    if credential.status != CredentialStatus.ACTIVE:
        return credential.status, (
            f"credential {credential.name!r} is {credential.status}; a new secret must be "
            f"submitted before it can be used"
        )
    return None


class _OpenFailedError(Exception):
    def __init__(self, reason: str, *, outcome: str) -> None:
        self.reason = reason
        self.outcome = outcome  # config.metrics.DECRYPT_OUTCOMES


def _open(credential: Credential) -> str:
    sealed = crypto.SealedSecret(
        key_id=credential.key_id,
        wrapped_data_key=bytes(credential.wrapped_data_key),
        ciphertext=bytes(credential.ciphertext),
        format_version=credential.format_version,
    )
    context = encryption_context(
        org_id=credential.org_id,
        credential_id=credential.id,
        format_version=credential.format_version,
    )
    # DecryptionNotAllowedError is not caught: decrypting outside a worker is a programming
    # error, and it must surface as itself.
    try:
        return crypto.open_sealed(sealed, context=context).decode("utf-8")
    except crypto.KeyNotConfiguredError as exc:
        raise _OpenFailedError(
            f"key {exc.key_id} is not configured", outcome="key_missing"
        ) from None
    except crypto.DecryptionError:
        raise _OpenFailedError(
            f"ciphertext failed authentication under key {credential.key_id}", outcome="failure"
        ) from None
