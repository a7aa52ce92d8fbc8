"""Redaction of secrets from anything that leaves the process as text: log lines, span
attributes and events, stored run output.

Three nets, as a CI system masks secrets:
- by key name: values under keys such as ``password``, ``secret``, ``token``, ``authorization``
  are replaced at any depth of a mapping (and in URL query parameters of that name);
- by value: every plaintext a worker decrypted for the current job is registered here (with the
  encodings a tool would send it in, including the ``Basic`` header form) and scrubbed from any
  string;
- by pattern: our own token prefix and bearer/basic/token authorization values.
"""

from __future__ import annotations

import base64
import bisect
import datetime
import functools
import html
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

REDACTED = "[REDACTED]"

# Compared after lowercasing and dropping separators, so "X-Api-Key", "api_key" and "apiKey"
# all match "apikey".
_SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "apikey",
    "cookie",
    "credential",
    "privatekey",
    "sessionid",
    "csrf",
    "signature",
)
# Keys that contain a sensitive part but name metadata, not a secret value.
_SAFE_KEYS = frozenset({"credentialid", "credentialname", "credentialkind", "credentials"})
_KEY_SEPARATORS = re.compile(r"[^a-z0-9]")

# Our token prefix; an authorization scheme followed by its credential; a URL query parameter
# (`?name=value`, `&name=value`), whose value is redacted when its name is sensitive. Each runs
# only when a plain substring test says it could match: most text has none of them, and a
# regex scan costs more than the rest of a log record's formatting.
_OUR_TOKEN = re.compile(r"\bevh_[A-Za-z0-9_-]{8,}")
_AUTHORIZATION = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_QUERY_PARAMETER = re.compile(r"([?&])([^=&\s#?\"'<>]{1,128})=[^&\s#\"'<>]+")
_SHORTEST_AUTHORIZATION = len("basic ") + 8

# Shorter values are not scrubbed by value: a 1-3 character "secret" would mangle every line.
MIN_VALUE_LENGTH = 4


class _JobSecrets:
    """The values registered in one job, longest first (a value that contains another is
    replaced whole), with their negated lengths to skip those longer than a text by bisection.
    The pair is replaced, never mutated, so a reader in another thread sees a consistent one."""

    __slots__ = ("_lock", "table")

    def __init__(self) -> None:
        self.table: tuple[tuple[str, ...], tuple[int, ...]] = ((), ())
        self._lock = threading.Lock()

    def add(self, forms: set[str]) -> None:
        with self._lock:
            known = sorted(set(self.table[0]) | forms, key=len, reverse=True)
            self.table = (tuple(known), tuple(-len(v) for v in known))

    def scrub(self, text: str) -> str:
        values, negated_lengths = self.table
        # Only values no longer than the text can occur in it.
        for value in values[bisect.bisect_left(negated_lengths, -len(text)) :]:
            if value in text:
                text = text.replace(value, REDACTED)
        return text


_job_secrets: ContextVar[_JobSecrets | None] = ContextVar("everesthood_job_secrets", default=None)
# Values registered outside any scope (a command that decrypts): scrubbed for the rest of the
# process, since no scope end says when they may be forgotten.
_unscoped = _JobSecrets()


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and is_sensitive_name(key)


@functools.lru_cache(maxsize=4096)
def is_sensitive_name(key: str) -> bool:
    # Cached: keys are mostly code constants (extra names, header names), seen on every line.
    folded = _KEY_SEPARATORS.sub("", key.lower())
    if folded in _SAFE_KEYS:
        return False
    return any(part in folded for part in _SENSITIVE_KEY_PARTS)


def _encodings(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    b64 = base64.b64encode(raw).decode("ascii")
    # How an endpoint that echoes the secret back writes it: JSON string content with and
    # without ASCII escapes, and with PHP's escaped slashes; HTML; hex.
    json_forms = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        *json_forms,
        *(form.replace("/", "\\/") for form in json_forms),
        html.escape(secret),
        raw.hex(),
        raw.hex().upper(),
    }
    return {form for form in forms if len(form) >= MIN_VALUE_LENGTH}


def register_secret(secret: str) -> None:
    """Scrub this value (and its common encodings) from everything logged or traced in the
    current secret scope. Outside any scope it is scrubbed for the rest of the process:
    scrubbing too long beats forgetting too early."""
    if len(secret) < MIN_VALUE_LENGTH:
        return
    (_job_secrets.get() or _unscoped).add(_encodings(secret))


def register_basic_auth(username: str, password: str) -> None:
    """The password, and the `user:password` pair whose base64 is the `Basic` header value."""
    register_secret(password)
    register_secret(f"{username}:{password}")


@contextmanager
def secret_scope() -> Iterator[None]:
    """Secrets registered inside the block are scrubbed until the outermost scope ends.

    A Celery task's scope opens at task_prerun and closes at task_postrun (config.celery), so
    it outlives the code that registers secrets: the worker's own "raised unexpected"
    line, the task span (which ends after the job body) and the exception event recorded on
    it are still scrubbed by value. A nested scope joins the enclosing one.
    """
    if _job_secrets.get() is not None:
        yield
        return
    token = _job_secrets.set(_JobSecrets())
    try:
        yield
    finally:
        _job_secrets.reset(token)


def _authorization(match: re.Match[str]) -> str:
    return f"{match.group(1)} {REDACTED}"


def _query_parameter(match: re.Match[str]) -> str:
    lead, name = match.group(1), match.group(2)
    if is_sensitive_name(urllib.parse.unquote_plus(name) if "%" in name or "+" in name else name):
        return f"{lead}{name}={REDACTED}"
    return match.group(0)


def redact_text(text: str) -> str:
    length = len(text)
    if length < MIN_VALUE_LENGTH:
        return text  # shorter than any registered value and than any pattern's match
    holder = _job_secrets.get()
    if holder is not None:
        values, negated_lengths = holder.table
        # (JobSecrets.scrub, inlined: this runs for every string of every log line.)
        for value in values[bisect.bisect_left(negated_lengths, -length) :]:
            if value in text:
                text = text.replace(value, REDACTED)
    if _unscoped.table[0]:
        text = _unscoped.scrub(text)
    if "evh_" in text:
        text = _OUR_TOKEN.sub(REDACTED, text)
    if len(text) >= _SHORTEST_AUTHORIZATION:
        lowered = text.lower()
        if "bearer" in lowered or "basic" in lowered or "token" in lowered:
            text = _AUTHORIZATION.sub(_authorization, text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY_PARAMETER.sub(_query_parameter, text)
    return text


def redact_query(query: str) -> str:
    """A bare query string (`a=1&token=x`, as in a span's url.query), redacted by name too."""
    return redact_text(f"?{query}")[1:]


# Values a JSON formatter renders faithfully and that cannot carry text of their own.
_PLAIN_TYPES = (bool, int, float, type(None), datetime.date, datetime.time, uuid.UUID)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of value with secrets replaced: by key name at any depth, by value and pattern.

    Any other object becomes its redacted str(): a formatter would call str() on it later,
    after redaction (Django's request logger passes the request object, whose str() carries
    the path and query string).
    """
    if _depth > 20:
        return REDACTED
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if kind is dict:  # the common case, without the slower ABC check below
        return {
            k: (
                REDACTED
                if (is_sensitive_name(k) if type(k) is str else False)
                else redact_text(v)
                if type(v) is str
                else redact(v, _depth=_depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_sensitive_key(k) else redact(v, _depth=_depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth=_depth + 1) for v in value]
    return redact_text(str(value))
