from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors, services
from agents.models import Agent, AgentRun, AgentToken, CredentialBinding, Placement, Tool
from agents.selectors import agent_get
from config.api import validate_input
from credentials.models import Credential
from credentials.selectors import (
    credential_get_for,
    credential_group_grants,
    credential_user_grants,
)
from credentials.services import (
    GRANT_PERMISSIONS,
    Grantee,
    credential_grant,
    credential_revoke_grant,
)
from orgs.access import Access
from orgs.api import (
    OrgScopedAPIView,
    TokenIssuedOutput,
    TokenIssueInput,
    TokenOutput,
    refuse_token_minted_by_token,
)
from orgs.selectors import member_get, scoped


class BindingInput(serializers.Serializer):
    slot = serializers.SlugField(max_length=64)
    credential = serializers.UUIDField()
    placement = serializers.ChoiceField(
        choices=Placement.choices,
        error_messages={"invalid_choice": f"Must be one of: {', '.join(Placement.values)}."},
    )
    target = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    template = serializers.CharField(max_length=256, required=False, default="{secret}")


class AgentInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    tool = serializers.ChoiceField(
        choices=Tool.choices,
        default=Tool.HTTP_REQUEST,
        error_messages={"invalid_choice": f"Must be one of: {', '.join(Tool.values)}."},
    )
    config = serializers.JSONField()
    bindings = BindingInput(many=True, required=False)


def _binding_specs(data: list[dict[str, Any]] | None) -> list[services.BindingSpec] | None:
    if data is None:
        return None
    return [
        services.BindingSpec(
            slot=b["slot"],
            credential_id=b["credential"],
            placement=b["placement"],
            target=b.get("target", ""),
            template=b.get("template", "{secret}"),
        )
        for b in data
    ]


class BindingOutput(serializers.ModelSerializer[CredentialBinding]):
    credential_name = serializers.CharField(source="credential.name")

    class Meta:
        model = CredentialBinding
        fields = ["slot", "credential", "credential_name", "placement", "target", "template"]


class AgentOutput(serializers.ModelSerializer[Agent]):
    bindings = BindingOutput(many=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "description",
            "tool",
            "config",
            "bindings",
            "created_at",
            "updated_at",
        ]


class RunOutput(serializers.ModelSerializer[AgentRun]):
    job_id = serializers.CharField()
    agent_name = serializers.CharField(source="agent.name")

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "job_id",
            "agent",
            "agent_name",
            "status",
            "request_id",
            "queued_at",
            "started_at",
            "finished_at",
            "output",
            "error",
        ]


class AgentListApi(OrgScopedAPIView):
    required = {"GET": "agent.view", "POST": "agent.create"}

    @extend_schema(responses=AgentOutput(many=True), operation_id="agents_list")
    def get(self, request: Request, org: str) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.agent_list(org=self.access.org), request, self)
        return paginator.get_paginated_response(AgentOutput(page, many=True).data)

    @extend_schema(request=AgentInput, responses={201: AgentOutput}, operation_id="agents_create")
    def post(self, request: Request, org: str) -> Response:
        data = validate_input(AgentInput, request)
        agent = services.agent_create(
            org=self.access.org,
            acting_user=self.person,
            name=data["name"],
            tool=data["tool"],
            config=data["config"],
            description=data.get("description", ""),
            bindings=_binding_specs(data.get("bindings")),
            access=self.access,
        )
        return Response(
            AgentOutput(selectors.agent_get(org=self.access.org, agent_id=agent.id)).data,
            status=status.HTTP_201_CREATED,
        )


class AgentDetailApi(OrgScopedAPIView):
    required = {"GET": "agent.view", "PATCH": "agent.change", "DELETE": "agent.delete"}

    @extend_schema(responses=AgentOutput, operation_id="agents_retrieve")
    def get(self, request: Request, org: str, agent_id: str) -> Response:
        return Response(
            AgentOutput(selectors.agent_get_for(access=self.access, agent_id=agent_id)).data
        )

    @extend_schema(request=AgentInput, responses=AgentOutput, operation_id="agents_update")
    def patch(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.change")
        data = validate_input(AgentInput, request, partial=True)
        services.agent_update(
            agent=agent,
            acting_user=self.person,
            name=data.get("name"),
            description=data.get("description"),
            config=data.get("config"),
            bindings=_binding_specs(data.get("bindings")),
            access=self.access,
        )
        return Response(
            AgentOutput(selectors.agent_get(org=self.access.org, agent_id=agent.id)).data
        )

    @extend_schema(responses={204: None}, operation_id="agents_delete")
    def delete(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.delete")
        services.agent_delete(agent=agent, acting_user=self.person)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentRunListApi(OrgScopedAPIView):
    required = {"GET": "run.view", "POST": "agent.run"}
    agent_token_methods = frozenset({"GET", "POST"})

    @extend_schema(responses=RunOutput(many=True), operation_id="agent_runs_list")
    def get(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="run.view")
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.run_list(org=self.access.org, agent=agent), request, self
        )
        return paginator.get_paginated_response(RunOutput(page, many=True).data)

    @extend_schema(request=None, responses={202: RunOutput}, operation_id="agent_runs_create")
    def post(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.run")
        run = services.agent_run_create(
            agent=agent,
            acting_user=self.access.user,
            token=request.auth if isinstance(request.auth, AgentToken) else None,
            actor=self.access.actor,
        )
        response = Response(
            RunOutput(selectors.run_get(org=self.access.org, run_id=run.id)).data,
            status=status.HTTP_202_ACCEPTED,
        )
        response["Location"] = f"/api/orgs/{self.access.org.slug}/runs/{run.id}/"
        return response


class RunDetailApi(OrgScopedAPIView):
    required = {"GET": "run.view"}
    agent_token_methods = frozenset({"GET"})

    @extend_schema(responses=RunOutput, operation_id="runs_retrieve")
    def get(self, request: Request, org: str, run_id: str) -> Response:
        return Response(RunOutput(selectors.run_get_for(access=self.access, run_id=run_id)).data)


# --- agent tokens ----------------------------------------------------------------------------


class AgentTokenListApi(OrgScopedAPIView):
    required = {"GET": "agent.tokens", "POST": "agent.tokens"}

    @extend_schema(responses=TokenOutput(many=True), operation_id="agent_tokens_list")
    def get(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.tokens")
        return Response(TokenOutput(selectors.agent_tokens_list(agent=agent), many=True).data)

    @extend_schema(
        request=TokenIssueInput,
        responses={201: TokenIssuedOutput},
        operation_id="agent_tokens_issue",
    )
    def post(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.tokens")
        refuse_token_minted_by_token(request)
        data = validate_input(TokenIssueInput, request)
        token, plaintext = services.agent_token_issue(
            agent=agent,
            name=data["name"],
            expires_at=data["expires_at"],
            acting_user=self.person,
            access=self.access,
        )
        body = TokenIssuedOutput(token, context={"plaintext": plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)


class AgentTokenDetailApi(OrgScopedAPIView):
    required = {"GET": "agent.tokens", "DELETE": "agent.tokens"}

    @extend_schema(responses=TokenOutput, operation_id="agent_tokens_retrieve")
    def get(self, request: Request, org: str, agent_id: str, token_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.tokens")
        return Response(TokenOutput(selectors.agent_token_get(agent=agent, token_id=token_id)).data)

    @extend_schema(responses={204: None}, operation_id="agent_tokens_revoke")
    def delete(self, request: Request, org: str, agent_id: str, token_id: str) -> Response:
        agent = selectors.agent_get_for(access=self.access, agent_id=agent_id, need="agent.tokens")
        token = selectors.agent_token_get(agent=agent, token_id=token_id)
        services.agent_token_revoke(token=token, acting_user=self.person)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- per-credential grants ---------------------------------------------------------------
# Here rather than in credentials.api: a grant may name an agent, and credentials must not
# import agents (DESIGN.md's dependency direction).


class GrantOutput(serializers.Serializer):
    grantee_type = serializers.ChoiceField(choices=["user", "agent"])
    grantee = serializers.CharField(help_text="username, or the agent's id")
    grantee_name = serializers.CharField()
    permission = serializers.ChoiceField(choices=list(GRANT_PERMISSIONS))


class GrantInput(serializers.Serializer):
    user = serializers.CharField(max_length=150, required=False)
    agent = serializers.UUIDField(required=False)
    permission = serializers.ChoiceField(
        choices=list(GRANT_PERMISSIONS),
        error_messages={"invalid_choice": f"Must be one of: {', '.join(GRANT_PERMISSIONS)}."},
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("agent" in attrs):
            raise serializers.ValidationError("Give exactly one of user or agent.")
        return attrs


def _grant_rows(credential: Credential) -> list[dict[str, str]]:
    codenames = {codename: name for name, codename in GRANT_PERMISSIONS.items()}
    rows = [
        {
            "grantee_type": "user",
            "grantee": grant.user.username,
            "grantee_name": grant.user.username,
            "permission": codenames[grant.permission.codename],
        }
        for grant in credential_user_grants(credential=credential)
        if grant.permission.codename in codenames
    ]
    agents = {
        agent.principal_id: agent
        for agent in scoped(Agent, org=credential.org).filter(
            principal__in=[g.group_id for g in credential_group_grants(credential=credential)]
        )
    }
    rows += [
        {
            "grantee_type": "agent",
            "grantee": str(agents[grant.group_id].id),
            "grantee_name": agents[grant.group_id].name,
            "permission": codenames[grant.permission.codename],
        }
        for grant in credential_group_grants(credential=credential)
        if grant.permission.codename in codenames and grant.group_id in agents
    ]
    return sorted(rows, key=lambda r: (r["grantee_type"], r["grantee_name"], r["permission"]))


class CredentialGrantListApi(OrgScopedAPIView):
    required = {"GET": "credential.view", "POST": "credential.grant"}

    @extend_schema(responses=GrantOutput(many=True), operation_id="credential_grants_list")
    def get(self, request: Request, org: str, credential_id: str) -> Response:
        credential = credential_get_for(access=self.access, credential_id=credential_id)
        return Response(GrantOutput(_grant_rows(credential), many=True).data)

    @extend_schema(
        request=GrantInput,
        responses={201: GrantOutput(many=True)},
        operation_id="credential_grants_add",
    )
    def post(self, request: Request, org: str, credential_id: str) -> Response:
        credential = credential_get_for(
            access=self.access, credential_id=credential_id, need="credential.grant"
        )
        data = validate_input(GrantInput, request)
        grantee = _grantee(self.access, data)
        credential_grant(
            credential=credential,
            permission=data["permission"],
            grantee=grantee,
            acting_user=self.person,
        )
        return Response(
            GrantOutput(_grant_rows(credential), many=True).data, status=status.HTTP_201_CREATED
        )


class CredentialGrantDetailApi(OrgScopedAPIView):
    required = {"DELETE": "credential.grant"}

    @extend_schema(responses={204: None}, operation_id="credential_grants_revoke")
    def delete(
        self,
        request: Request,
        org: str,
        credential_id: str,
        grantee_type: str,
        grantee: str,
        permission: str,
    ) -> Response:
        credential = credential_get_for(
            access=self.access, credential_id=credential_id, need="credential.grant"
        )
        if grantee_type not in {"user", "agent"} or permission not in GRANT_PERMISSIONS:
            raise Http404("Not found.")
        target = _grantee(self.access, {grantee_type: grantee})
        if not credential_revoke_grant(
            credential=credential, permission=permission, grantee=target, acting_user=self.person
        ):
            raise Http404("No such grant.")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _grantee(access: Access, data: dict[str, Any]) -> Grantee:
    """A member of this org or an agent of this org; anything else is a 400 that does not say
    whether it exists elsewhere."""
    if data.get("user") is not None:
        membership = member_get(org=access.org, username=data["user"])
        if membership is None:
            raise serializers.ValidationError({"user": ["No such member of this organisation."]})
        return Grantee.for_user(membership.user)
    try:
        agent = agent_get(org=access.org, agent_id=data["agent"])
    except Http404:
        raise serializers.ValidationError(
            {"agent": ["No such agent in this organisation."]}
        ) from None
    return services.agent_grantee(agent)
