"""Request context: requestId in, requestId out, and the values every log line carries."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from config import context

REQUEST_ID_HEADER = "X-Request-ID"


class RequestContextMiddleware:
    """Accept a well-formed X-Request-ID or make one; echo it; bind it for the request.

    Outermost middleware: everything after it - the request span (which takes the requestId
    as an attribute when it starts), metrics, every log line and audit event - runs with the
    requestId bound.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = context.accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        with context.bound(
            request_id=request_id,
            job_id=None,
            org=None,
            user=None,
            ip=request.META.get("REMOTE_ADDR"),
            user_agent=(request.headers.get("User-Agent") or "")[:512] or None,
        ):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class RequestUserContextMiddleware:
    """After authentication: add the user to the context of this request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            context.update(user=user.get_username())
        return self.get_response(request)


class SignedInPagesNotCachedMiddleware:
    """Nothing answered to a signed-in person is stored by the browser or a proxy (unless the
    view set its own Cache-Control): credential metadata, members and the audit trail must not
    come back from a cache, or from the back button, after sign-out. The API answers no-store
    itself (token requests are not signed in here)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
