"""Every endpoint and page, for every kind of caller, in the same org and in another one.

The expected status codes are computed from `orgs.permissions.RULES`, the same table the code
enforces and docs/permissions.md is rendered from, so the three cannot drift apart. The
objects of the org were created by the admin, so "own" rights never apply here (they have
their own tests in test_roles_and_grants.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from orgs.permissions import ANY, markdown_table, scope_of
from orgs.roles import Role
from tests.conftest import World

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
CALLERS = [*ROLES, "outsider", "anonymous", "agent_token"]


@dataclass(frozen=True)
class Target:
    """Where a request goes: the slug and the objects of one organisation."""

    org: str
    credential: str
    agent: str
    run: str
    token: str


def _targets(world: World) -> dict[str, Target]:
    return {
        "same_org": Target(
            "acme",
            str(world.credential.id),
            str(world.agent.id),
            str(world.run.id),
            str(world.token.id),
        ),
        "other_org": Target(
            "globex",
            str(world.foreign_credential.id),
            str(world.foreign_agent.id),
            str(world.foreign_run.id),
            str(world.foreign_token.id),
        ),
    }


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[Target], str]
    # Every action the request needs (all of them at "every object" scope: see module doc).
    actions: tuple[str, ...]
    ok: int
    body: dict[str, Any] | None = None
    agent_token: bool = False  # an agent token may call it for its own agent
    html: bool = False
    # Form fields; "{agent}" and the like are filled from the target.
    form: dict[str, str] = field(default_factory=dict)


def _api(name, method, path, actions, ok, body=None, agent_token=False) -> Endpoint:
    return Endpoint(name, method, path, tuple(actions), ok, body, agent_token)


def _page(name, method, path, actions, ok, form=None) -> Endpoint:
    return Endpoint(name, method, path, tuple(actions), ok, None, False, True, form or {})


def _c(t: Target) -> str:
    return f"/api/orgs/{t.org}/credentials/{t.credential}/"


def _a(t: Target) -> str:
    return f"/api/orgs/{t.org}/agents/{t.agent}/"


API = [
    _api(
        "credentials-list",
        "get",
        lambda t: f"/api/orgs/{t.org}/credentials/",
        ["credential.view"],
        200,
    ),
    _api(
        "credentials-create",
        "post",
        lambda t: f"/api/orgs/{t.org}/credentials/",
        ["credential.create"],
        201,
        {"name": "new-one", "secret": "s3cr3t-value"},
    ),
    _api("credential-get", "get", _c, ["credential.view"], 200),
    _api("credential-patch", "patch", _c, ["credential.change"], 200, {"description": "d"}),
    _api("credential-delete", "delete", _c, ["credential.delete"], 204),
    _api(
        "credential-secret",
        "put",
        lambda t: f"{_c(t)}secret",
        ["credential.change"],
        200,
        {"secret": "n3w-s3cr3t"},
    ),
    _api("grants-list", "get", lambda t: f"{_c(t)}grants/", ["credential.view"], 200),
    _api(
        "grants-add",
        "post",
        lambda t: f"{_c(t)}grants/",
        ["credential.grant"],
        201,
        {"user": "auditor", "permission": "use"},
    ),
    _api(
        "grant-revoke",
        "delete",
        lambda t: f"{_c(t)}grants/agent/{t.agent}/use/",
        ["credential.grant"],
        204,
    ),
    _api("agents-list", "get", lambda t: f"/api/orgs/{t.org}/agents/", ["agent.view"], 200),
    _api(
        "agents-create",
        "post",
        lambda t: f"/api/orgs/{t.org}/agents/",
        ["agent.create"],
        201,
        {"name": "new-agent", "config": {"url": "https://api.example.com/"}},
    ),
    _api("agent-get", "get", _a, ["agent.view"], 200),
    _api("agent-patch", "patch", _a, ["agent.change"], 200, {"description": "d"}),
    _api("agent-delete", "delete", _a, ["agent.delete"], 204),
    _api("runs-list", "get", lambda t: f"{_a(t)}runs/", ["run.view"], 200, agent_token=True),
    _api(
        "runs-create",
        "post",
        lambda t: f"{_a(t)}runs/",
        ["agent.run", "credential.use"],
        202,
        agent_token=True,
    ),
    _api(
        "run-get",
        "get",
        lambda t: f"/api/orgs/{t.org}/runs/{t.run}/",
        ["run.view"],
        200,
        agent_token=True,
    ),
    _api("tokens-list", "get", lambda t: f"{_a(t)}tokens/", ["agent.tokens"], 200),
    _api(
        "tokens-issue", "post", lambda t: f"{_a(t)}tokens/", ["agent.tokens"], 201, {"name": "t2"}
    ),
    _api("token-get", "get", lambda t: f"{_a(t)}tokens/{t.token}/", ["agent.tokens"], 200),
    _api("token-revoke", "delete", lambda t: f"{_a(t)}tokens/{t.token}/", ["agent.tokens"], 204),
    _api("members-list", "get", lambda t: f"/api/orgs/{t.org}/members/", ["org.view"], 200),
    _api(
        "members-add",
        "post",
        lambda t: f"/api/orgs/{t.org}/members/",
        ["member.manage"],
        201,
        {"username": "newcomer", "role": "member"},
    ),
    _api("member-get", "get", lambda t: f"/api/orgs/{t.org}/members/auditor/", ["org.view"], 200),
    _api(
        "member-patch",
        "patch",
        lambda t: f"/api/orgs/{t.org}/members/auditor/",
        ["member.manage"],
        200,
        {"role": "member"},
    ),
    _api(
        "member-remove",
        "delete",
        lambda t: f"/api/orgs/{t.org}/members/auditor/",
        ["member.manage"],
        204,
    ),
    _api("audit-list", "get", lambda t: f"/api/orgs/{t.org}/audit/", ["audit.view"], 200),
]


def _uc(t: Target) -> str:
    return f"/orgs/{t.org}/credentials/{t.credential}/"


def _ua(t: Target) -> str:
    return f"/orgs/{t.org}/agents/{t.agent}/"


PAGES = [
    _page("ui-org", "get", lambda t: f"/orgs/{t.org}/", ["org.view"], 200),
    _page("ui-members", "get", lambda t: f"/orgs/{t.org}/members/", ["org.view"], 200),
    _page(
        "ui-member-change",
        "post",
        lambda t: f"/orgs/{t.org}/members/",
        ["member.manage"],
        302,
        {"op": "change", "username": "auditor", "role": "member"},
    ),
    _page(
        "ui-credential-test",
        "post",
        lambda t: f"{_uc(t)}test",
        ["credential.use", "agent.run"],
        302,
        {"agent": "{agent}"},
    ),
    _page(
        "ui-credential-test-result",
        "get",
        lambda t: f"{_uc(t)}tests/{t.run}/",
        ["credential.view", "run.view"],
        200,
    ),
    _page(
        "ui-credentials", "get", lambda t: f"/orgs/{t.org}/credentials/", ["credential.view"], 200
    ),
    _page(
        "ui-credential-new",
        "get",
        lambda t: f"/orgs/{t.org}/credentials/new",
        ["credential.create"],
        200,
    ),
    _page(
        "ui-credential-create",
        "post",
        lambda t: f"/orgs/{t.org}/credentials/new",
        ["credential.create"],
        302,
        {"name": "new-one", "kind": "api_key", "secret": "s3cr3t-v"},
    ),
    _page("ui-credential", "get", _uc, ["credential.view"], 200),
    _page("ui-replace-form", "get", lambda t: f"{_uc(t)}replace", ["credential.change"], 200),
    _page(
        "ui-replace",
        "post",
        lambda t: f"{_uc(t)}replace",
        ["credential.change"],
        302,
        {"secret": "n3w-s3cr3t"},
    ),
    _page("ui-delete-form", "get", lambda t: f"{_uc(t)}delete", ["credential.delete"], 200),
    _page("ui-delete", "post", lambda t: f"{_uc(t)}delete", ["credential.delete"], 302),
    _page("ui-agents", "get", lambda t: f"/orgs/{t.org}/agents/", ["agent.view"], 200),
    _page("ui-agent", "get", _ua, ["agent.view"], 200),
    _page("ui-agent-run", "post", lambda t: f"{_ua(t)}run", ["agent.run", "credential.use"], 302),
    _page(
        "ui-token-issue",
        "post",
        lambda t: f"{_ua(t)}tokens/new",
        ["agent.tokens"],
        200,
        {"name": "t2"},
    ),
    _page(
        "ui-token-revoke",
        "post",
        lambda t: f"{_ua(t)}tokens/{t.token}/revoke",
        ["agent.tokens"],
        302,
    ),
    _page("ui-runs", "get", lambda t: f"/orgs/{t.org}/runs/", ["run.view"], 200),
    _page("ui-run", "get", lambda t: f"/orgs/{t.org}/runs/{t.run}/", ["run.view"], 200),
    _page("ui-audit", "get", lambda t: f"/orgs/{t.org}/audit/", ["audit.view"], 200),
]


def expected_status(endpoint: Endpoint, caller: str, where: str) -> int:
    if caller == "anonymous" or (endpoint.html and caller == "agent_token"):
        # The UI knows sessions only: a bearer token there is no login at all.
        return 302 if endpoint.html else 401
    if where == "other_org" or caller == "outsider":
        return 404
    if caller == "agent_token":
        return endpoint.ok if endpoint.agent_token else 403
    allowed = all(scope_of(Role(caller), action) is ANY for action in endpoint.actions)
    return endpoint.ok if allowed else 403


def _client(world: World, caller: str, html: bool) -> Client:
    if caller == "anonymous":
        return Client() if html else APIClient()
    if caller == "agent_token":
        client: Client = Client() if html else APIClient()
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world.token_plaintext}"
        return client
    user = world.p.by_role(caller)
    if html:
        client = Client()
        client.force_login(user)
        return client
    api = APIClient()
    api.force_authenticate(user=user)
    return api


CASES = [
    pytest.param(endpoint, caller, where, id=f"{endpoint.name}-{caller}-{where}")
    for endpoint in [*API, *PAGES]
    for caller in CALLERS
    for where in ("same_org", "other_org")
    # The outsider is the owner of the other org: from acme's point of view they are outside
    # it, which the same_org cases cover.
    if not (caller == "outsider" and where == "other_org")
]


@pytest.mark.parametrize(("endpoint", "caller", "where"), CASES)
def test_status_follows_the_matrix(world, endpoint, caller, where):
    target = _targets(world)[where]
    client = _client(world, caller, endpoint.html)
    url = endpoint.path(target)
    if endpoint.html:
        form = {k: v.format(**asdict(target)) for k, v in endpoint.form.items()}
        response = getattr(client, endpoint.method)(url, form)
    else:
        response = getattr(client, endpoint.method)(url, endpoint.body, format="json")

    want = expected_status(endpoint, caller, where)
    assert response.status_code == want, (url, response.content[:300])
    if want == 302 and caller in {"anonymous", "agent_token"}:
        assert (
            response["Location"].startswith(settings.LOGIN_URL)
            or "/accounts/login/" in response["Location"]
        )


def test_the_docs_show_the_matrix_the_code_enforces():
    docs = (Path(settings.BASE_DIR) / "docs" / "permissions.md").read_text(encoding="utf-8")
    between = docs.split("<!-- matrix:start -->\n", 1)[1].split("\n<!-- matrix:end -->", 1)[0]
    assert between == markdown_table()


def test_every_api_route_under_an_org_is_in_the_table():
    """A new endpoint without a row here would go untested: fail instead."""
    from django.urls import URLResolver, get_resolver

    covered = {e.path(Target("o", "c", "a", "r", "t")).split("/api/", 1)[-1] for e in API}
    patterns = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver) and str(pattern.pattern) == "api/":
            patterns = [str(p.pattern) for p in pattern.url_patterns]
    org_routes = [p for p in patterns if p.startswith("orgs/<slug:org>/")]
    shapes = {
        route.replace("<slug:org>", "o")
        .replace("<str:credential_id>", "c")
        .replace("<str:agent_id>", "a")
        .replace("<str:run_id>", "r")
        .replace("<str:token_id>", "t")
        .replace("<str:username>", "auditor")
        .replace("<str:grantee_type>/<str:grantee>/<str:permission>/", "agent/a/use/")
        for route in org_routes
    }
    assert org_routes, "no org-scoped API routes found"
    assert shapes <= covered, sorted(shapes - covered)
