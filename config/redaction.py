"""Redaction of secrets from anything that leaves the process as text.

Three nets, as a CI system masks secrets:
- by key name: values under keys such as ``password``, ``secret``, ``token``, ``authorization``
  are replaced at any depth of a mapping;
- by value: every plaintext a worker decrypted for the current job is registered here (with the
  encodings a tool would send it in) and scrubbed from any string;
- by pattern: our own token prefix and bearer headers.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
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

_PATTERNS = (
    re.compile(r"\bevh_[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
)

# Secrets registered for the current job. A tuple, replaced not mutated, so a context copy
# (a thread started inside the job) sees a consistent snapshot.
_job_secrets: ContextVar[tuple[str, ...]] = ContextVar("everesthood_job_secrets", default=())

# Shorter values are not scrubbed by value: a 1-3 character "secret" would mangle every line.
MIN_VALUE_LENGTH = 4


def is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    folded = re.sub(r"[^a-z0-9]", "", key.lower())
    if folded in _SAFE_KEYS:
        return False
    return any(part in folded for part in _SENSITIVE_KEY_PARTS)


def _encodings(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        base64.b64encode(raw).decode("ascii"),
        base64.urlsafe_b64encode(raw).decode("ascii"),
        base64.b64encode(raw).decode("ascii").rstrip("="),
    }
    return {form for form in forms if len(form) >= MIN_VALUE_LENGTH}


def register_secret(secret: str) -> None:
    """Scrub this value (and its common encodings) from everything logged in this job."""
    if len(secret) < MIN_VALUE_LENGTH:
        return
    known = set(_job_secrets.get())
    known.update(_encodings(secret))
    # Longest first, so a value that contains another is replaced whole.
    _job_secrets.set(tuple(sorted(known, key=len, reverse=True)))


@contextmanager
def secret_scope() -> Iterator[None]:
    """Secrets registered inside the block are forgotten when it ends."""
    token = _job_secrets.set(_job_secrets.get())
    try:
        yield
    finally:
        _job_secrets.reset(token)


def redact_text(text: str) -> str:
    for value in _job_secrets.get():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: f"{m.group(1)} {REDACTED}" if m.lastindex else REDACTED,
            text,
        )
    return text


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of value with secrets replaced: by key name at any depth, by value and pattern."""
    if _depth > 20:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_sensitive_key(k) else redact(v, _depth=_depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth=_depth + 1) for v in value]
    return value
