"""Read and write credential rows behind the ORM's back, as an attacker with DB access would."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.db import connection

Envelope = tuple[str, bytes, bytes]


def _pk(credential_id: uuid.UUID | str) -> uuid.UUID | str:
    key = uuid.UUID(str(credential_id))
    return key.hex if connection.vendor == "sqlite" else key


def read_envelope(credential_id: uuid.UUID | str) -> Envelope:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key_id, wrapped_data_key, ciphertext FROM credentials_credential WHERE id = %s",
            [_pk(credential_id)],
        )
        key_id, wrapped, ciphertext = cursor.fetchone()
    return key_id, bytes(wrapped), bytes(ciphertext)


def write_envelope(credential_id: uuid.UUID | str, envelope: Envelope) -> None:
    key_id, wrapped, ciphertext = envelope
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE credentials_credential SET key_id = %s, wrapped_data_key = %s, "
            "ciphertext = %s WHERE id = %s",
            [key_id, wrapped, ciphertext, _pk(credential_id)],
        )


def all_stored_bytes() -> bytes:
    """Every byte the database holds for this test: the SQLite file (with its WAL) or, on
    PostgreSQL, a text dump of every table of the project's apps."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(FULL)")
        name = Path(connection.settings_dict["NAME"])
        return b"".join(p.read_bytes() for p in (name, Path(f"{name}-wal")) if p.exists())
    chunks: list[bytes] = []
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from introspection
            for row in cursor.fetchall():
                for value in row:
                    chunks.append(
                        bytes(value) if isinstance(value, memoryview) else str(value).encode()
                    )
    return b"\n".join(chunks)
