from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from orgs.selectors import memberships_for_user


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """One org: straight to its credentials. Several (or none): a list to choose from."""
    memberships = list(memberships_for_user(request.user))
    if len(memberships) == 1:
        return redirect("ui:credentials", org=memberships[0].org.slug)
    return render(request, "home.html", {"memberships": memberships})
