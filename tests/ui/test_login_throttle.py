"""Failed sign-ins are counted per address: past the rate, the login pages answer 429 before
they check a password (so guessing costs time), and the throttling is audited once."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def five_a_minute():
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login_failure": "5/min"}
    with override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    ):
        yield


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_repeated_failed_sign_ins_from_one_address_are_throttled(personas, five_a_minute, url):
    personas.member.set_password("right-password-123")
    personas.member.is_staff = True
    personas.member.save()
    browser = Client(REMOTE_ADDR="203.0.113.9")
    codes = [
        browser.post(url, {"username": "member", "password": f"guess-{i}"}).status_code
        for i in range(8)
    ]
    assert codes == [200] * 5 + [429] * 3
    refused = browser.post(url, {"username": "member", "password": "right-password-123"})
    assert refused.status_code == 429  # even the right password waits
    assert int(refused["Retry-After"]) >= 1
    assert "Too many attempts" in refused.content.decode()
    assert AuditEvent.objects.filter(action="login.throttled").count() == 1
    # Another address signs in at once.
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert (
        other.post(url, {"username": "member", "password": "right-password-123"}).status_code == 302
    )


def test_successful_sign_ins_are_never_counted(personas, five_a_minute):
    personas.member.set_password("right-password-123")
    personas.member.save()
    for _ in range(8):
        browser = Client(REMOTE_ADDR="203.0.113.10")
        response = browser.post(
            "/accounts/login/", {"username": "member", "password": "right-password-123"}
        )
        assert response.status_code == 302
