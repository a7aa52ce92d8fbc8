"""Decryption is a worker-only capability: a view that tries it gets a clear error."""

from __future__ import annotations

import pytest

from credentials.crypto import DecryptionNotAllowedError
from credentials.services import credential_create

pytestmark = pytest.mark.django_db


@pytest.mark.urls("tests.credentials.decrypt_probe_urls")
def test_a_view_that_tries_to_decrypt_is_refused(personas, client, canary):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="n", secret=canary
    )
    with pytest.raises(DecryptionNotAllowedError, match="only allowed in a Celery worker process"):
        client.get(f"/probe/{credential.id}/")


@pytest.mark.urls("tests.credentials.decrypt_probe_urls")
def test_the_refused_attempt_leaks_nothing_to_the_response(personas, canary):
    from django.test import Client

    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="n", secret=canary
    )
    response = Client(raise_request_exception=False).get(f"/probe/{credential.id}/")
    assert response.status_code == 500
    assert canary not in response.content.decode()
