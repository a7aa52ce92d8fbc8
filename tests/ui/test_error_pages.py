"""The project's own error pages: plain, and carrying nothing from the request."""

from __future__ import annotations

import pytest
from django.template import loader
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_unknown_path_gets_the_projects_404_without_echoing_the_path(personas, browser_for):
    response = browser_for(personas.member).get("/no-such-page-CANARY-404/")

    html = response.content.decode()
    assert response.status_code == 404
    assert "404.html" in [t.name for t in response.templates]
    assert "CANARY-404" not in html
    assert response["X-Request-ID"] in html  # the reference a user can quote to support


def test_a_bad_host_gets_the_projects_400(db):
    response = Client().get("/", headers={"Host": "evil.example"})

    assert response.status_code == 400
    assert "Bad request" in response.content.decode()
    assert "evil.example" not in response.content.decode()


@pytest.mark.parametrize("name", ["400.html", "500.html"])
def test_request_less_error_pages_render_without_any_context(name):
    html = loader.get_template(name).render()

    assert "<h1>" in html
    assert "{" not in html


def test_a_csrf_failure_gets_the_projects_page(personas):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(personas.member)

    response = browser.post("/orgs/acme/credentials/new", {"name": "x"})

    assert response.status_code == 403
    assert "Form expired" in response.content.decode()
