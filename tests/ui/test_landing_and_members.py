"""The org landing page shows what needs attention; the members page manages roles through
the audited services and offers each role only what it may do."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from agents.models import AgentRun, RunStatus
from agents.services import agent_run_create
from audit.models import AuditEvent
from credentials.models import Credential, CredentialStatus
from orgs.models import Membership

pytestmark = pytest.mark.django_db


def test_the_landing_page_lists_what_needs_attention(
    personas, browser_for, credential, agent, api_for
):
    Credential.objects.filter(pk=credential.pk).update(status=CredentialStatus.COMPROMISED)
    run = agent_run_create(agent=agent, acting_user=personas.member)
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
    api_for(personas.auditor).post(
        "/api/orgs/acme/credentials/", {"name": "x", "secret": "s3cr3t-x"}, format="json"
    )

    page = (
        browser_for(personas.admin).get(reverse("ui:org", kwargs={"org": "acme"})).content.decode()
    )

    assert "Compromised credentials" in page
    assert reverse("ui:credential", kwargs={"org": "acme", "credential_id": credential.id}) in page
    assert reverse("ui:run", kwargs={"org": "acme", "run_id": run.id}) in page
    assert "Denied accesses" in page
    assert "access.denied" in page
    # Members do not read the trail, so the page does not show them denied accesses.
    member_page = (
        browser_for(personas.member).get(reverse("ui:org", kwargs={"org": "acme"})).content.decode()
    )
    assert "Denied accesses" not in member_page
    assert "Compromised credentials" in member_page


def test_an_admin_changes_a_role_and_the_change_is_audited(personas, browser_for):
    browser = browser_for(personas.admin)
    url = reverse("ui:members", kwargs={"org": "acme"})
    page = browser.get(url).content.decode()
    assert 'value="owner"' not in page  # admins are not offered the owner role

    response = browser.post(url, {"op": "change", "username": "member", "role": "auditor"})

    assert response.status_code == 302
    assert Membership.objects.get(org=personas.org, user=personas.member).role == "auditor"
    assert AuditEvent.objects.filter(
        action="membership.role_change", target_label="member"
    ).exists()


def test_forcing_the_owner_role_as_an_admin_gets_403(personas, browser_for):
    response = browser_for(personas.admin).post(
        reverse("ui:members", kwargs={"org": "acme"}),
        {"op": "change", "username": "member", "role": "owner"},
    )
    assert response.status_code == 403
    assert Membership.objects.get(org=personas.org, user=personas.member).role == "member"


def test_adding_and_removing_a_member(personas, browser_for):
    User.objects.create_user(username="newcomer")
    browser = browser_for(personas.owner)
    url = reverse("ui:members", kwargs={"org": "acme"})
    assert (
        browser.post(url, {"op": "add", "username": "newcomer", "role": "auditor"}).status_code
        == 302
    )
    assert Membership.objects.get(org=personas.org, user__username="newcomer").role == "auditor"
    unknown = browser.post(url, {"op": "add", "username": "nobody", "role": "member"})
    assert unknown.status_code == 400
    assert "No active user" in unknown.content.decode()
    assert browser.post(url, {"op": "remove", "username": "newcomer"}).status_code == 302
    assert not Membership.objects.filter(org=personas.org, user__username="newcomer").exists()


def test_the_last_owner_cannot_leave_and_is_told_why(personas, browser_for):
    response = browser_for(personas.owner).post(
        reverse("ui:members", kwargs={"org": "acme"}),
        {"op": "remove", "username": "owner"},
        follow=True,
    )
    assert "at least one owner" in response.content.decode()
    assert Membership.objects.filter(org=personas.org, user=personas.owner).exists()


def test_members_and_auditors_see_the_list_without_controls(personas, browser_for):
    for role in ("member", "auditor"):
        page = browser_for(personas.by_role(role)).get(
            reverse("ui:members", kwargs={"org": "acme"})
        )
        html = page.content.decode()
        assert page.status_code == 200
        assert "admin" in html
        assert "Remove" not in html
        assert "Add a member" not in html
        assert (
            browser_for(personas.by_role(role))
            .post(
                reverse("ui:members", kwargs={"org": "acme"}), {"op": "remove", "username": "admin"}
            )
            .status_code
            == 403
        )


@pytest.mark.parametrize("op", ["remove", "change"])
def test_a_username_no_account_can_have_is_a_404_not_a_500(personas, browser_for, op):
    # No username holds a NUL; PostgreSQL refuses one in a query (that was a 500).
    response = browser_for(personas.owner).post(
        reverse("ui:members", kwargs={"org": "acme"}),
        {"op": op, "username": "a\x00b", "role": "member"},
    )
    assert response.status_code == 404
