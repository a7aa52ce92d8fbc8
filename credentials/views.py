"""Credential pages. Secrets are accepted on two forms and never rendered anywhere."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from config.forms import add_service_errors
from credentials import selectors, services
from credentials.forms import CredentialCreateForm, SecretReplaceForm
from credentials.models import Credential
from orgs.access import Access
from orgs.views import org_view, render_org_page

PAGE_SIZE = 50


def _bound_agent_names(credential: Credential) -> list[str]:
    # Through the org-scoped credential, so only this org's agents can appear.
    return sorted(set(credential.bindings.values_list("agent__name", flat=True)))


def _testable_agents(access: Access, credential: Credential) -> list[Any]:
    """Agents bound to this credential that this person may run: `agent.run`, and
    `credential.use` on every credential each of them is bound to (reached through the
    bindings, so this app needs nothing from `agents`)."""
    if not access.can("credential.use", credential):
        return []
    agents = {b.agent_id: b.agent for b in credential.bindings.select_related("agent")}
    runnable = []
    for agent in sorted(agents.values(), key=lambda a: a.name):
        needed = [b.credential for b in agent.bindings.select_related("credential")]
        access.prefetch_grants(needed)
        if access.can("agent.run", agent) and all(access.can("credential.use", c) for c in needed):
            runnable.append(agent)
    return runnable


@require_GET
@org_view("credential.view")
def credential_list(request: HttpRequest, access: Access) -> HttpResponse:
    credentials = selectors.credential_list(org=access.org).prefetch_related("bindings__agent")
    page = Paginator(credentials, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        (credential, sorted({b.agent.name for b in credential.bindings.all()}))
        for credential in page
    ]
    return render_org_page(
        request,
        access,
        "credentials/credential_list.html",
        {"page": page, "rows": rows},
        section="credentials",
    )


@sensitive_post_parameters("secret")
@never_cache
@require_http_methods(["GET", "POST"])
@org_view("credential.create")
def credential_create(request: HttpRequest, access: Access) -> HttpResponse:
    form = CredentialCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            credential = services.credential_create(
                org=access.org,
                acting_user=access.user,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                description=form.cleaned_data["description"],
                secret=form.cleaned_data["secret"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except services.KeyServiceUnavailableError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Credential “{credential.name}” created.")
            return redirect("ui:credential", org=access.org.slug, credential_id=credential.id)
    return render_org_page(
        request,
        access,
        "credentials/credential_create.html",
        {"form": form},
        section="credentials",
    )


@require_GET
@org_view("credential.view")
def credential_detail(request: HttpRequest, access: Access, credential_id: str) -> HttpResponse:
    credential = selectors.credential_get_for(access=access, credential_id=credential_id)
    return render_org_page(
        request,
        access,
        "credentials/credential_detail.html",
        {
            "credential": credential,
            "bound_agents": _bound_agent_names(credential),
            "may_change": access.can("credential.change", credential),
            "may_delete": access.can("credential.delete", credential),
            "testable_agents": _testable_agents(access, credential),
        },
        section="credentials",
    )


@sensitive_post_parameters("secret")
@never_cache
@require_http_methods(["GET", "POST"])
@org_view("credential.change")
def credential_replace(request: HttpRequest, access: Access, credential_id: str) -> HttpResponse:
    credential = selectors.credential_get_for(
        access=access, credential_id=credential_id, need="credential.change"
    )
    form = SecretReplaceForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            services.credential_replace_secret(
                credential=credential,
                acting_user=access.user,
                secret=form.cleaned_data["secret"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        except services.KeyServiceUnavailableError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Secret of “{credential.name}” replaced.")
            return redirect("ui:credential", org=access.org.slug, credential_id=credential.id)
    return render_org_page(
        request,
        access,
        "credentials/credential_replace.html",
        {"credential": credential, "form": form},
        section="credentials",
    )


@require_http_methods(["GET", "POST"])
@org_view("credential.delete")
def credential_delete(request: HttpRequest, access: Access, credential_id: str) -> HttpResponse:
    credential = selectors.credential_get_for(
        access=access, credential_id=credential_id, need="credential.delete"
    )
    if request.method == "POST":
        name = credential.name
        services.credential_delete(credential=credential, acting_user=access.user)
        messages.success(request, f"Credential “{name}” deleted.")
        return redirect("ui:credentials", org=access.org.slug)
    return render_org_page(
        request,
        access,
        "credentials/credential_confirm_delete.html",
        {"credential": credential, "bound_agents": _bound_agent_names(credential)},
        section="credentials",
    )
