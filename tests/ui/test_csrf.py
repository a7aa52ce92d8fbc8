"""State-changing forms need a CSRF token (the test client skips the check unless asked)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from credentials.models import Credential

pytestmark = pytest.mark.django_db


def test_a_post_without_a_csrf_token_is_refused(personas, canary):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(personas.member)

    response = browser.post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "no-token", "kind": "api_key", "secret": canary},
    )

    assert response.status_code == 403
    assert canary not in response.content.decode()
    assert not Credential.objects.filter(org=personas.org).exists()


def test_a_post_with_the_pages_csrf_token_is_accepted(personas, canary):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(personas.member)
    url = reverse("ui:credential-create", kwargs={"org": "acme"})
    token = browser.get(url).context["csrf_token"]

    response = browser.post(
        url,
        {"name": "with-token", "kind": "api_key", "secret": canary, "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302
    assert Credential.objects.filter(org=personas.org, name="with-token").exists()
