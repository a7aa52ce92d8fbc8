"""The `http_request` tool: one real HTTP call with credentials injected where bindings say.

Configuration (non-secret): {"method": "GET", "url": "https://...", "headers": {...},
"body": "...", "timeout": 10}. Redirects are not followed: a redirect to another host would
carry custom credential headers (X-Api-Key ...) along, which requests only strips for
Authorization.
"""

from __future__ import annotations

import http.cookiejar
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.auth import AuthBase

from config import redaction

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
SECRET_PLACEHOLDER = "{secret}"  # noqa: S105 - a template marker, not a secret


@dataclass(frozen=True)
class Injection:
    placement: str  # header | query | basic_auth
    target: str
    template: str
    secret: str = field(repr=False)

    def rendered(self) -> str:
        # Plain replacement, not str.format: a template must not reach attributes of anything.
        return self.template.replace(SECRET_PLACEHOLDER, self.secret)


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: dict[str, Any]
    error: str = ""


def _unstorable(text: str) -> bool:
    """NUL (PostgreSQL's JSON refuses it) or a lone surrogate (UTF-8 cannot encode it)."""
    return "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text)


def _control_or_unstorable(text: str) -> bool:
    """Control characters (CR/LF would split a header or a request line) or what cannot be
    stored."""
    return _unstorable(text) or any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _url_problem(url: str) -> str | None:
    if _control_or_unstorable(url):
        return "Must not contain control characters."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "Must be an absolute http:// or https:// URL."
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "Must be an absolute http:// or https:// URL."
    if parts.username or parts.password:
        return "Credentials do not belong in the URL: bind a credential."
    sensitive_params = sorted(
        {
            k
            for k, _ in parse_qsl(parts.query, keep_blank_values=True)
            if redaction.is_sensitive_key(k)
        }
    )
    if sensitive_params:
        return (
            f"Query parameter {', '.join(sensitive_params)} carries a secret: store it as a "
            f"credential and bind it (placement query) instead."
        )
    return None


def validate_config(config: object) -> dict[str, Any]:
    """Normalised config, or ValidationError. Secret-looking headers are refused here."""
    if not isinstance(config, dict):
        raise ValidationError({"config": ["Must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    unknown = set(config) - {"method", "url", "headers", "body", "timeout"}
    if unknown:
        errors["config"] = [f"Unknown keys: {', '.join(sorted(unknown))}."]
    method = str(config.get("method", "GET")).upper()
    if method not in METHODS:
        errors["config.method"] = [f"Must be one of {', '.join(sorted(METHODS))}."]
    url = config.get("url")
    if not isinstance(url, str) or not url:
        errors["config.url"] = ["A URL is required."]
    elif problem := _url_problem(url):
        errors["config.url"] = [problem]
    headers = config.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        errors["config.headers"] = ["Must be an object of string header names and values."]
    elif any(_control_or_unstorable(k) or _control_or_unstorable(v) for k, v in headers.items()):
        errors["config.headers"] = ["Header names and values must not contain control characters."]
    else:
        sensitive = sorted(k for k in headers if redaction.is_sensitive_key(k))
        if sensitive:
            errors["config.headers"] = [
                f"Header {', '.join(sensitive)} carries a secret: store it as a credential "
                f"and bind it instead."
            ]
    body = config.get("body", "")
    if not isinstance(body, str) or len(body) > 65536:
        errors["config.body"] = ["Must be a string of at most 65536 characters."]
    elif _unstorable(body):
        errors["config.body"] = ["Must not contain NUL characters or lone surrogates."]
    timeout = config.get("timeout", settings.AGENT_HTTP_TIMEOUT_SECONDS)
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
        errors["config.timeout"] = ["Must be a number of seconds between 0 and 120."]
    if errors:
        raise ValidationError(errors)
    normalised: dict[str, Any] = {"method": method, "url": url, "headers": dict(headers)}
    if body:
        normalised["body"] = body
    if "timeout" in config:
        normalised["timeout"] = timeout
    return normalised


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """A target's cookies are never kept: they would ride along on the next run's call."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


class _NoHostLogin(AuthBase):
    """The session's auth: adds nothing. Its only purpose is to be there, because requests
    looks up ~/.netrc (or $NETRC) for a call that has no auth of its own: an agent pointed at a
    host the worker's account has a login for would call it as the operator. A binding's own
    basic auth, given per call, still takes its place."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


_local = threading.local()


def _session() -> requests.Session:
    """One session per worker thread, for its connection pool (keep-alive, TLS reuse: a new
    connection per call costs a TCP and TLS handshake). It holds no state a run could leave
    for the next: no cookies, no auth, no default headers; each call brings its own. Nor does
    it lend the worker host's logins (~/.netrc) to anyone."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.cookies.set_policy(_NoCookies())
        session.auth = _NoHostLogin()
        _local.session = session
    return session


def run(config: dict[str, Any], injections: list[Injection]) -> ToolResult:
    headers = dict(config.get("headers", {}))
    params: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    for injection in injections:
        if injection.placement == "header":
            headers[injection.target] = injection.rendered()
        elif injection.placement == "query":
            params[injection.target] = injection.rendered()
        elif injection.placement == "basic_auth":
            if injection.target:
                auth = (injection.target, injection.rendered())
            else:
                user, _, password = injection.rendered().partition(":")
                auth = (user, password)
            # The header carries base64("user:password"), which no encoding of the secret
            # alone matches: register the pair so that form is scrubbed too.
            redaction.register_basic_auth(*auth)
    limit = settings.AGENT_HTTP_MAX_BODY_BYTES
    # Read past the limit by the longest encoded secret, redact, then cut: cutting first could
    # leave the head of a secret that straddles the limit unredacted.
    margin = 3 * settings.CREDENTIAL_MAX_SECRET_BYTES
    started = time.monotonic()
    try:
        with _session().request(
            config.get("method", "GET"),
            config["url"],
            headers=headers,
            params=params or None,
            auth=auth,
            data=config.get("body") or None,
            timeout=config.get("timeout", settings.AGENT_HTTP_TIMEOUT_SECONDS),
            allow_redirects=False,
            stream=True,
        ) as response:
            raw = response.raw.read(limit + margin + 1, decode_content=True)
            status = response.status_code
            reason = response.reason
    except requests.RequestException as exc:
        # Exception text can carry the URL with a query-parameter secret: redact before use.
        message = redaction.redact_text(f"{type(exc).__name__}: {exc}")
        return ToolResult(ok=False, output={}, error=f"HTTP request failed: {message}"[:2000])
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    text = redaction.redact_text(raw.decode("utf-8", "replace"))
    truncated = len(text) > limit
    body = text[:limit]
    output = {
        "status_code": status,
        "body": body,
        "body_truncated": truncated,
        "elapsed_ms": elapsed_ms,
    }
    if status >= 400:
        return ToolResult(
            ok=False, output=output, error=f"endpoint answered {status} {reason or ''}".strip()
        )
    return ToolResult(ok=True, output=output)
