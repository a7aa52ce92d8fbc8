"""Bulk key operations on stored credentials: re-wrap (rotation) and verification.

Rotation is built for millions of rows on a live system (figures in docs/benchmarks.md):

- keyset paging (by primary key on PostgreSQL, by rowid, the storage order, on SQLite), one
  transaction per batch, so an interruption (Ctrl-C, SIGKILL, a lost connection) loses at most
  the batch in flight, which rolls back as a whole; the rows' own key_id is the only progress
  marker, so running again resumes and never wraps twice;
- rows are read as tuples (never model objects) with SELECT ... FOR UPDATE SKIP LOCKED on
  PostgreSQL, so the rotation never waits behind a web request or worker holding a row;
  skipped rows are taken by a later pass, which waits for their locks instead; on SQLite by
  raw SQL (no ORM converters) inside the batch's BEGIN IMMEDIATE;
- one UPDATE per batch, joined to the batch COPYed into a temporary table on PostgreSQL
  (executemany by rowid on SQLite), that is also a compare-and-set on (key_id,
  wrapped_data_key): a row whose secret was replaced after it was read keeps its new envelope
  instead of being overwritten with the stale one;
- the target key's wrap counter (KeyUsage) grows in the same transaction as the rows.

Re-wrapping unwraps every data key, which is decryption: the work runs in
credentials.crypto.worker_role(). See docs/key-rotation.md for why an operator command may.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction

from config import metrics
from credentials import crypto
from credentials.models import Credential, KeyUsage
from credentials.selectors import credentials_in_scope, rows_by_key

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000
# Passes after the first wait for rows other transactions hold; more than a few means rows keep
# arriving under an old key (a web or worker process still writes with an old active key).
MAX_PASSES = 5

_TABLE = Credential._meta.db_table


@dataclass(frozen=True)
class RowFailure:
    credential_id: str
    key_id: str
    reason: str


@dataclass(frozen=True)
class BatchProgress:
    """What one committed batch did; handed to the progress callback after its commit."""

    batch: int
    rewrapped: int  # rows moved to the target key in this batch
    concurrent: int  # rows changed by someone else between read and write, left as they are
    failed: int  # rows in this batch that could not be unwrapped
    done: int  # rows moved so far in this run
    total: int  # rows on other keys when the run started
    elapsed_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[BatchProgress], None]


@dataclass
class RotationResult:
    target_key_id: str
    reencrypt: bool
    total: int = 0
    rewrapped: int = 0
    concurrent: int = 0
    batches: int = 0
    passes: int = 0
    rows_before: dict[str, int] = field(default_factory=dict)  # rows per key id, at start
    rows_after: dict[str, int] = field(default_factory=dict)  # and at the end
    failures: list[RowFailure] = field(default_factory=list)
    remaining: int = 0  # rows still on other keys when the run ended (failures included)
    interrupted: bool = False
    error: str = ""

    @property
    def complete(self) -> bool:
        return not (self.interrupted or self.error or self.failures or self.remaining)


def rotate(
    *,
    target_key_id: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    reencrypt: bool = False,
    org_id: uuid.UUID | None = None,
    keyring: crypto.Keyring | None = None,
    on_batch: ProgressCallback | None = None,
) -> RotationResult:
    """Move every row in scope that is not under ``target_key_id`` onto it.

    Returns what happened, also when interrupted (KeyboardInterrupt: the batch in flight rolled
    back) or stopped by a key service error (KeyProviderError: likewise). Rows that cannot be
    unwrapped are left untouched and listed; they never stop the run.
    """
    ring = keyring or crypto.get_keyring()
    ring.provider(target_key_id)  # KeyNotConfiguredError before anything is read
    result = RotationResult(target_key_id=target_key_id, reencrypt=reencrypt)
    result.rows_before = rows_by_key(org_id)
    result.total = sum(n for k, n in result.rows_before.items() if k != target_key_id)
    failed_ids: set[str] = set()
    started = time.monotonic()
    try:
        with crypto.worker_role():
            while result.passes < MAX_PASSES:
                result.passes += 1
                # First pass: never wait for a row someone holds. Later passes: wait, so a
                # row locked for the whole first pass is still moved.
                for progress in _one_pass(
                    ring=ring,
                    result=result,
                    batch_size=batch_size,
                    org_id=org_id,
                    skip_locked=result.passes == 1,
                    failed_ids=failed_ids,
                    started=started,
                ):
                    if on_batch is not None:
                        on_batch(progress)
                if _remaining(target_key_id, org_id) - len(failed_ids) <= 0:
                    break
    except KeyboardInterrupt:
        result.interrupted = True
    except crypto.KeyProviderError as exc:
        result.error = str(exc)
    result.rows_after = rows_by_key(org_id)
    result.remaining = sum(n for k, n in result.rows_after.items() if k != target_key_id)
    return result


def _remaining(target_key_id: str, org_id: uuid.UUID | None) -> int:
    return credentials_in_scope(org_id).exclude(key_id=target_key_id).count()


def _one_pass(
    *,
    ring: crypto.Keyring,
    result: RotationResult,
    batch_size: int,
    org_id: uuid.UUID | None,
    skip_locked: bool,
    failed_ids: set[str],
    started: float,
) -> Iterator[BatchProgress]:
    target = result.target_key_id
    reencrypt = result.reencrypt
    read_batch = _batch_reader(
        target_key_id=target,
        org_id=org_id,
        batch_size=batch_size,
        skip_locked=skip_locked,
        reencrypt=reencrypt,
    )
    after: Any = None
    while True:
        with transaction.atomic():
            rows = read_batch(after)
            if not rows:
                return
            after = rows[-1][0]
            updates: list[tuple[Any, ...]] = []
            failed = 0
            for _, row_key, credential_id, row_org_id, key_id, format_version, wrapped, ct in rows:
                if credential_id in failed_ids:
                    continue
                sealed = crypto.SealedSecret(key_id, wrapped, ct, format_version)
                context = crypto.EncryptionContext(row_org_id, credential_id, format_version)
                try:
                    if reencrypt:
                        new = crypto.reseal(sealed, context=context, to_key_id=target, keyring=ring)
                    else:
                        new = crypto.rewrap(sealed, context=context, to_key_id=target, keyring=ring)
                except (crypto.DecryptionError, crypto.KeyNotConfiguredError) as exc:
                    failed_ids.add(credential_id)
                    result.failures.append(RowFailure(credential_id, key_id, str(exc)))
                    failed += 1
                    continue
                updates.append((row_key, key_id, wrapped, new))
            changed = _compare_and_set(updates, target_key_id=target, reencrypt=result.reencrypt)
            KeyUsage.objects.add_wraps(key_id=target, count=changed)
        # Committed. Rows the compare-and-set missed were replaced concurrently (their new
        # envelope is under the active key already, or a later pass takes them).
        concurrent = len(updates) - changed
        result.rewrapped += changed
        result.concurrent += concurrent
        result.batches += 1
        metrics.observe_rotation_batch(
            to_key_id=target,
            rows=changed,
            remaining=max(result.total - result.rewrapped, 0),
            reencrypt=result.reencrypt,
        )
        yield BatchProgress(
            batch=result.batches,
            rewrapped=changed,
            concurrent=concurrent,
            failed=failed,
            done=result.rewrapped,
            total=result.total,
            elapsed_seconds=round(time.monotonic() - started, 3),
        )


# A batch as the pass reads it, one tuple per row: (paging key, key for the write, credential
# id and org id as text (the encryption context's form), key_id, format_version, wrapped data
# key, ciphertext (b"" unless re-encrypting)).
Row = tuple[Any, Any, str, str, str, int, bytes, bytes]
BatchReader = Callable[[Any], list[Row]]


def _batch_reader(
    *,
    target_key_id: str,
    org_id: uuid.UUID | None,
    batch_size: int,
    skip_locked: bool,
    reencrypt: bool,
) -> BatchReader:
    """A function that reads the batch after a paging key (None: the first), in a transaction;
    its rows' write keys are what _compare_and_set expects on this connection's backend."""
    reader = _sqlite_batch_reader if connection.vendor == "sqlite" else _orm_batch_reader
    return reader(
        target_key_id=target_key_id,
        org_id=org_id,
        batch_size=batch_size,
        skip_locked=skip_locked,
        reencrypt=reencrypt,
    )


def _orm_batch_reader(
    *,
    target_key_id: str,
    org_id: uuid.UUID | None,
    batch_size: int,
    skip_locked: bool,
    reencrypt: bool,
) -> BatchReader:
    """PostgreSQL (and any other backend): keyset paging by primary key through the ORM, rows
    locked with FOR UPDATE SKIP LOCKED on the first pass (FOR UPDATE on later ones)."""
    fields = ["id", "org_id", "key_id", "format_version", "wrapped_data_key"]
    if reencrypt:
        fields.append("ciphertext")

    def read(after: uuid.UUID | None) -> list[Row]:
        queryset = credentials_in_scope(org_id).exclude(key_id=target_key_id).order_by("pk")
        if after is not None:
            queryset = queryset.filter(pk__gt=after)
        rows = queryset.select_for_update(skip_locked=skip_locked).values_list(*fields)
        return [
            (
                row[0],
                row[0],
                str(row[0]),
                str(row[1]),
                row[2],
                row[3],
                bytes(row[4]),
                bytes(row[5]) if reencrypt else b"",
            )
            for row in rows[:batch_size]
        ]

    return read


def _sqlite_batch_reader(
    *,
    target_key_id: str,
    org_id: uuid.UUID | None,
    batch_size: int,
    skip_locked: bool,
    reencrypt: bool,
) -> BatchReader:
    """SQLite: raw SQL, keyset paging by rowid, i.e. in the table's storage order.

    Paging by the (random) UUID primary key made each batch's UPDATE touch ~1,000 table pages
    scattered over the file, and as many leaf pages of the key_id index, all rewritten into
    the WAL at commit; in rowid order a batch rewrites a few hundred adjacent pages. A rowid
    is stable for the length of the batch's transaction (BEGIN IMMEDIATE: nobody else writes,
    and a VACUUM, which may renumber rowids, cannot run); should one run between batches, rows
    it moved behind the cursor are taken by the next pass, as rows on other keys always are.
    Raw SQL also skips the ORM's UUID converters (~15% of the time). No FOR UPDATE: SQLite
    has no row locks, the transaction's write lock covers the table. ``skip_locked`` is moot.
    """
    columns = "rowid, id, org_id, key_id, format_version, wrapped_data_key"
    if reencrypt:
        columns += ", ciphertext"
    sql = (
        f"SELECT {columns} FROM {_TABLE} "  # noqa: S608 - fixed names, values are parameters
        f"WHERE rowid > %s AND key_id <> %s{' AND org_id = %s' if org_id else ''} "
        f"ORDER BY rowid LIMIT %s"
    )
    org_param = [_uuid_db_value(org_id)] if org_id else []
    org_text: dict[str, str] = {}

    def read(after: int | None) -> list[Row]:
        with connection.cursor() as cursor:
            cursor.execute(
                sql, [-1 if after is None else after, target_key_id, *org_param, batch_size]
            )
            fetched = cursor.fetchall()
        rows: list[Row] = []
        append = rows.append
        for row in fetched:
            db_id, db_org = row[1], row[2]
            org = org_text.get(db_org)
            if org is None:
                org = org_text[db_org] = str(uuid.UUID(db_org))
            append(
                (
                    row[0],
                    (row[0], db_id),
                    _hex_uuid_text(db_id),
                    org,
                    row[3],
                    row[4],
                    row[5],
                    row[6] if reencrypt else b"",
                )
            )
        return rows

    return read


def _uuid_db_value(value: uuid.UUID | str) -> Any:
    return Credential._meta.get_field("id").get_db_prep_value(value, connection)


def _hex_uuid_text(value: str) -> str:
    """A UUID as Django stores it on SQLite (32 lowercase hex digits) in its text form, as
    str(uuid.UUID(value)) gives it, in a third of the time."""
    if len(value) == 32:
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return str(uuid.UUID(value))


def _compare_and_set(updates: list[tuple[Any, ...]], *, target_key_id: str, reencrypt: bool) -> int:
    """Write new envelopes where a row still holds the (key_id, wrapped key) it was read with.
    Returns the number of rows written."""
    if not updates:
        return 0
    if connection.vendor == "postgresql":
        return _compare_and_set_postgresql(
            updates, target_key_id=target_key_id, reencrypt=reencrypt
        )
    set_ciphertext = ", ciphertext = %s" if reencrypt else ""
    rows: list[tuple[Any, ...]]
    if connection.vendor == "sqlite":
        # The row key is (rowid, id) from _sqlite_batch_reader: the row found by rowid (no
        # primary-key index lookup per row), and still the row that was read.
        where = "rowid = %s AND id = %s"
        rows = [
            (
                target_key_id,
                new.wrapped_data_key,
                *((new.ciphertext,) if reencrypt else ()),
                rowid,
                db_id,
                old_key_id,
                old_wrap,
            )
            for (rowid, db_id), old_key_id, old_wrap, new in updates
        ]
    else:
        where = "id = %s"
        rows = [
            (
                target_key_id,
                new.wrapped_data_key,
                *((new.ciphertext,) if reencrypt else ()),
                _uuid_db_value(credential_id),
                old_key_id,
                old_wrap,
            )
            for credential_id, old_key_id, old_wrap, new in updates
        ]
    sql = (
        f"UPDATE {_TABLE} SET key_id = %s, wrapped_data_key = %s{set_ciphertext} "  # noqa: S608 - fixed names, values are parameters
        f"WHERE {where} AND key_id = %s AND wrapped_data_key = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return int(cursor.rowcount)


_REWRAP_TABLE = "credential_rewrap_batch"


def _compare_and_set_postgresql(
    updates: list[tuple[Any, ...]], *, target_key_id: str, reencrypt: bool
) -> int:
    """Binary COPY of the batch into a session-local temporary table, then one UPDATE joined
    to it: no SQL text that grows with the batch for the client to build or the server to
    parse (a VALUES list of 1,000 rows with their bytea literals is ~300 KB of SQL)."""
    with connection.cursor() as cursor:
        # ON COMMIT DELETE ROWS: every batch's transaction starts with the table empty.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_REWRAP_TABLE} (id uuid, old_key_id text, "
            f"old_wrap bytea, new_wrap bytea, new_ciphertext bytea) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(
            f"COPY {_REWRAP_TABLE} (id, old_key_id, old_wrap, new_wrap, new_ciphertext) "
            f"FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "text", "bytea", "bytea", "bytea"])
            for credential_id, old_key_id, old_wrap, new in updates:
                copy.write_row(
                    (
                        credential_id,
                        old_key_id,
                        old_wrap,
                        new.wrapped_data_key,
                        new.ciphertext if reencrypt else None,
                    )
                )
        # The planner's default guess for a temporary table (~1,000 rows) makes it look the
        # batch up by primary key on large tables (measured at 100,000 rows: a nested loop
        # on the pkey index), and hash a small table whole, which is cheaper there.
        new_ciphertext = ", ciphertext = v.new_ciphertext" if reencrypt else ""
        cursor.execute(
            f"UPDATE {_TABLE} AS c SET key_id = %s, wrapped_data_key = v.new_wrap{new_ciphertext} "  # noqa: S608 - fixed names, values are parameters
            f"FROM {_REWRAP_TABLE} AS v "
            f"WHERE c.id = v.id AND c.key_id = v.old_key_id AND c.wrapped_data_key = v.old_wrap",
            [target_key_id],
        )
        return int(cursor.rowcount)


@dataclass
class VerifyResult:
    ok_by_key: dict[str, int] = field(default_factory=dict)
    failures: list[RowFailure] = field(default_factory=list)
    checked: int = 0

    @property
    def failed_by_key(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for failure in self.failures:
            counts[failure.key_id] = counts.get(failure.key_id, 0) + 1
        return counts


def verify(
    *,
    org_id: uuid.UUID | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keyring: crypto.Keyring | None = None,
) -> VerifyResult:
    """Unwrap and decrypt every row in scope; plaintexts are dropped at once, never returned.

    A key service error (KeyProviderError) propagates: with the service unreachable, every row
    under its key would fail the same way, after the same retries.
    """
    ring = keyring or crypto.get_keyring()
    result = VerifyResult()
    after: uuid.UUID | None = None
    fields = ("id", "org_id", "key_id", "format_version", "wrapped_data_key", "ciphertext")
    with crypto.worker_role():
        while True:
            queryset = credentials_in_scope(org_id).order_by("pk")
            if after is not None:
                queryset = queryset.filter(pk__gt=after)
            rows = list(queryset.values_list(*fields)[:batch_size])
            if not rows:
                return result
            after = rows[-1][0]
            for credential_id, row_org_id, key_id, format_version, wrapped, ciphertext in rows:
                result.checked += 1
                sealed = crypto.SealedSecret(
                    key_id=key_id,
                    wrapped_data_key=bytes(wrapped),
                    ciphertext=bytes(ciphertext),
                    format_version=format_version,
                )
                context = crypto.EncryptionContext(
                    org_id=str(row_org_id),
                    credential_id=str(credential_id),
                    format_version=format_version,
                )
                try:
                    crypto.open_sealed(sealed, context=context, keyring=ring)
                except (crypto.DecryptionError, crypto.KeyNotConfiguredError) as exc:
                    result.failures.append(RowFailure(str(credential_id), key_id, str(exc)))
                else:
                    result.ok_by_key[key_id] = result.ok_by_key.get(key_id, 0) + 1
