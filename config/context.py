"""Per-request and per-job context, carried by contextvars.

Web requests set requestId (and ip, user agent, user, org); Celery tasks set jobId and the
requestId that queued them. Logging, audit and tracing read from here, so no caller has to
pass these values down by hand.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Context:
    request_id: str | None = None
    job_id: str | None = None
    org: str | None = None
    user: str | None = None
    ip: str | None = None
    user_agent: str | None = None


_current: ContextVar[Context] = ContextVar("everesthood_context", default=Context())  # noqa: B039 - frozen

# An incoming X-Request-ID is accepted only in a shape that cannot smuggle anything into logs:
# 8-128 characters of letters, digits, dot, dash, underscore, colon.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def current() -> Context:
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """The incoming id if well formed, else a fresh one."""
    if candidate and _REQUEST_ID_RE.match(candidate):
        return candidate
    return new_request_id()


@contextmanager
def bound(**values: str | None) -> Iterator[Context]:
    """Bind context values for the duration of a block (restored afterwards)."""
    token = _current.set(replace(_current.get(), **values))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def activate(**values: str | None) -> Token[Context]:
    """Replace the whole context (a Celery task start); undo with deactivate(token)."""
    return _current.set(Context(**values))


def deactivate(token: Token[Context]) -> None:
    _current.reset(token)


def update(**values: str | None) -> None:
    """Add values to the context of the current block (e.g. the user, once authenticated)."""
    _current.set(replace(_current.get(), **values))
