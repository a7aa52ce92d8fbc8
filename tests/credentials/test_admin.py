"""Django admin shows credential metadata only and offers no way to add or read a secret."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from credentials.services import credential_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = User.objects.create_superuser("root-admin", "", "pw-root-admin")
    client.force_login(admin)
    return client


def test_admin_pages_never_render_the_secret_or_its_envelope(personas, staff_client, canary):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="stripe", secret=canary
    )
    wrapped_hex = bytes(credential.wrapped_data_key).hex()
    pages = [
        "/admin/credentials/credential/",
        f"/admin/credentials/credential/{credential.id}/change/",
        "/admin/audit/auditevent/",
        "/admin/agents/agent/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert "stripe" in text or "audit" in url or "agent" in url
        assert canary not in text
        assert wrapped_hex[:24] not in text
        assert "ciphertext" not in text.lower()


def test_admin_cannot_add_or_change_credentials(personas, staff_client, canary):
    credential = credential_create(
        org=personas.org, acting_user=personas.member, name="stripe", secret=canary
    )
    assert staff_client.get("/admin/credentials/credential/add/").status_code == 403
    response = staff_client.post(
        f"/admin/credentials/credential/{credential.id}/change/", {"name": "renamed"}
    )
    assert response.status_code == 403
    credential.refresh_from_db()
    assert credential.name == "stripe"
