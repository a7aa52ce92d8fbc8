from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from audit.forms import PAGE_SIZE, AuditCursorForm, AuditFilterForm
from audit.models import AuditEvent
from audit.selectors import audit_event_page
from orgs.api import OrgScopedAPIView


class AuditEventOutput(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "sequence",
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
            "prev_hash",
            "hash",
        ]


class AuditPageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="older events")
    previous = serializers.URLField(allow_null=True, help_text="newer events")
    results = AuditEventOutput(many=True)


def _page_url(request: Request, key: str, value: int | None) -> str | None:
    if value is None:
        return None
    url = request.build_absolute_uri()
    for cursor in ("before", "after"):
        url = remove_query_param(url, cursor)
    return replace_query_param(url, key, value)


class AuditListApi(OrgScopedAPIView):
    required = {"GET": "audit.view"}

    @extend_schema(
        responses=AuditPageOutput,
        parameters=[
            OpenApiParameter(name, int, required=False) for name in AuditCursorForm.base_fields
        ]
        + [
            OpenApiParameter(name, str, required=False, description=str(field.label or ""))
            for name, field in AuditFilterForm.base_fields.items()
        ],
        operation_id="audit_list",
        description="The org's trail, newest first, filtered by exact matches. Page with the "
        "`next` (older) and `previous` (newer) links: they carry a sequence cursor, so a page "
        f"costs the same however long the trail is. {PAGE_SIZE} events a page unless `limit`.",
    )
    def get(self, request: Request, org: str) -> Response:
        filters = AuditFilterForm(request.query_params)
        cursor = AuditCursorForm(request.query_params)
        if not all([filters.is_valid(), cursor.is_valid()]):  # both run: every error reported
            # config.api turns this into a 400 with field errors.
            raise ValidationError({**filters.errors.as_data(), **cursor.errors.as_data()})
        page = audit_event_page(
            org=self.access.org,
            filters=filters.filters(),
            before=cursor.cleaned_data["before"],
            after=cursor.cleaned_data["after"],
            size=cursor.cleaned_data["limit"] or PAGE_SIZE,
        )
        return Response(
            {
                "next": _page_url(request, "before", page.older),
                "previous": _page_url(request, "after", page.newer),
                "results": AuditEventOutput(page.events, many=True).data,
            }
        )
