"""Writes compiled by the ORM and sent several to a round trip, for the agent-run path.

An agent run writes about a dozen rows, and on PostgreSQL each statement Django sends is a
round trip to the server: 0.1-0.45 ms alone on the 2-vCPU host of docs/benchmarks.md, and
0.5-1.5 ms inside a run there, so they make up a large part of a run's latency. Most of
these writes are statements whose result nobody reads (an UPDATE of a status, the INSERT of
a row whose key is made in Python). They can travel with the next statement that is read
(`sent_with_next`), or with the transaction's COMMIT (`sent_by_commit`): PostgreSQL takes
several statements in one query string, and Django's default psycopg cursor binds
parameters on the client, so one `execute` sends them all and the server runs them in
order, in the caller's transaction, stopping at the first error (which then fails the
transaction). The queue is the connection's, kept and sent by config.postgresql.

Where that is not possible (SQLite, which takes one statement per call and has no round
trip to save; PostgreSQL with `server_side_binding`), each statement is executed on its own,
in the same order: the result is the same, only the number of calls differs.

The SQL is always Django's own (an UpdateQuery or InsertQuery compiled for the connection),
so field conversion and quoting are the ORM's; nothing here formats a value into SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery


@dataclass(frozen=True)
class Statement:
    """One SQL statement (exactly one: batching counts results) and its parameters."""

    sql: str
    params: tuple[Any, ...] = ()


def update(queryset: QuerySet[Any], **values: Any) -> Statement:
    """What `queryset.update(**values)` would send, unsent. A filter that can match nothing
    (an empty `__in`) raises EmptyResultSet: the caller has nothing to write."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    sql, params = query.get_compiler(queryset.db).as_sql()
    return Statement(sql, tuple(params))


def insert(obj: Model, *, using: str = DEFAULT_DB_ALIAS) -> Statement:
    """What `obj.save(force_insert=True)` would send, unsent: an INSERT of every column, with
    `RETURNING` the primary key when the database makes it (read it with `saved`).

    Field defaults and `auto_now_add` values are filled into `obj` here, as save() would."""
    meta = obj._meta
    fields = list(meta.local_concrete_fields)
    query = InsertQuery(type(obj))
    compiler_returning: list[Any] = []
    if obj.pk is None:
        if meta.auto_field is None:
            raise ValueError(f"{meta.label}: no primary key, and the database makes none")
        fields = [f for f in fields if f is not meta.auto_field]
        compiler_returning = list(meta.db_returning_fields)
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = compiler_returning
    [(sql, params)] = compiler.as_sql()
    return Statement(sql, tuple(params))


def saved(
    obj: Model, *, cursor: CursorWrapper | None = None, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Mark `obj` saved once its `insert` statement has run; with `cursor` (left at that
    statement's result), take the primary key the database made from it."""
    if cursor is not None:
        row = cursor.fetchone()
        if row is None:
            raise RuntimeError(f"{obj._meta.label}: the INSERT returned no primary key")
        for field, value in zip(obj._meta.db_returning_fields, row, strict=True):
            setattr(obj, field.attname, value)
    obj._state.adding = False
    obj._state.db = using


def batches(connection: BaseDatabaseWrapper) -> bool:
    """Whether one `execute` on this connection may carry several statements, and writes may
    wait for the next one: PostgreSQL through config.postgresql, binding on the client."""
    return callable(getattr(connection, "queue_ahead", None)) and (
        connection.settings_dict.get("OPTIONS", {}).get("server_side_binding") is not True
    )


def execute(cursor: CursorWrapper, statements: Sequence[Statement]) -> list[int]:
    """Run `statements` in order, in one round trip where the connection allows it, and
    leave `cursor` at the last statement's result. Returns each statement's row count."""
    counts: list[int] = []
    connection: Any = cursor.db
    if len(statements) <= 1 or not batches(connection):
        for statement in statements:
            cursor.execute(statement.sql, statement.params)
            counts.append(cursor.rowcount)
        return counts
    # The connection joins the others to the last one's query string, as it does any
    # queued write (config.postgresql).
    *ahead, last = statements
    connection.queue_ahead([(statement, counts) for statement in ahead])
    try:
        cursor.execute(last.sql, last.params)
    except BaseException:
        connection.withdraw(counts)  # not sent, or failed with the rest: none stays due
        raise
    counts.append(cursor.rowcount)
    return counts


@contextmanager
def sent_with_next(
    statements: Sequence[Statement], *, using: str = DEFAULT_DB_ALIAS
) -> Iterator[list[int]]:
    """Send `statements` (writes whose results nobody reads) in the round trip of the first
    statement the block executes, ahead of it; if the block executes none, at its end.

    Their effects come before anything the block does, as if they had been executed on
    entry, and an error in one of them is raised by that first statement (the transaction
    then fails as it would have). Use inside a transaction. Yields a list that holds each
    statement's row count once it has run (on entry where statements are not batched).
    Nested blocks keep the order of entry: an outer block's statements go first. A block
    that fails before they were sent sends none of them."""
    connection: Any = connections[using]
    counts: list[int] = []
    if not batches(connection):
        with connection.cursor() as cursor:
            counts.extend(execute(cursor, statements))
        yield counts
        return
    connection.queue_ahead([(statement, counts) for statement in statements])
    try:
        yield counts
        if connection.is_due(counts):
            connection.send_due()
    except BaseException:
        connection.withdraw(counts)
        raise


def sent_by_commit(statements: Sequence[Statement], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Send `statements` (writes whose results nobody reads) with the transaction's next
    statement, or with its COMMIT if it has none: the commit of a transaction that ends with
    writes then takes no round trip of its own.

    Their effects come before anything that follows, as if they had been executed now; an
    error in one of them fails the statement or the COMMIT that carries them, and so the
    transaction. A rollback discards them with the rest. Outside a transaction, or where
    statements are not batched, they are executed now."""
    connection: Any = connections[using]
    if not batches(connection) or connection.get_autocommit():
        with connection.cursor() as cursor:
            execute(cursor, statements)
        return
    connection.queue_ahead([(statement, None) for statement in statements])
