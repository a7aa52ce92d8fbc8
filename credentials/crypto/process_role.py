"""Which process may decrypt: only a Celery worker (set by the worker at start).

This is defence in depth, not a boundary against code running in the web process (which has
the keys): it makes a view, serializer, form or command that tries to decrypt fail loudly in
development and tests, instead of quietly turning the web tier into a decryption oracle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from credentials.crypto.errors import DecryptionNotAllowedError

_worker = False


def enable_decryption() -> None:
    """Called once by the Celery worker process at start (config.celery signals)."""
    global _worker
    _worker = True


def decryption_enabled() -> bool:
    return _worker


def require_decryption_allowed() -> None:
    if not _worker:
        raise DecryptionNotAllowedError()


@contextmanager
def worker_role() -> Iterator[None]:
    """Act as a worker for a block: operator commands that verify keys, and tests."""
    global _worker
    previous = _worker
    _worker = True
    try:
        yield
    finally:
        _worker = previous
