"""The OpenAPI schema builds without a warning and describes both ways in."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_schema_validates_without_warnings_and_names_the_bearer_scheme():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--format",
        "openapi-json",
        stdout=out,
        stderr=err,
    )
    schema = json.loads(out.getvalue())
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "evh_at_… (agent) or evh_pt_… (personal)",
        "description": schemes["apiToken"]["description"],
    }
    assert "cookieAuth" in schemes
    run_create = schema["paths"]["/api/orgs/{org}/agents/{agent_id}/runs/"]["post"]
    assert {"apiToken": []} in run_create["security"]
