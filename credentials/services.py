"""Writes to credentials, each in one transaction with its audit event."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import Actor, Target, record_event
from config import metrics, redaction
from credentials import crypto
from credentials.models import Credential, CredentialKind, CredentialStatus
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


def _configured(key_id: str) -> str | None:
    """The key id as a metric label only if it is configured: a row's key_id is data, and a
    tampered row must not mint metric series."""
    return key_id if key_id in crypto.get_keyring().key_ids else None


class CredentialUnavailableError(Exception):
    """A credential could not be decrypted for a job; the message is safe to store and show."""


def credential_decrypt_for_job(
    *,
    org_id: uuid.UUID,
    credential_id: uuid.UUID,
    job_id: str,
    actor: Actor,
    now: Any = None,
) -> str:
    """Decrypt one credential inside a worker job. Every attempt is audited.

    The plaintext is registered with the log redactor for the rest of the job before it is
    returned, so nothing the job logs afterwards can carry it.
    """
    credential = (
        Credential.objects.select_related("org").filter(pk=credential_id, org_id=org_id).first()
    )
    if credential is None:
        raise CredentialUnavailableError("credential not found in this organisation")
    target = _target(credential)
    if credential.status != CredentialStatus.ACTIVE:
        with transaction.atomic():
            record_event(
                action="credential.decrypt",
                org=credential.org,
                actor=actor,
                target=target,
                outcome=Outcome.DENIED,
                metadata={"reason": credential.status},
            )
        metrics.observe_decrypt(key_id=_configured(credential.key_id), outcome="denied")
        raise CredentialUnavailableError(
            f"credential {credential.name!r} is {credential.status}; a new secret must be "
            f"submitted before it can be used"
        )
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
    try:
        plaintext = crypto.open_sealed(sealed, context=context).decode("utf-8")
    except crypto.KeyNotConfiguredError as exc:
        reason = f"key {exc.key_id} is not configured"
        outcome = "key_missing"
    except crypto.DecryptionError:
        reason = f"ciphertext failed authentication under key {credential.key_id}"
        outcome = "failure"
    else:
        redaction.register_secret(plaintext)
        with transaction.atomic():
            Credential.objects.filter(pk=credential.pk).update(last_used_at=now or timezone.now())
            record_event(
                action="credential.decrypt",
                org=credential.org,
                actor=actor,
                target=target,
                metadata={"key_id": credential.key_id},
            )
        metrics.observe_decrypt(key_id=credential.key_id, outcome="success")
        return plaintext
    # DecryptionNotAllowedError is not caught: decrypting outside a worker is a programming
    # error, and it must surface as itself.
    with transaction.atomic():
        record_event(
            action="credential.decrypt_failed",
            org=credential.org,
            actor=actor,
            target=target,
            outcome=Outcome.FAILURE,
            metadata={"key_id": credential.key_id, "reason": reason},
        )
    metrics.observe_decrypt(key_id=_configured(credential.key_id), outcome=outcome)
    logger.warning(
        "credential decrypt failed",
        extra={"credential_id": str(credential.id), "key_id": credential.key_id, "reason": reason},
    )
    raise CredentialUnavailableError(
        f"credential {credential.name!r} could not be decrypted: {reason}"
    )
