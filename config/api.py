"""REST plumbing shared by every app: renderer, error handling, the org-scoped base view."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from config import context


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Django ValidationError from services as a 400 with field errors."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail: dict[str, list[str]] = {
                field: [str(m) for m in messages] for field, messages in exc.message_dict.items()
            }
        else:
            detail = {"non_field_errors": [str(m) for m in exc.messages]}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class SecretField(serializers.CharField):
    """Input only: never serialised, never given an initial value, never echoed in errors."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(
            write_only=True,
            trim_whitespace=False,
            style={"input_type": "password", "autocomplete": "new-password"},
        )
        super().__init__(**kwargs)

    def get_initial(self) -> str:
        return ""

    def to_internal_value(self, data: Any) -> str:
        # CharField would turn 12345 into "12345": a secret must arrive as a string.
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


def validate_input(
    serializer_class: type[serializers.Serializer], request: Request, *, partial: bool = False
) -> dict[str, Any]:
    """Validated input or a 400 (raised) with field errors."""
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class VaultAPIView(APIView):
    """Base of every API view: once DRF has authenticated the request (session now, tokens
    later), the user joins the request context of every log line and audit event."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.user and request.user.is_authenticated:
            context.update(user=request.user.get_username())

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Nothing the API answers belongs in a shared or browser cache: metadata of secrets
        # is still sensitive, and a cached 200 would outlive a revoked session.
        response["Cache-Control"] = "no-store"
        return response
