"""GET /api/metrics: django-prometheus's exposition, for staff sessions and the scraper only.

A request with an Authorization header is judged by it alone: `Bearer <METRICS_TOKEN>`
(compared in constant time) or 401. Without one, a staff session is let in, any other session
gets 403 and no session 401. Every refusal is audited as `metrics.access_denied`.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from audit.models import Outcome
from audit.services import Actor, Target, record_event

DENIED_ACTION = "metrics.access_denied"
_BEARER = "bearer "


def _token_matches(given: str) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    # Digests of equal length: compare_digest then reveals neither content nor length.
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _refusal(request: HttpRequest) -> tuple[int, str] | None:
    """(status, reason) if the request may not read the metrics, else None."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        if authorization[: len(_BEARER)].lower() == _BEARER and _token_matches(
            authorization[len(_BEARER) :].strip()
        ):
            return None
        return 401, "invalid_token"
    user = request.user
    if not user.is_authenticated:
        return 401, "no_credentials"
    if not (user.is_active and user.is_staff):
        return 403, "not_staff"
    return None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        status, reason = refusal
        with transaction.atomic():
            record_event(
                action=DENIED_ACTION,
                org=None,
                actor=Actor.for_user(request.user),
                target=Target("endpoint", "/api/metrics"),
                outcome=Outcome.DENIED,
                metadata={"reason": reason, "status": status},
            )
        response = HttpResponse(
            "Staff session or metrics token required.\n" if status == 401 else "Staff only.\n",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
        if status == 401:
            error = ', error="invalid_token"' if reason == "invalid_token" else ""
            response["WWW-Authenticate"] = f'Bearer realm="metrics"{error}'
    else:
        response = ExportToDjangoView(request)
    response["Cache-Control"] = "no-store"
    return response
