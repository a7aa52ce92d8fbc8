"""Writes to credentials, each in one transaction with its audit event."""

from __future__ import annotations

import datetime
import getpass
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.models import ActorType, Outcome
from audit.services import Actor, Target, record_event
from config import metrics, redaction, statements
from credentials import crypto, rotation, selectors
from credentials.models import (
    Credential,
    CredentialGroupObjectPermission,
    CredentialKind,
    CredentialStatus,
    CredentialUserObjectPermission,
    KeyUsage,
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
    if len(secret) < redaction.MIN_VALUE_LENGTH:
        # Shorter values are never scrubbed (they would match everywhere): echoed back by an
        # endpoint, such a secret would stay in run output and logs.
        raise ValidationError(
            f"The secret is too short: at least {redaction.MIN_VALUE_LENGTH} characters.",
            code="min_length",
        )
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


class KeyServiceUnavailableError(Exception):
    """The key service could not wrap a new data key (KMS throttled, unreachable, refusing);
    nothing was stored. The message names the key and the reason, never the secret."""


def _seal_for(
    *, org: Organization, credential_id: uuid.UUID, name: str, secret: str, acting_user: Any
) -> crypto.SealedSecret:
    """Seal outside any transaction, so a key service failure is audited even though the
    write it was for never happens."""
    try:
        return crypto.seal(
            secret.encode("utf-8"),
            context=encryption_context(org_id=org.id, credential_id=credential_id),
        )
    except crypto.KeyProviderError as exc:
        with transaction.atomic():
            record_event(
                action="credential.encrypt_failed",
                org=org,
                actor=Actor.for_user(acting_user),
                target=Target("credential", str(credential_id), name),
                outcome=Outcome.FAILURE,
                metadata={"key_id": exc.key_id, "reason": str(exc), "kind": exc.kind},
            )
        raise KeyServiceUnavailableError(
            f"the key service could not encrypt the secret, so nothing was stored ({exc}); "
            f"try again later"
        ) from None


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
    sealed = _seal_for(
        org=org, credential_id=credential_id, name=name, secret=secret, acting_user=acting_user
    )
    with transaction.atomic():
        return _store_new_credential(
            org=org,
            acting_user=acting_user,
            credential_id=credential_id,
            name=name,
            kind=kind,
            description=description,
            sealed=sealed,
        )


def _store_new_credential(
    *,
    org: Organization,
    acting_user: User | None,
    credential_id: uuid.UUID,
    name: str,
    kind: str,
    description: str,
    sealed: crypto.SealedSecret,
) -> Credential:
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
    KeyUsage.objects.add_wraps(key_id=sealed.key_id)
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


def credential_replace_secret(
    *, credential: Credential, acting_user: User | None, secret: str
) -> Credential:
    """A new secret gets a new data key under the active KEK; a compromised one becomes active."""
    validate_secret(secret)
    sealed = _seal_for(
        org=credential.org,
        credential_id=credential.id,
        name=credential.name,
        secret=secret,
        acting_user=acting_user,
    )
    with transaction.atomic():
        return _store_replaced_secret(credential=credential, acting_user=acting_user, sealed=sealed)


def _store_replaced_secret(
    *, credential: Credential, acting_user: User | None, sealed: crypto.SealedSecret
) -> Credential:
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
    KeyUsage.objects.add_wraps(key_id=sealed.key_id)
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
    target = _target(credential)
    # Delete first, record last: the event takes the org's chain lock, which is held to the
    # commit, so it must come after every other row this transaction waits for.
    Credential.objects.filter(pk=credential.pk).delete()
    record_event(
        action="credential.delete",
        org=credential.org,
        actor=Actor.for_user(acting_user),
        target=target,
        metadata={"key_id": credential.key_id},
    )


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
    credential's event in the batch that marks it; rows locked by someone else (a run using
    the credential) are waited for, never skipped. Returns how many were marked now.
    """
    marked = 0
    to_mark = Credential.objects.filter(
        org=org, status=CredentialStatus.ACTIVE, secret_updated_at__lt=secret_replaced_before
    )
    skip_locked = True  # first, what nobody holds; then wait for what someone does
    while True:
        with transaction.atomic():
            batch = list(
                to_mark.select_for_update(skip_locked=skip_locked)
                .defer("wrapped_data_key", "ciphertext")
                # Waiting, one row at a time: holding none while waiting, it closes no cycle
                # with a run that locks several.
                .order_by("pk")[: batch_size if skip_locked else 1]
            )
            if not batch:
                if skip_locked and to_mark.exists():
                    # Rows a run (or an edit) holds right now: skipped, the credential in use
                    # at this very moment would stay active. Wait for them instead.
                    skip_locked = False
                    continue
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
        metadata=_grant_metadata(permission, grantee),
    )
    return True


def _grant_metadata(permission: str, grantee: Grantee) -> dict[str, str]:
    return {
        "permission": permission,
        "grantee_type": grantee.kind,
        "grantee_id": grantee.id,
        "grantee": grantee.label,
    }


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
            metadata=_grant_metadata(permission, grantee),
        )
    return bool(removed)


def credential_grants_revoke_for_member(*, org: Organization, user: User, actor: Actor) -> int:
    """Revoke every per-credential grant `user` holds in `org` (they left it). Audited."""
    grants = CredentialUserObjectPermission.objects.filter(
        user=user, content_object__org=org
    ).select_related("content_object__org", "permission")
    codenames = {codename: name for name, codename in GRANT_PERMISSIONS.items()}
    revoked = 0
    for grant in grants:
        revoked += credential_revoke_grant(
            credential=grant.content_object,
            permission=codenames[grant.permission.codename],
            grantee=Grantee.for_user(user),
            acting_user=None,
            actor=actor,
        )
    return revoked


# --- decryption, in workers only --------------------------------------------------------------


def use_granted(principal: Group, credential: OuterRef) -> Exists:
    """Whether `principal` holds the use grant on the credential `credential` points at: an
    annotation for a query that reads credentials for a job (credentials_decrypt_for_job)."""
    return Exists(
        CredentialGroupObjectPermission.objects.filter(
            group=principal, content_object_id=credential, permission__codename="use_credential"
        )
    )


@dataclass(frozen=True)
class LoadedCredentials:
    """Credentials a job needs, as the caller just read them, each with `use_granted`
    computed in the same query (see `use_granted`): the worker reads them together with the
    agent's bindings, in one round trip."""

    credentials: Sequence[Credential]
    granted: frozenset[uuid.UUID]


def credentials_decrypt_for_job(
    *,
    org_id: uuid.UUID,
    credential_ids: Sequence[uuid.UUID],
    principal: Group,
    actor: Actor,
    now: datetime.datetime | None = None,
    loaded: LoadedCredentials | None = None,
) -> dict[uuid.UUID, str]:
    """Authorise, then decrypt, the credentials a job needs. Worker processes only.

    Just before decrypting, every credential must be of `org_id`, held under a `use` grant by
    `principal` (the agent's group) and active; if any is not, nothing is decrypted. Every
    attempt is audited (success, denied, failure). Plaintexts are registered with the log
    redactor before they are returned, so nothing the job logs afterwards can carry them.
    Raises CredentialUnavailableError with a reason that is safe to store and show.

    With `loaded`, the credentials (and their grants) come from the caller's query of this
    transaction instead of one made here.
    """
    ids = list(dict.fromkeys(credential_ids))
    # The audit events of a refusal or failure commit with the caller's transaction; the
    # exception is raised only once they are written. No savepoint: nothing in the block
    # raises for the caller to recover from (refusals are returned), and each savepoint is
    # two more round trips on every run.
    with transaction.atomic(savepoint=False):
        error, plaintexts = _decrypt_for_job(
            org_id=org_id,
            ids=ids,
            principal=principal,
            actor=actor,
            now=now or timezone.now(),
            loaded=loaded,
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
    loaded: LoadedCredentials | None,
) -> tuple[str, dict[uuid.UUID, str]]:
    if not ids:  # an agent without bindings: nothing to authorise, decrypt or record
        return "", {}
    if loaded is None:
        # The credentials and whether the principal holds their use grant, in one query.
        rows = list(
            Credential.objects.select_related("org")
            .filter(org_id=org_id, pk__in=ids)
            .annotate(use_granted=use_granted(principal, OuterRef("pk")))
        )
        loaded = LoadedCredentials(
            credentials=rows, granted=frozenset(c.id for c in rows if c.use_granted)
        )
    credentials = {c.id: c for c in loaded.credentials if c.org_id == org_id}
    for credential_id in ids:
        credential = credentials.get(credential_id)
        if credential is None:
            return "a bound credential does not exist in this organisation", {}
        refusal = _refusal(credential, granted=credential_id in loaded.granted)
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
    # The UPDATE goes with the first event's first statement (config.statements).
    with statements.sent_with_next(
        [statements.update(Credential.objects.filter(pk__in=ids), last_used_at=now)]
    ):
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
    except crypto.KeyProviderError as exc:
        # The key service is throttling, unreachable or refusing: the run fails now, after the
        # client's bounded retries, and is not retried as a whole (no retry storm).
        raise _OpenFailedError(str(exc), outcome="key_service_error") from None


# --- key lifecycle (manage.py credential_keys) -----------------------------------------------


class KeyLifecycleError(Exception):
    """An operator's key command cannot proceed; the message says why and what to do."""


def operator_actor() -> Actor:
    """Operator commands run on a host, not in a session: the OS account is who did it."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(ActorType.SYSTEM, "credential_keys", f"manage.py credential_keys ({who})")


def _keyring() -> crypto.Keyring:
    try:
        return crypto.get_keyring()
    except crypto.KeyConfigurationError as exc:
        raise KeyLifecycleError(str(exc)) from None


def _require_configured(ring: crypto.Keyring, key_id: str) -> None:
    if key_id not in ring:
        where = crypto.key_variable(key_id)
        hint = (
            f"set {where}"
            if where != crypto.KMS_KEYS_VARIABLE
            else f"add it to {crypto.KMS_KEYS_VARIABLE}"
        )
        raise KeyLifecycleError(
            f"key {key_id} is not configured: {hint} (configured: {', '.join(ring.key_ids)})"
        )


def _key_target(key_id: str) -> Target:
    return Target("credential_key", key_id, key_id)


def credential_keys_rotation_plan(
    *, to_key_id: str, batch_size: int = rotation.DEFAULT_BATCH_SIZE, org: Organization | None
) -> dict[str, int]:
    """Check that a rotation onto ``to_key_id`` may start; rows per key id in scope.

    The target must be the active key: new writes must already go to it, or the rotation
    would chase rows that keep arriving under the old key.
    """
    if not 1 <= batch_size <= rotation.MAX_BATCH_SIZE:
        raise KeyLifecycleError(f"--batch-size must be between 1 and {rotation.MAX_BATCH_SIZE}")
    ring = _keyring()
    _require_configured(ring, to_key_id)
    if ring.active_key_id != to_key_id:
        raise KeyLifecycleError(
            f"{to_key_id} is not the active key ({ring.active_key_id} is): set "
            f"{crypto.ACTIVE_KEY_VARIABLE}={to_key_id} for the web and the workers (and here), "
            f"restart them, then rotate"
        )
    return selectors.rows_by_key(org.id if org is not None else None)


def credential_keys_rotate(
    *,
    to_key_id: str,
    batch_size: int = rotation.DEFAULT_BATCH_SIZE,
    reencrypt: bool = False,
    org: Organization | None = None,
    on_batch: rotation.ProgressCallback | None = None,
) -> rotation.RotationResult:
    """Move every credential (of ``org``, or all) onto ``to_key_id``; see credentials.rotation
    and credential_keys_rotation_plan. Writes an audit event when it starts (so an interrupted
    or killed run is visible) and one with the counts when it ends."""
    ring = _keyring()
    credential_keys_rotation_plan(to_key_id=to_key_id, batch_size=batch_size, org=org)
    org_id = org.id if org is not None else None
    with transaction.atomic():
        record_event(
            action="credential_keys.rotate_start",
            org=org,
            actor=operator_actor(),
            target=_key_target(to_key_id),
            metadata={
                "to": to_key_id,
                "reencrypt": reencrypt,
                "batch_size": batch_size,
                "rows_by_key": selectors.rows_by_key(org_id),
            },
        )
    result = rotation.rotate(
        target_key_id=to_key_id,
        batch_size=batch_size,
        reencrypt=reencrypt,
        org_id=org_id,
        keyring=ring,
        on_batch=on_batch,
    )
    with transaction.atomic():
        record_event(
            action="credential_keys.rotate",
            org=org,
            actor=operator_actor(),
            target=_key_target(to_key_id),
            outcome=Outcome.SUCCESS if result.complete else Outcome.FAILURE,
            metadata={
                "to": to_key_id,
                "reencrypt": reencrypt,
                "rewrapped": result.rewrapped,
                "changed_concurrently": result.concurrent,
                "batches": result.batches,
                "passes": result.passes,
                "failed": len(result.failures),
                "failed_ids": [f.credential_id for f in result.failures[:100]],
                "remaining": result.remaining,
                "interrupted": result.interrupted,
                "error": result.error,
                "rows_before": result.rows_before,
                "rows_after": result.rows_after,
            },
        )
    return result


def credential_keys_verify(
    *, org: Organization | None = None, batch_size: int = rotation.DEFAULT_BATCH_SIZE
) -> rotation.VerifyResult:
    """Decrypt every credential in scope (worker role); one audit event with the counts."""
    ring = _keyring()
    try:
        result = rotation.verify(
            org_id=org.id if org is not None else None, batch_size=batch_size, keyring=ring
        )
    except crypto.KeyProviderError as exc:
        with transaction.atomic():
            record_event(
                action="credential_keys.verify",
                org=org,
                actor=operator_actor(),
                outcome=Outcome.FAILURE,
                metadata={"error": str(exc)},
            )
        raise KeyLifecycleError(f"verification stopped: {exc}") from None
    with transaction.atomic():
        record_event(
            action="credential_keys.verify",
            org=org,
            actor=operator_actor(),
            outcome=Outcome.FAILURE if result.failures else Outcome.SUCCESS,
            metadata={
                "checked": result.checked,
                "ok_by_key": result.ok_by_key,
                "failed_by_key": result.failed_by_key,
                "failed_ids": [f.credential_id for f in result.failures[:100]],
            },
        )
    return result


@dataclass(frozen=True)
class RetireResult:
    key_id: str
    variable: str
    wraps: int


def credential_keys_retire(*, key_id: str) -> RetireResult:
    """Confirm a key can go: no row uses it and it is not the active key. Changes no key (keys
    live in the environment); the operator removes the variable afterwards."""
    ring = _keyring()
    in_use = Credential.objects.filter(key_id=key_id).count()
    wraps = KeyUsage.objects.filter(key_id=key_id).values_list("wraps", flat=True).first() or 0
    if key_id not in ring and not in_use:
        raise KeyLifecycleError(
            f"unknown key id {key_id}: it is not configured and no credential uses it "
            f"(configured: {', '.join(ring.key_ids)})"
        )
    refusal = ""
    if key_id == ring.active_key_id:
        refusal = (
            f"{key_id} is the active key (new credentials are sealed with it): set "
            f"{crypto.ACTIVE_KEY_VARIABLE} to another key, rotate onto it, then retire {key_id}"
        )
    elif in_use:
        refusal = (
            f"{in_use} credential(s) still use {key_id}: rotate them first "
            f"(credential_keys rotate --to {ring.active_key_id})"
        )
    with transaction.atomic():
        record_event(
            action="credential_keys.retire",
            org=None,
            actor=operator_actor(),
            target=_key_target(key_id),
            outcome=Outcome.DENIED if refusal else Outcome.SUCCESS,
            metadata={"rows": in_use, "wraps": wraps, "reason": refusal},
        )
    if refusal:
        raise KeyLifecycleError(refusal)
    return RetireResult(key_id=key_id, variable=crypto.key_variable(key_id), wraps=wraps)
