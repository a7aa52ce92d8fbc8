from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from audit.models import AuditEvent
from audit.selectors import audit_events_for_org
from orgs.api import OrgScopedAPIView


class AuditEventOutput(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "outcome",
            "request_id",
            "job_id",
            "ip",
            "user_agent",
            "metadata",
        ]


class AuditListApi(OrgScopedAPIView):
    required = {"GET": "audit.view"}

    @extend_schema(
        responses=AuditEventOutput(many=True),
        parameters=[
            OpenApiParameter(name, str, required=False)
            for name in ("action", "request_id", "job_id", "target_id")
        ],
        operation_id="audit_list",
    )
    def get(self, request: Request, org: str) -> Response:
        params = request.query_params
        events = audit_events_for_org(
            org=self.access.org,
            action=params.get("action"),
            request_id=params.get("request_id"),
            job_id=params.get("job_id"),
            target_id=params.get("target_id"),
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(events, request, self)
        return paginator.get_paginated_response(AuditEventOutput(page, many=True).data)
