"""The start page: straight into the only org, or a choice between several."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orgs.models import Role
from orgs.services import membership_set

pytestmark = pytest.mark.django_db


def test_a_user_with_one_org_is_sent_to_its_landing_page(personas, browser_for):
    response = browser_for(personas.auditor).get(reverse("ui:home"))

    assert response.status_code == 302
    assert response["Location"] == reverse("ui:org", kwargs={"org": "acme"})


def test_a_user_with_several_orgs_chooses_from_a_list(personas, browser_for):
    membership_set(user=personas.owner, org=personas.other_org, role=Role.AUDITOR)

    response = browser_for(personas.owner).get(reverse("ui:home"))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="{reverse("ui:org", kwargs={"org": "acme"})}"' in html
    assert f'href="{reverse("ui:org", kwargs={"org": "globex"})}"' in html


def test_the_org_switcher_lists_only_the_users_orgs(personas, browser_for):
    membership_set(user=personas.owner, org=personas.other_org, role=Role.AUDITOR)

    owner_page = browser_for(personas.owner).get(reverse("ui:agents", kwargs={"org": "acme"}))
    member_page = browser_for(personas.member).get(reverse("ui:agents", kwargs={"org": "acme"}))

    assert "Globex" in owner_page.content.decode()
    assert "Globex" not in member_page.content.decode()


def test_a_user_without_orgs_is_told_so(personas, browser_for, django_user_model):
    loner = django_user_model.objects.create_user(username="loner")

    response = browser_for(loner).get(reverse("ui:home"))

    assert response.status_code == 200
    assert "not a member of any organisation" in response.content.decode()
