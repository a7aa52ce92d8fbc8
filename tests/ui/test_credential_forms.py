"""Credential forms take a secret and never give it back: not on success, not on error."""

from __future__ import annotations

import re

import pytest
from django.http import HttpResponse
from django.urls import reverse

from audit.models import AuditEvent
from credentials.models import Credential, CredentialStatus

pytestmark = pytest.mark.django_db


def _html(response: HttpResponse) -> str:
    return response.content.decode()


def _secret_input(html: str) -> str:
    inputs = re.findall(r"<input[^>]*name=\"secret\"[^>]*>", html)
    assert len(inputs) == 1, html
    return inputs[0]


def test_creating_a_credential_through_the_form_never_shows_the_secret_again(
    personas, browser_for, canary
):
    browser = browser_for(personas.member)
    pages = []

    pages.append(browser.get(reverse("ui:credential-create", kwargs={"org": "acme"})))
    response = browser.post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "stripe", "kind": "api_key", "secret": canary, "description": "billing"},
    )

    credential = Credential.objects.get(org=personas.org, name="stripe")
    detail_url = reverse("ui:credential", kwargs={"org": "acme", "credential_id": credential.id})
    assert response.status_code == 302
    assert response["Location"] == detail_url
    pages.append(browser.get(detail_url))
    pages.append(browser.get(reverse("ui:credentials", kwargs={"org": "acme"})))
    replace_url = reverse(
        "ui:credential-replace", kwargs={"org": "acme", "credential_id": credential.id}
    )
    pages.append(browser.get(replace_url))
    pages.append(
        browser.get(
            reverse("ui:credential-delete", kwargs={"org": "acme", "credential_id": credential.id})
        )
    )
    pages.append(browser_for(personas.owner).get(reverse("ui:audit", kwargs={"org": "acme"})))

    assert [page.status_code for page in pages] == [200] * len(pages)
    assert "stripe" in _html(pages[2])
    for page in [response, *pages]:
        assert canary not in _html(page)
    assert canary.encode() not in bytes(credential.ciphertext)


def test_the_form_rerendered_on_a_validation_error_does_not_contain_the_secret(
    personas, browser_for, canary
):
    browser = browser_for(personas.member)

    response = browser.post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "n" * 201, "kind": "api_key", "secret": canary},
    )

    html = _html(response)
    assert response.status_code == 200
    assert "at most 200 characters" in html
    assert canary not in html
    assert 'value="' not in _secret_input(html)
    assert not Credential.objects.filter(org=personas.org).exists()


def test_a_duplicate_name_from_the_service_is_shown_as_a_form_error_without_the_secret(
    personas, browser_for, credential, canary
):
    response = browser_for(personas.member).post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": credential.name, "kind": "api_key", "secret": canary},
    )

    html = _html(response)
    assert response.status_code == 200
    assert "already exists in this organisation" in html
    assert canary not in html
    assert Credential.objects.filter(org=personas.org).count() == 1


def test_a_blank_secret_is_refused_by_the_services_rule(personas, browser_for):
    response = browser_for(personas.member).post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "blank", "kind": "api_key", "secret": "   "},
    )

    assert response.status_code == 200
    assert "The secret must not be empty." in _html(response)
    assert not Credential.objects.filter(org=personas.org).exists()


def test_a_secret_too_short_to_scrub_is_refused(personas, browser_for):
    response = browser_for(personas.member).post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "pin", "kind": "password", "secret": "C4n"},
    )

    assert response.status_code == 200
    assert "The secret is too short" in _html(response)
    assert "C4n" not in _html(response)
    assert not Credential.objects.filter(org=personas.org).exists()


def test_an_invalid_kind_error_does_not_quote_the_submitted_value(personas, browser_for, canary):
    response = browser_for(personas.member).post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": "odd", "kind": f"kind-{canary}", "secret": canary},
    )

    assert response.status_code == 200
    assert "Must be one of: api_key" in _html(response)
    assert canary not in _html(response)


def test_the_secret_input_is_a_password_field_that_is_never_prefilled(
    personas, browser_for, credential
):
    browser = browser_for(personas.member)
    urls = [
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        reverse("ui:credential-replace", kwargs={"org": "acme", "credential_id": credential.id}),
    ]

    for url in urls:
        secret_input = _secret_input(_html(browser.get(url)))
        assert 'type="password"' in secret_input
        assert 'autocomplete="new-password"' in secret_input
        assert "value=" not in secret_input


def test_replacing_the_secret_works_and_never_echoes_it(personas, browser_for, credential, canary):
    browser = browser_for(personas.member)
    Credential.objects.filter(pk=credential.pk).update(status=CredentialStatus.COMPROMISED)
    old_ciphertext = bytes(Credential.objects.get(pk=credential.pk).ciphertext)
    new_canary = f"{canary}-new"
    url = reverse("ui:credential-replace", kwargs={"org": "acme", "credential_id": credential.id})

    form_page = browser.get(url)
    rejected = browser.post(url, {"secret": f"{new_canary}\x00"})
    response = browser.post(url, {"secret": new_canary})
    detail = browser.get(response["Location"])

    assert rejected.status_code == 200
    assert "must not contain NUL characters" in _html(rejected)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "ui:credential", kwargs={"org": "acme", "credential_id": credential.id}
    )
    credential.refresh_from_db()
    assert credential.status == CredentialStatus.ACTIVE
    assert bytes(credential.ciphertext) != old_ciphertext
    assert "Secret of “billing-api” replaced." in _html(detail)
    for page in (form_page, rejected, response, detail):
        assert canary not in _html(page)
    assert AuditEvent.objects.filter(
        action="credential.replace", target_id=str(credential.id)
    ).exists()


def test_deleting_asks_for_confirmation_then_deletes_on_post(
    personas, browser_for, credential, agent
):
    browser = browser_for(personas.admin)
    url = reverse("ui:credential-delete", kwargs={"org": "acme", "credential_id": credential.id})

    confirmation = browser.get(url)
    assert Credential.objects.filter(pk=credential.pk).exists()
    response = browser.post(url)

    assert confirmation.status_code == 200
    assert "invoice-fetcher" in _html(confirmation)  # warns about the bound agent
    assert response.status_code == 302
    assert response["Location"] == reverse("ui:credentials", kwargs={"org": "acme"})
    assert not Credential.objects.filter(pk=credential.pk).exists()


@pytest.mark.parametrize("view", ["credential-create", "credential-replace"])
def test_pages_with_a_secret_input_must_not_be_cached(personas, browser_for, credential, view):
    kwargs = {"org": "acme"}
    if view == "credential-replace":
        kwargs["credential_id"] = str(credential.id)
    browser = browser_for(personas.member)
    url = reverse(f"ui:{view}", kwargs=kwargs)

    for response in (browser.get(url), browser.post(url, {"name": "", "secret": ""})):
        assert response.status_code == 200
        cache_control = response["Cache-Control"]
        assert "no-store" in cache_control
        assert "no-cache" in cache_control
        assert "max-age=0" in cache_control


def test_a_credential_name_is_escaped_in_pages(personas, browser_for):
    name = '<img src=x onerror="alert(1)">'
    browser = browser_for(personas.member)
    browser.post(
        reverse("ui:credential-create", kwargs={"org": "acme"}),
        {"name": name, "kind": "api_key", "secret": "s3cret"},
    )

    html = _html(browser.get(reverse("ui:credentials", kwargs={"org": "acme"})))

    assert name not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
