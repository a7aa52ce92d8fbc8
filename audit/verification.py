"""Walk hash chains and name the first event that does not match.

Read-only, streaming: one server-side cursor per chain (PostgreSQL; SQLite steps through its
result lazily), raw tuples, a fixed number of rows in memory however long the chain.

What is checked, per chain, in sequence order (audit/chain.py has the hash format):

- sequence numbers run 1, 2, 3, ... without gaps or repeats (a gap: events were deleted);
- each event's prev_hash is the hash of the event before it (GENESIS_HASH for the first);
- each event's hash is the hash of its fields: anything changed behind the ORM's back shows;
- the chain head (the row every writer locks) names the last event: events deleted from the
  end, or added after it without the head, show.

The walk covers the chain as far as its head was when the walk started, so writers may go on
appending meanwhile. What it cannot see: someone with write access to the database who
rewrites an event *and* every event after it *and* the head. Compare a hash recorded outside
the database (the log line of every event, an earlier `audit verify --json`) with
``anchor=``; docs/audit.md explains.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection
from django.db.models import CharField, Func, QuerySet, TextField
from django.db.models.functions import Cast

from audit.chain import (
    FORMAT_VERSION,
    GENESIS_HASH,
    SYSTEM_CHAIN,
    TEXT_FIELDS,
    chain_key,
    digest,
    format_time,
    metadata_encoding,
    stored_metadata_encoding,
)
from audit.models import AuditChainHead, AuditEvent

ALTERED = "altered"
MISSING = "missing"
INSERTED = "inserted"
REORDERED = "reordered"
BROKEN_LINK = "broken-link"
HEAD_MISMATCH = "head-mismatch"
ANCHOR_MISMATCH = "anchor-mismatch"

CHUNK_SIZE = 2000
# How far ahead a broken link looks for the event it chains to (only on failure).
LOOKAHEAD = 256

# In the order of the encoding (audit/chain.py) from "sequence" on, so a row slices into it.
_ROW_FIELDS = (
    "id",
    "hash_format",
    "hash",
    "prev_hash",
    "sequence",
    "occurred_at",
    *TEXT_FIELDS,
    "ip",
    "user_agent",
    "metadata",
)
_TEXT = slice(6, 6 + len(TEXT_FIELDS))


@dataclass(frozen=True)
class Break:
    """The first place a chain does not match: the event (id and sequence) and why."""

    reason: str
    sequence: int
    event_id: int | None
    detail: str


@dataclass
class ChainReport:
    chain: str
    events: int = 0
    head_sequence: int | None = None
    head_hash: str | None = None
    first_break: Break | None = None
    anchors_checked: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class Anchor:
    """A (sequence, hash) pair recorded outside the database."""

    sequence: int
    hash: str


def chain_keys() -> list[str]:
    """Every chain there is: those with a head, and those with events but no head (a removed
    head must not hide a chain)."""
    keys = set(AuditChainHead.objects.values_list("chain", flat=True))
    org_ids = AuditEvent.objects.order_by().values_list("org_id", flat=True).distinct()
    keys.update(chain_key(org_id) for org_id in org_ids)
    return sorted(keys, key=lambda key: (key == SYSTEM_CHAIN, key))


def _events_of(chain: str) -> QuerySet[AuditEvent]:
    if chain == SYSTEM_CHAIN:
        return AuditEvent.objects.filter(org__isnull=True)
    return AuditEvent.objects.filter(org_id=uuid.UUID(chain))


def _head(chain: str) -> tuple[int, str] | None:
    return AuditChainHead.objects.filter(chain=chain).values_list("sequence", "hash").first()


def chain_rows(
    chain: str, *, up_to: int | None = None, chunk_size: int = CHUNK_SIZE
) -> Generator[tuple[Any, ...], None, None]:
    """A chain's rows in sequence order as the walk reads them (raw tuples, streamed).
    bench/audit.py reads through this too, to measure reading apart from checking."""
    events = _events_of(chain)
    if up_to is not None:
        events = events.filter(sequence__lte=up_to)
    return _stream(events.order_by("sequence"), chunk_size)


class _UtcTimeText(Func):
    """occurred_at as audit.chain.format_time() writes it, formatted by PostgreSQL."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    output_field = CharField()


class _Host(Func):
    function = "host"  # the address without a netmask; audit.chain normalises it further
    output_field = CharField()


# On PostgreSQL, three columns come as plain text: Django's loaders for timestamptz, jsonb and
# inet are pure Python and were most of the cost of reading a chain. The values are the same
# ones the ORM would give (time in the hash's own format, the address, the JSON text).
_POSTGRESQL_TEXT = {
    "occurred_at": lambda: _UtcTimeText("occurred_at"),
    "ip": lambda: _Host("ip"),
    "metadata": lambda: Cast("metadata", TextField()),
}


def _stream(
    queryset: QuerySet[AuditEvent], chunk_size: int
) -> Generator[tuple[Any, ...], None, None]:
    # Raw tuples through the ORM's own SQL (the same placeholders and value adaptation on both
    # databases) but without building model instances or running field converters.
    fields: tuple[str, ...] = _ROW_FIELDS
    if connection.vendor == "postgresql":
        queryset = queryset.annotate(
            **{f"{name}_text": make() for name, make in _POSTGRESQL_TEXT.items()}
        )
        fields = tuple(f"{f}_text" if f in _POSTGRESQL_TEXT else f for f in _ROW_FIELDS)
    sql, params = queryset.values_list(*fields).query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        for rows in _read_ahead(cursor.fetchmany, chunk_size):
            yield from rows


def _read_ahead(
    fetch: Callable[[int], list[tuple[Any, ...]]], size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of fetch(size) until an empty one, each fetched by a thread while the caller
    checks the one before: the database's share of a walk (a third of it, and on another
    core) then overlaps the hashing, since psycopg and sqlite3 release the GIL while they wait.
    At most one chunk waits, so memory stays flat."""
    ahead: queue.Queue[list[tuple[Any, ...]] | BaseException] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            chunk: list[tuple[Any, ...]] | BaseException
            try:
                chunk = fetch(size)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                chunk = exc
            while not stop.is_set():
                try:
                    ahead.put(chunk, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if not chunk or isinstance(chunk, BaseException):
                return

    reader = threading.Thread(target=produce, name="audit-verify-read-ahead", daemon=True)
    reader.start()
    try:
        while chunk := ahead.get():
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        # The walk may stop early (a break): let the reader finish its fetch and go, before
        # anything else uses the connection or the cursor is closed.
        stop.set()
        reader.join()


def verify_chain(
    chain: str, *, anchors: tuple[Anchor, ...] = (), chunk_size: int = CHUNK_SIZE
) -> ChainReport:
    report = ChainReport(chain=chain)
    head = _head(chain)
    if head is not None:
        report.head_sequence, report.head_hash = head
    # Only up to the head as it is now: events appended during the walk are the next walk's,
    # and every event up to this head has committed already.
    rows = chain_rows(chain, up_to=head[0] if head else None, chunk_size=chunk_size)
    with contextlib.closing(rows):
        report.first_break, last = _walk(chain, rows, report)
    if report.first_break is None:
        report.first_break = _check_head(chain, head, last)
    if report.first_break is None:
        report.first_break = _check_anchors(chain, anchors, report)
    return report


def _walk(
    chain: str, rows: Iterator[tuple[Any, ...]], report: ChainReport
) -> tuple[Break | None, tuple[int, int, str] | None]:
    """Returns the first break (or None) and (id, sequence, hash) of the last good event."""
    expected_sequence = 1
    previous_hash = GENESIS_HASH
    hash_before_previous = GENESIS_HASH
    previous: tuple[int, int, str] | None = None
    for row in rows:
        event_id, hash_format, stored_hash, prev_hash, sequence, occurred_at = row[:6]
        ip, user_agent, metadata = row[-3:]
        report.events += 1
        if not isinstance(occurred_at, str):
            occurred_at = format_time(occurred_at)
        if sequence != expected_sequence:
            return _sequence_break(event_id, sequence, expected_sequence), previous
        try:
            if hash_format != FORMAT_VERSION:
                raise ValueError(f"unknown hash format {hash_format!r}")
            if isinstance(metadata, str):
                metadata = stored_metadata_encoding(metadata)
            else:
                metadata = metadata_encoding(metadata)
            computed = digest(
                prev_hash, chain, sequence, occurred_at, row[_TEXT], ip, user_agent, metadata
            )
        except (TypeError, ValueError) as exc:
            # A value no writer could have stored (malformed JSON written behind the ORM).
            return Break(ALTERED, sequence, event_id, f"a field cannot be read: {exc}"), previous
        if prev_hash != previous_hash or computed != stored_hash:
            return (
                _diagnose(
                    chain,
                    event_id=event_id,
                    sequence=sequence,
                    prev_hash=prev_hash,
                    intact=computed == stored_hash,
                    previous=previous,
                    hash_before_previous=hash_before_previous,
                    rehash=functools.partial(_hash_at, row, chain, occurred_at, metadata),
                    stored_hash=stored_hash,
                ),
                previous,
            )
        hash_before_previous = previous_hash
        previous_hash = stored_hash
        previous = (event_id, sequence, stored_hash)
        expected_sequence += 1
    return None, previous


def _hash_at(
    row: tuple[Any, ...], chain: str, occurred_at: str, metadata: Any, sequence: int
) -> str:
    """The hash the row would have at another sequence number (diagnosis only)."""
    return digest(row[3], chain, sequence, occurred_at, row[_TEXT], row[-3], row[-2], metadata)


def _sequence_break(event_id: int, sequence: int, expected: int) -> Break:
    if sequence > expected:
        missing = f"#{expected}" if sequence == expected + 1 else f"#{expected}-#{sequence - 1}"
        return Break(
            MISSING,
            expected,
            event_id,
            f"event {missing} is missing (deleted); the next event is #{sequence}",
        )
    return Break(
        INSERTED,
        sequence,
        event_id,
        f"a second event claims sequence #{sequence} (expected #{expected})",
    )


def _diagnose(
    chain: str,
    *,
    event_id: int,
    sequence: int,
    prev_hash: str,
    intact: bool,
    previous: tuple[int, int, str] | None,
    hash_before_previous: str,
    rehash: Callable[[int], str],
    stored_hash: str,
) -> Break:
    """Why this event does not match: the walk stops here, so a few extra reads are cheap."""
    expected_prev = previous[2] if previous else GENESIS_HASH
    before = f"#{previous[1]}" if previous else "the start of the chain"
    linked = prev_hash == expected_prev
    after = list(
        _events_of(chain)
        .filter(sequence__gt=sequence)
        .order_by("sequence")
        .values_list("sequence", "prev_hash", "hash")[:LOOKAHEAD]
    )
    if not linked:
        chained_to = next((seq for seq, _, later in after if later == prev_hash), None)
        if chained_to is not None:
            return Break(
                REORDERED,
                sequence,
                event_id,
                f"it chains to event #{chained_to}, which comes after it: events were reordered",
            )
        # A genuine event (its hash matches where it stood before the renumbering) that skips
        # its predecessor: the predecessor is the stranger.
        if (
            previous is not None
            and prev_hash == hash_before_previous
            and (intact or rehash(sequence - 1) == stored_hash)
        ):
            return Break(
                INSERTED,
                previous[1],
                previous[0],
                f"event #{sequence} chains to #{previous[1] - 1} directly: #{previous[1]} was "
                "inserted between them (and later events renumbered)",
            )
    if after and after[0][1] == expected_prev:
        return Break(
            INSERTED,
            sequence,
            event_id,
            f"the next event chains to {before} directly: this event was inserted",
        )
    if not intact:
        for shift in range(1, LOOKAHEAD + 1):
            for moved in (sequence + shift, sequence - shift):
                if moved >= 1 and rehash(moved) == stored_hash:
                    gone = moved < sequence
                    return Break(
                        INSERTED if gone else MISSING,
                        sequence,
                        event_id,
                        f"it was event #{moved}: {shift} event(s) before it were "
                        f"{'inserted' if gone else 'deleted'} and later events renumbered",
                    )
        what = "its fields" if linked else "its fields (prev_hash too)"
        return Break(ALTERED, sequence, event_id, f"{what} do not match its stored hash")
    return Break(
        BROKEN_LINK,
        sequence,
        event_id,
        f"it is intact but does not chain to {before}: that event was replaced with a "
        "recomputed hash, or events between them were removed or inserted and renumbered",
    )


def _check_head(
    chain: str, head: tuple[int, str] | None, last: tuple[int, int, str] | None
) -> Break | None:
    last_sequence = last[1] if last else 0
    last_hash = last[2] if last else GENESIS_HASH
    if head is None:
        if last is None:
            return None
        return Break(HEAD_MISMATCH, last_sequence, last[0], "the chain's head row is missing")
    head_sequence, head_hash = head
    if last_sequence < head_sequence:
        missing = (
            f"#{head_sequence}"
            if head_sequence == last_sequence + 1
            else f"#{last_sequence + 1}-#{head_sequence}"
        )
        return Break(
            MISSING,
            last_sequence + 1,
            None,
            f"event {missing} is missing (deleted from the end); the head names #{head_sequence}",
        )
    if head_hash != last_hash:
        return Break(
            HEAD_MISMATCH,
            last_sequence,
            last[0] if last else None,
            "the head's hash is not the last event's: the head or the last event was rewritten",
        )
    beyond = (
        _events_of(chain)
        .filter(sequence__gt=head_sequence)
        .order_by("sequence")
        .values_list("id", "sequence")
        .first()
    )
    if beyond is not None:
        # Read the head again: a writer may have appended since the walk began.
        current = _head(chain)
        if current is None or beyond[1] > current[0]:
            return Break(
                INSERTED,
                beyond[1],
                beyond[0],
                f"it comes after the chain's head (#{current[0] if current else head_sequence}): "
                "it was added behind the writer's back",
            )
    return None


def _check_anchors(chain: str, anchors: tuple[Anchor, ...], report: ChainReport) -> Break | None:
    for anchor in anchors:
        found = _events_of(chain).filter(sequence=anchor.sequence).values_list("id", "hash").first()
        if found is None or found[1] != anchor.hash.lower():
            return Break(
                ANCHOR_MISMATCH,
                anchor.sequence,
                found[0] if found else None,
                "the recorded hash for this sequence is not the one in the database: the chain "
                "was rewritten from here on (consistently, with the head)",
            )
        report.anchors_checked.append(anchor.sequence)
    return None
