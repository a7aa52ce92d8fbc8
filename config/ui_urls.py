from django.urls import path

from agents import views as agent_views
from audit import views as audit_views
from config import ui_views
from credentials import views as credential_views
from orgs import views as org_views

app_name = "ui"

urlpatterns = [
    path("", ui_views.home, name="home"),
    path("tokens/", org_views.personal_tokens, name="personal-tokens"),
    path(
        "tokens/<str:token_id>/revoke",
        org_views.personal_token_revoke,
        name="personal-token-revoke",
    ),
    path("orgs/<slug:org>/", ui_views.org_dashboard, name="org"),
    path("orgs/<slug:org>/members/", org_views.members, name="members"),
    path("orgs/<slug:org>/credentials/", credential_views.credential_list, name="credentials"),
    path(
        "orgs/<slug:org>/credentials/new",
        credential_views.credential_create,
        name="credential-create",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/",
        credential_views.credential_detail,
        name="credential",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/replace",
        credential_views.credential_replace,
        name="credential-replace",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/test",
        agent_views.credential_test,
        name="credential-test",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/tests/<str:run_id>/",
        agent_views.credential_test_result,
        name="credential-test-result",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/delete",
        credential_views.credential_delete,
        name="credential-delete",
    ),
    path("orgs/<slug:org>/agents/", agent_views.agent_list, name="agents"),
    path("orgs/<slug:org>/agents/<str:agent_id>/", agent_views.agent_detail, name="agent"),
    path("orgs/<slug:org>/agents/<str:agent_id>/run", agent_views.agent_run_now, name="agent-run"),
    path(
        "orgs/<slug:org>/agents/<str:agent_id>/tokens/new",
        agent_views.agent_token_issue,
        name="agent-token-issue",
    ),
    path(
        "orgs/<slug:org>/agents/<str:agent_id>/tokens/<str:token_id>/revoke",
        agent_views.agent_token_revoke,
        name="agent-token-revoke",
    ),
    path("orgs/<slug:org>/runs/", agent_views.run_list, name="runs"),
    path("orgs/<slug:org>/runs/<str:run_id>/", agent_views.run_detail, name="run"),
    path("orgs/<slug:org>/audit/", audit_views.audit_event_list, name="audit"),
]
