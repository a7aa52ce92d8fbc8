from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agents.api import (
    AgentDetailApi,
    AgentListApi,
    AgentRunListApi,
    AgentTokenDetailApi,
    AgentTokenListApi,
    CredentialGrantDetailApi,
    CredentialGrantListApi,
    RunDetailApi,
)
from audit.api import AuditListApi
from config.metrics_endpoint import metrics_view
from credentials.api import CredentialDetailApi, CredentialListApi, CredentialSecretApi
from orgs.api import (
    MemberDetailApi,
    MemberListApi,
    OrgListApi,
    PersonalTokenDetailApi,
    PersonalTokenListApi,
)
from orgs.views import throttle_sign_ins

api = [
    path("orgs/", OrgListApi.as_view(), name="orgs"),
    path("tokens/", PersonalTokenListApi.as_view(), name="personal-tokens"),
    path("tokens/<str:token_id>/", PersonalTokenDetailApi.as_view(), name="personal-token"),
    path("orgs/<slug:org>/members/", MemberListApi.as_view(), name="members"),
    path("orgs/<slug:org>/members/<str:username>/", MemberDetailApi.as_view(), name="member"),
    path("orgs/<slug:org>/credentials/", CredentialListApi.as_view(), name="credentials"),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/",
        CredentialDetailApi.as_view(),
        name="credential",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/secret",
        CredentialSecretApi.as_view(),
        name="credential-secret",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/grants/",
        CredentialGrantListApi.as_view(),
        name="credential-grants",
    ),
    path(
        "orgs/<slug:org>/credentials/<str:credential_id>/grants/<str:grantee_type>/"
        "<str:grantee>/<str:permission>/",
        CredentialGrantDetailApi.as_view(),
        name="credential-grant",
    ),
    path("orgs/<slug:org>/agents/", AgentListApi.as_view(), name="agents"),
    path("orgs/<slug:org>/agents/<str:agent_id>/", AgentDetailApi.as_view(), name="agent"),
    path(
        "orgs/<slug:org>/agents/<str:agent_id>/runs/", AgentRunListApi.as_view(), name="agent-runs"
    ),
    path(
        "orgs/<slug:org>/agents/<str:agent_id>/tokens/",
        AgentTokenListApi.as_view(),
        name="agent-tokens",
    ),
    path(
        "orgs/<slug:org>/agents/<str:agent_id>/tokens/<str:token_id>/",
        AgentTokenDetailApi.as_view(),
        name="agent-token",
    ),
    path("orgs/<slug:org>/runs/<str:run_id>/", RunDetailApi.as_view(), name="run"),
    path("orgs/<slug:org>/audit/", AuditListApi.as_view(), name="audit"),
    path("metrics", metrics_view, name="metrics"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script under CSP.
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="api/swagger_ui.html"
        ),
        name="docs",
    ),
]

urlpatterns = [
    path("api/", include((api, "api"))),
    # Both sign-in pages count failures per address (before admin's own URLs, to take over
    # its login page).
    path("admin/login/", throttle_sign_ins(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", throttle_sign_ins(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("config.ui_urls")),
]
