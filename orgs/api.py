from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from config import context
from config.api import VaultAPIView
from orgs.models import Membership, Organization
from orgs.permissions import authorize
from orgs.selectors import get_membership_or_404, memberships_for_user


class OrgScopedAPIView(VaultAPIView):
    """Resolves the org from the URL once (404 for non-members) and checks the role."""

    # action name per HTTP method, looked up in orgs.permissions
    required: dict[str, str] = {}
    org: Organization
    membership: Membership

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.membership = get_membership_or_404(user=request.user, org_slug=kwargs["org"])
        self.org = self.membership.org
        context.update(org=self.org.slug)
        action = self.required.get(request.method or "")
        if action:
            authorize(self.membership, action)


class OrgOutput(serializers.Serializer):
    slug = serializers.SlugField(source="org.slug")
    name = serializers.CharField(source="org.name")
    role = serializers.CharField()


class OrgListApi(VaultAPIView):
    @extend_schema(responses=OrgOutput(many=True), operation_id="orgs_list")
    def get(self, request: Request) -> Response:
        return Response(OrgOutput(memberships_for_user(request.user), many=True).data)
