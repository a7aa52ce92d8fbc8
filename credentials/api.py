"""Write-only credential API: secrets go in through input serializers and never come out."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import SecretField, validate_input
from credentials import selectors, services
from credentials.models import Credential, CredentialKind
from orgs.api import OrgScopedAPIView


class KeyServiceUnavailable(APIException):
    """503: a KMS could not wrap the new data key; the client may retry, nothing was stored."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "key_service_unavailable"


# DRF's default invalid-choice message quotes the submitted value; ours does not.
_KIND_ERROR = f"Must be one of: {', '.join(CredentialKind.values)}."


class _SecretValidation:
    def validate_secret(self, value: str) -> str:
        try:
            return services.validate_secret(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class CredentialCreateInput(_SecretValidation, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    secret = SecretField()
    kind = serializers.ChoiceField(
        choices=CredentialKind.choices,
        default=CredentialKind.API_KEY,
        error_messages={"invalid_choice": _KIND_ERROR},
    )
    description = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default=""
    )


class CredentialUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(
        choices=CredentialKind.choices,
        required=False,
        error_messages={"invalid_choice": _KIND_ERROR},
    )
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if "secret" in unknown:
            raise serializers.ValidationError(
                {"secret": ["Replace a secret with PUT .../credentials/{id}/secret."]}
            )
        return attrs


class SecretInput(_SecretValidation, serializers.Serializer):
    secret = SecretField()


class CredentialOutput(serializers.ModelSerializer[Credential]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = Credential
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "status",
            "key_id",
            "format_version",
            "created_by",
            "created_at",
            "updated_at",
            "secret_updated_at",
            "last_used_at",
        ]
        read_only_fields = fields


class CredentialListApi(OrgScopedAPIView):
    required = {"GET": "credential.view", "POST": "credential.create"}

    @extend_schema(responses=CredentialOutput(many=True), operation_id="credentials_list")
    def get(self, request: Request, org: str) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.credential_list(org=self.access.org).select_related("created_by"),
            request,
            self,
        )
        return paginator.get_paginated_response(CredentialOutput(page, many=True).data)

    @extend_schema(
        request=CredentialCreateInput,
        responses={201: CredentialOutput},
        operation_id="credentials_create",
    )
    def post(self, request: Request, org: str) -> Response:
        data = validate_input(CredentialCreateInput, request)
        try:
            credential = services.credential_create(
                org=self.access.org,
                acting_user=self.person,
                **data,
            )
        except services.KeyServiceUnavailableError as exc:
            raise KeyServiceUnavailable(str(exc)) from None
        return Response(CredentialOutput(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailApi(OrgScopedAPIView):
    required = {
        "GET": "credential.view",
        "PATCH": "credential.change",
        "DELETE": "credential.delete",
    }

    @extend_schema(responses=CredentialOutput, operation_id="credentials_retrieve")
    def get(self, request: Request, org: str, credential_id: str) -> Response:
        credential = selectors.credential_get_for(access=self.access, credential_id=credential_id)
        return Response(CredentialOutput(credential).data)

    @extend_schema(
        request=CredentialUpdateInput,
        responses=CredentialOutput,
        operation_id="credentials_update",
    )
    def patch(self, request: Request, org: str, credential_id: str) -> Response:
        credential = selectors.credential_get_for(
            access=self.access, credential_id=credential_id, need="credential.change"
        )
        data = validate_input(CredentialUpdateInput, request, partial=True)
        credential = services.credential_update_metadata(
            credential=credential,
            acting_user=self.person,
            **data,
        )
        return Response(CredentialOutput(credential).data)

    @extend_schema(responses={204: None}, operation_id="credentials_delete")
    def delete(self, request: Request, org: str, credential_id: str) -> Response:
        credential = selectors.credential_get_for(
            access=self.access, credential_id=credential_id, need="credential.delete"
        )
        services.credential_delete(credential=credential, acting_user=self.person)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CredentialSecretApi(OrgScopedAPIView):
    required = {"PUT": "credential.change"}

    @extend_schema(
        request=SecretInput, responses=CredentialOutput, operation_id="credentials_replace_secret"
    )
    def put(self, request: Request, org: str, credential_id: str) -> Response:
        credential = selectors.credential_get_for(
            access=self.access, credential_id=credential_id, need="credential.change"
        )
        data = validate_input(SecretInput, request)
        try:
            credential = services.credential_replace_secret(
                credential=credential,
                acting_user=self.person,
                secret=data["secret"],
            )
        except services.KeyServiceUnavailableError as exc:
            raise KeyServiceUnavailable(str(exc)) from None
        return Response(CredentialOutput(credential).data)
