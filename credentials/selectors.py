from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from credentials.models import (
    Credential,
    CredentialGroupObjectPermission,
    CredentialUserObjectPermission,
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
