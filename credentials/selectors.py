from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, QuerySet

from credentials import crypto
from credentials.models import (
    Credential,
    CredentialGroupObjectPermission,
    CredentialUserObjectPermission,
    KeyUsage,
)
from orgs.access import Access
from orgs.models import Organization
from orgs.selectors import get_scoped_or_404, scoped

# Never load the crypto columns for metadata reads: what is not fetched cannot leak.
_METADATA_ONLY = ("wrapped_data_key", "ciphertext")


def credential_list(*, org: Organization) -> QuerySet[Credential]:
    return scoped(Credential, org=org).defer(*_METADATA_ONLY).order_by("name")


def credential_get(*, org: Organization, credential_id: Any) -> Credential:
    return get_scoped_or_404(Credential.objects.defer(*_METADATA_ONLY), org=org, pk=credential_id)


def credential_get_for(
    *, access: Access, credential_id: Any, need: str = "credential.view"
) -> Credential:
    """Fetch and authorise in one step: 404 outside the org, 403 without the right."""
    credential = credential_get(org=access.org, credential_id=credential_id)
    access.require(need, credential)
    return credential


def credential_user_grants(*, credential: Credential) -> QuerySet[CredentialUserObjectPermission]:
    return CredentialUserObjectPermission.objects.filter(content_object=credential).select_related(
        "user", "permission"
    )


def credential_group_grants(*, credential: Credential) -> QuerySet[CredentialGroupObjectPermission]:
    return CredentialGroupObjectPermission.objects.filter(content_object=credential).select_related(
        "group", "permission"
    )


# --- keys: counts across all organisations, for operator commands and startup checks ------


def credentials_in_scope(org_id: uuid.UUID | None) -> QuerySet[Credential]:
    queryset = Credential.objects.all()
    return queryset.filter(org_id=org_id) if org_id is not None else queryset


def rows_by_key(org_id: uuid.UUID | None = None) -> dict[str, int]:
    rows = credentials_in_scope(org_id).values("key_id").annotate(n=Count("id")).order_by()
    return {row["key_id"]: row["n"] for row in rows}


def wraps_by_key() -> dict[str, int]:
    return dict(KeyUsage.objects.values_list("key_id", "wraps"))


@dataclass(frozen=True)
class KeyStatus:
    key_id: str
    provider: str
    configured: bool
    active: bool
    credentials: int
    wraps: int

    @property
    def retirable(self) -> bool:
        """Configured, not the active key, and no row uses it: its variable can go."""
        return self.configured and not self.active and self.credentials == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "retirable": self.retirable}


def credential_key_status(*, keyring: crypto.Keyring) -> list[KeyStatus]:
    """Every key id that is configured, stored on a row, or has ever wrapped a data key."""
    rows = rows_by_key()
    wraps = wraps_by_key()
    key_ids = set(keyring.key_ids) | set(rows) | set(wraps)
    return [
        KeyStatus(
            key_id=key_id,
            provider=crypto.provider_name(key_id),
            configured=key_id in keyring,
            active=key_id == keyring.active_key_id,
            credentials=rows.get(key_id, 0),
            wraps=wraps.get(key_id, 0),
        )
        for key_id in sorted(key_ids, key=_key_order)
    ]


def _key_order(key_id: str) -> tuple[str, int, str]:
    """local:v2 before local:v10; then the KMS keys by name."""
    provider, _, name = key_id.partition(":")
    version = int(name[1:]) if provider == crypto.LOCAL and name[1:].isdigit() else 0
    return (provider, version, name)


def stored_key_usage() -> tuple[dict[str, int], dict[str, int]]:
    """Rows per stored key id and wraps per key id; empty before the tables are migrated."""
    from django.db import connection

    tables = set(connection.introspection.table_names())
    rows = rows_by_key() if Credential._meta.db_table in tables else {}
    wraps = wraps_by_key() if KeyUsage._meta.db_table in tables else {}
    return rows, wraps


def used_local_versions() -> set[int]:
    """Local key versions that rows or the wrap counters name (configured or not)."""
    versions = set()
    rows, wraps = stored_key_usage()
    for key_id in set(rows) | set(wraps):
        provider, _, name = key_id.partition(":")
        if provider == crypto.LOCAL and name.startswith("v") and name[1:].isdigit():
            versions.add(int(name[1:]))
    return versions
