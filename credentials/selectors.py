from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from credentials.models import Credential
from orgs.models import Organization
from orgs.selectors import get_scoped_or_404, scoped

# Never load the crypto columns for metadata reads: what is not fetched cannot leak.
_METADATA_ONLY = ("wrapped_data_key", "ciphertext")


def credential_list(*, org: Organization) -> QuerySet[Credential]:
    return scoped(Credential, org=org).defer(*_METADATA_ONLY).order_by("name")


def credential_get(*, org: Organization, credential_id: Any) -> Credential:
    return get_scoped_or_404(Credential.objects.defer(*_METADATA_ONLY), org=org, pk=credential_id)
