"""Change the audit table behind the ORM's back, as someone with the database owner's rights
would: raw SQL, and on PostgreSQL with the append-only trigger switched off first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction

TABLE = "audit_auditevent"
TRIGGER = "audit_event_append_only"


@contextmanager
def trigger_disabled() -> Iterator[None]:
    """The owner's way around the trigger (in a transaction: a failure leaves it enabled)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
        yield
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}")


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement with the trigger off; the number of rows it touched."""
    with trigger_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


def empty_audit_trail() -> None:
    """What a test database needs before Django's flush (which TRUNCATEs every table, and the
    trigger refuses a TRUNCATE of a table that holds events)."""
    if connection.vendor == "postgresql":
        execute(f"TRUNCATE {TABLE}")


def on_postgresql() -> bool:
    # Django's backend or config.postgresql, which extends it.
    return str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql")


postgresql_only = pytest.mark.skipif(
    not on_postgresql(), reason="needs the PostgreSQL server (DATABASE_URL=postgres://...)"
)
