"""Decryption is a worker-only capability: a view that tries it gets a clear error."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from credentials.crypto import DecryptionNotAllowedError
from credentials.services import Grantee, credential_create, credential_grant
from tests.credentials.decrypt_probe_urls import PROBE_GROUP

pytestmark = pytest.mark.django_db


def _granted_credential(personas, canary):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="n", secret=canary
    )
    group = Group.objects.create(name=PROBE_GROUP)
    credential_grant(
        credential=credential,
        permission="use",
        grantee=Grantee("agent", "probe", "probe", group=group),
        acting_user=personas.owner,
    )
    return credential


@pytest.mark.urls("tests.credentials.decrypt_probe_urls")
def test_a_view_that_tries_to_decrypt_is_refused(personas, client, canary):
    credential = _granted_credential(personas, canary)
    with pytest.raises(DecryptionNotAllowedError, match="only allowed in a Celery worker process"):
        client.get(f"/probe/{credential.id}/")


@pytest.mark.urls("tests.credentials.decrypt_probe_urls")
def test_the_refused_attempt_leaks_nothing_to_the_response(personas, canary):
    from django.test import Client

    credential = _granted_credential(personas, canary)
    response = Client(raise_request_exception=False).get(f"/probe/{credential.id}/")
    assert response.status_code == 500
    assert canary not in response.content.decode()
