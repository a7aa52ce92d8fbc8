from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from config import context
from config.api import VaultAPIView, validate_input
from orgs import selectors, services
from orgs.access import (
    AGENT_TOKEN_SCOPE,
    Access,
    access_for,
    record_denied_access,
    require_person,
)
from orgs.models import Membership, Role


class OrgScopedAPIView(VaultAPIView):
    """Resolves the org from the URL once (404 for non-members), checks the role early, and
    audits every refusal (404 or 403) as a denied access."""

    # action per HTTP method, refused early (403) if the role can never do it; object-level
    # checks happen where the object is fetched (selectors' `need=`).
    required: dict[str, str] = {}
    # HTTP methods an agent token may call on this view (its own agent's runs only).
    agent_token_methods: frozenset[str] = frozenset()
    checks_agent_token_scope = True
    access: Access

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.access = access_for(principal=request.user, org_slug=kwargs["org"])
        context.update(org=self.access.org.slug)
        if self.access.agent is not None:
            if request.method not in self.agent_token_methods:
                raise DjangoPermissionDenied(AGENT_TOKEN_SCOPE)
            return
        action = self.required.get(request.method or "")
        if action:
            self.access.require_ever(action)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, (Http404, DjangoPermissionDenied, exceptions.PermissionDenied)):
            match = self.request.resolver_match
            record_denied_access(
                principal=self.request.user,
                exc=exc,
                access=getattr(self, "access", None),
                attempted=f"{self.request.method} {match.view_name if match else '?'}",
            )
        return super().handle_exception(exc)

    @property
    def person(self) -> User:
        return require_person(self.access)


class OrgOutput(serializers.Serializer):
    slug = serializers.SlugField(source="org.slug")
    name = serializers.CharField(source="org.name")
    role = serializers.CharField()


class OrgListApi(VaultAPIView):
    @extend_schema(responses=OrgOutput(many=True), operation_id="orgs_list")
    def get(self, request: Request) -> Response:
        return Response(OrgOutput(selectors.memberships_for_user(request.user), many=True).data)


# --- members -------------------------------------------------------------------------------

_ROLE_ERROR = f"Must be one of: {', '.join(Role.values)}."


class MemberOutput(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberAddInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(
        choices=Role.choices, error_messages={"invalid_choice": _ROLE_ERROR}
    )


class MemberChangeInput(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=Role.choices, error_messages={"invalid_choice": _ROLE_ERROR}
    )


class MemberListApi(OrgScopedAPIView):
    required = {"GET": "org.view", "POST": "member.manage"}

    @extend_schema(responses=MemberOutput(many=True), operation_id="members_list")
    def get(self, request: Request, org: str) -> Response:
        return Response(MemberOutput(selectors.members_list(org=self.access.org), many=True).data)

    @extend_schema(
        request=MemberAddInput, responses={201: MemberOutput}, operation_id="members_add"
    )
    def post(self, request: Request, org: str) -> Response:
        data = validate_input(MemberAddInput, request)
        user = User.objects.filter(username=data["username"], is_active=True).first()
        if user is None:
            raise exceptions.ValidationError({"username": ["No active user with this username."]})
        if selectors.members_list(org=self.access.org).filter(user=user).exists():
            raise exceptions.ValidationError(
                {"username": ["Already a member: change their role instead."]}
            )
        membership = services.membership_set(
            org=self.access.org,
            user=user,
            role=Role(data["role"]),
            acting_user=self.person,
            acting_role=self.access.role,
        )
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(OrgScopedAPIView):
    required = {"GET": "org.view", "PATCH": "member.manage", "DELETE": "member.manage"}

    def _membership(self, username: str) -> Membership:
        membership = selectors.member_get(org=self.access.org, username=username)
        if membership is None:
            raise Http404("Not found.")
        return membership

    @extend_schema(responses=MemberOutput, operation_id="members_retrieve")
    def get(self, request: Request, org: str, username: str) -> Response:
        return Response(MemberOutput(self._membership(username)).data)

    @extend_schema(request=MemberChangeInput, responses=MemberOutput, operation_id="members_update")
    def patch(self, request: Request, org: str, username: str) -> Response:
        membership = self._membership(username)
        data = validate_input(MemberChangeInput, request)
        membership = services.membership_set(
            org=self.access.org,
            user=membership.user,
            role=Role(data["role"]),
            acting_user=self.person,
            acting_role=self.access.role,
        )
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None}, operation_id="members_remove")
    def delete(self, request: Request, org: str, username: str) -> Response:
        services.membership_remove(
            membership=self._membership(username),
            acting_user=self.person,
            acting_role=self.access.role,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- personal API tokens -------------------------------------------------------------------


class TokenOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    display = serializers.CharField(help_text="The token's first characters, to recognise it.")
    state = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)

    def get_state(self, token: Any) -> str:
        return str(token.state(timezone.now()).value)


class TokenIssuedOutput(TokenOutput):
    token = serializers.SerializerMethodField(
        help_text="The token itself. Shown in this answer only: it is stored as a digest."
    )

    def get_token(self, token: Any) -> str:
        return str(self.context["plaintext"])


class TokenIssueInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


def refuse_token_minted_by_token(request: Request) -> None:
    # A stolen token must not be able to mint itself a longer-lived successor.
    if request.auth is not None:
        raise DjangoPermissionDenied("Issue API tokens from a signed-in session, not with a token.")


class PersonalTokenListApi(VaultAPIView):
    @extend_schema(responses=TokenOutput(many=True), operation_id="personal_tokens_list")
    def get(self, request: Request) -> Response:
        tokens = selectors.personal_tokens_list(user=request.user)  # type: ignore[arg-type]
        return Response(TokenOutput(tokens, many=True).data)

    @extend_schema(
        request=TokenIssueInput,
        responses={201: TokenIssuedOutput},
        operation_id="personal_tokens_issue",
    )
    def post(self, request: Request) -> Response:
        refuse_token_minted_by_token(request)
        data = validate_input(TokenIssueInput, request)
        token, plaintext = services.personal_token_issue(
            user=request.user,  # type: ignore[arg-type]
            name=data["name"],
            expires_at=data["expires_at"],
        )
        body = TokenIssuedOutput(token, context={"plaintext": plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)


class PersonalTokenDetailApi(VaultAPIView):
    @extend_schema(responses=TokenOutput, operation_id="personal_tokens_retrieve")
    def get(self, request: Request, token_id: str) -> Response:
        token = selectors.personal_token_get(user=request.user, token_id=token_id)  # type: ignore[arg-type]
        return Response(TokenOutput(token).data)

    @extend_schema(responses={204: None}, operation_id="personal_tokens_revoke")
    def delete(self, request: Request, token_id: str) -> Response:
        token = selectors.personal_token_get(user=request.user, token_id=token_id)  # type: ignore[arg-type]
        services.personal_token_revoke(token=token, acting_user=request.user)  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)
