"""How the OpenAPI schema (drf-spectacular) describes token authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class VaultTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.VaultTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "evh_at_… (agent) or evh_pt_… (personal)",
            "description": (
                "An agent token may only queue and read runs of its own agent; a personal "
                "token acts with its person's role in each organisation."
            ),
        }
