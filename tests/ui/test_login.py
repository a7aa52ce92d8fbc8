"""Signing in and out through the browser."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_login_page_renders_an_empty_password_field(db):
    response = Client().get(reverse("login"))

    html = response.content.decode()
    assert response.status_code == 200
    (password,) = re.findall(r"<input[^>]*name=\"password\"[^>]*>", html)
    assert 'type="password"' in password
    assert "value=" not in password


def test_a_failed_login_does_not_echo_the_password(personas):
    response = Client().post(
        reverse("login"), {"username": "member", "password": "wrong-pw-CANARY-7f3a"}
    )

    assert response.status_code == 200
    assert "wrong-pw-CANARY-7f3a" not in response.content.decode()


def test_signing_in_leads_to_the_users_only_org(personas):
    personas.member.set_password("correct horse battery staple")
    personas.member.save()
    browser = Client()

    response = browser.post(
        reverse("login"), {"username": "member", "password": "correct horse battery staple"}
    )
    home = browser.get(response["Location"])

    assert response.status_code == 302
    assert response["Location"] == reverse("ui:home")
    assert home.status_code == 302
    assert home["Location"] == reverse("ui:org", kwargs={"org": "acme"})


def test_signing_out_takes_a_post_and_ends_the_session(personas):
    browser = Client()
    browser.force_login(personas.member)
    page = browser.get(reverse("ui:credentials", kwargs={"org": "acme"})).content.decode()

    assert f'action="{reverse("logout")}"' in page
    assert browser.get(reverse("logout")).status_code == 405
    response = browser.post(reverse("logout"))

    assert response.status_code == 302
    assert browser.get(reverse("ui:home")).status_code == 302
    assert "_auth_user_id" not in browser.session
