from __future__ import annotations

import uuid

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class CredentialKind(models.TextChoices):
    API_KEY = "api_key", "API key"
    PASSWORD = "password", "Password"
    TOKEN = "token", "Token"
    BASIC_AUTH = "basic_auth", "Basic auth (user:password)"


class CredentialStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPROMISED = "compromised", "Compromised"


class Credential(models.Model):
    """A secret, stored only as an envelope: wrapped data key + AES-GCM ciphertext.

    The three crypto columns are written together by credentials.services and nothing else;
    metadata edits update named columns only, so they never rewrite the ciphertext.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    kind = models.CharField(
        max_length=16, choices=CredentialKind.choices, default=CredentialKind.API_KEY
    )
    description = models.TextField(blank=True, max_length=2000)
    status = models.CharField(
        max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.ACTIVE
    )
    key_id = models.CharField(max_length=255, db_index=True)
    format_version = models.PositiveSmallIntegerField()
    wrapped_data_key = models.BinaryField(editable=False)
    ciphertext = models.BinaryField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    secret_updated_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="credential_name_unique_in_org"),
        ]
        # Per-credential grants (django-guardian object permissions), beside Django's own
        # change_credential: to a member (user) or to an agent (the agent's principal group).
        permissions = [("use_credential", "Use the credential in agent runs")]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Credential {self.id} {self.name!r} key={self.key_id}>"


class CredentialUserObjectPermission(UserObjectPermissionBase):
    """A grant on one credential to one member (django-guardian, direct foreign key)."""

    content_object = models.ForeignKey(Credential, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "credential grant to a member"


class CredentialGroupObjectPermission(GroupObjectPermissionBase):
    """A grant on one credential to a group: an agent's principal group."""

    content_object = models.ForeignKey(Credential, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "credential grant to an agent"


class KeyUsageManager(models.Manager["KeyUsage"]):
    def add_wraps(self, *, key_id: str, count: int = 1) -> None:
        """Count wraps under a key; call inside the transaction that stores them.

        A conditional UPDATE with F() is atomic under concurrent writers (its row lock is held
        until commit). A key's first wrap inserts; a concurrent first insert that loses the
        race on the primary key becomes an update.
        """
        if count <= 0:
            return
        now = timezone.now()
        if self.filter(key_id=key_id).update(wraps=F("wraps") + count, updated_at=now):
            return
        try:
            with transaction.atomic():
                self.create(key_id=key_id, wraps=count)
        except IntegrityError:
            self.filter(key_id=key_id).update(wraps=F("wraps") + count, updated_at=now)


class KeyUsage(models.Model):
    """How many data keys one KEK has wrapped, ever: every seal and every re-wrap adds to it in
    the transaction that stores the wrap, so the count is exact for what was committed.

    With random 96-bit nonces a key must stay far below 2^32 encryptions (NIST SP 800-38D); the
    startup check warns from CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD on. Rows that existed before
    this table were counted once each when it was created, so older keys may be undercounted
    by their deleted and replaced rows.
    """

    key_id = models.CharField(max_length=255, primary_key=True)
    wraps = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = KeyUsageManager()

    class Meta:
        ordering = ["key_id"]

    def __str__(self) -> str:
        return f"{self.key_id}: {self.wraps} wraps"
