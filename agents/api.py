from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from agents import selectors, services
from agents.models import Agent, AgentRun, CredentialBinding, Placement, Tool
from config.api import validate_input
from orgs.api import OrgScopedAPIView


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
    required = {"GET": "agent.view", "POST": "agent.manage"}

    @extend_schema(responses=AgentOutput(many=True), operation_id="agents_list")
    def get(self, request: Request, org: str) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.agent_list(org=self.org), request, self)
        return paginator.get_paginated_response(AgentOutput(page, many=True).data)

    @extend_schema(request=AgentInput, responses={201: AgentOutput}, operation_id="agents_create")
    def post(self, request: Request, org: str) -> Response:
        data = validate_input(AgentInput, request)
        agent = services.agent_create(
            org=self.org,
            acting_user=self.membership.user,
            name=data["name"],
            tool=data["tool"],
            config=data["config"],
            description=data.get("description", ""),
            bindings=_binding_specs(data.get("bindings")),
        )
        return Response(
            AgentOutput(selectors.agent_get(org=self.org, agent_id=agent.id)).data,
            status=status.HTTP_201_CREATED,
        )


class AgentDetailApi(OrgScopedAPIView):
    required = {"GET": "agent.view", "PATCH": "agent.manage", "DELETE": "agent.manage"}

    @extend_schema(responses=AgentOutput, operation_id="agents_retrieve")
    def get(self, request: Request, org: str, agent_id: str) -> Response:
        return Response(AgentOutput(selectors.agent_get(org=self.org, agent_id=agent_id)).data)

    @extend_schema(request=AgentInput, responses=AgentOutput, operation_id="agents_update")
    def patch(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get(org=self.org, agent_id=agent_id)
        data = validate_input(AgentInput, request, partial=True)
        services.agent_update(
            agent=agent,
            acting_user=self.membership.user,
            name=data.get("name"),
            description=data.get("description"),
            config=data.get("config"),
            bindings=_binding_specs(data.get("bindings")),
        )
        return Response(AgentOutput(selectors.agent_get(org=self.org, agent_id=agent.id)).data)

    @extend_schema(responses={204: None}, operation_id="agents_delete")
    def delete(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get(org=self.org, agent_id=agent_id)
        services.agent_delete(agent=agent, acting_user=self.membership.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentRunListApi(OrgScopedAPIView):
    required = {"GET": "run.view", "POST": "agent.run"}

    @extend_schema(responses=RunOutput(many=True), operation_id="agent_runs_list")
    def get(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get(org=self.org, agent_id=agent_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.run_list(org=self.org, agent=agent), request, self
        )
        return paginator.get_paginated_response(RunOutput(page, many=True).data)

    @extend_schema(request=None, responses={202: RunOutput}, operation_id="agent_runs_create")
    def post(self, request: Request, org: str, agent_id: str) -> Response:
        agent = selectors.agent_get(org=self.org, agent_id=agent_id)
        run = services.agent_run_create(agent=agent, acting_user=self.membership.user)
        response = Response(
            RunOutput(selectors.run_get(org=self.org, run_id=run.id)).data,
            status=status.HTTP_202_ACCEPTED,
        )
        response["Location"] = f"/api/orgs/{self.org.slug}/runs/{run.id}/"
        return response


class RunDetailApi(OrgScopedAPIView):
    required = {"GET": "run.view"}

    @extend_schema(responses=RunOutput, operation_id="runs_retrieve")
    def get(self, request: Request, org: str, run_id: str) -> Response:
        return Response(RunOutput(selectors.run_get(org=self.org, run_id=run_id)).data)
