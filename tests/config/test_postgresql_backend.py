"""config.postgresql: a transaction's BEGIN travels with its first statement, writes queued by
config.statements with the next statement or the COMMIT, and nothing else about transactions
changes.

Every test that saves a round trip also proves the transaction is still one: a second
connection (the observer) must not see its writes before the commit, and a rollback must
leave nothing. The stock backend is the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.db import (
    DataError,
    IntegrityError,
    ProgrammingError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.backends.postgresql.base import DatabaseWrapper as StockDatabaseWrapper
from django.db.transaction import TransactionManagementError
from psycopg import IsolationLevel
from psycopg import sql as psycopg_sql

from agents.worker_process import database_url
from config import statements
from config.postgresql.base import DatabaseWrapper
from tests.audit.tamper import postgresql_only
from tests.pg_trace import protocol_trace

pytestmark = [pytest.mark.django_db(transaction=True), postgresql_only]


@pytest.fixture
def observer() -> Iterator[Any]:
    """Another session on the test database: what it counts is what has been committed."""
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:

        def committed_groups() -> list[str]:
            return [name for (name,) in other.execute("SELECT name FROM auth_group ORDER BY name")]

        yield committed_groups


def _wrapper(cls: type[Any], alias: str, **changes: Any) -> Any:
    settings_dict = {**connection.settings_dict, **changes}
    settings_dict["OPTIONS"] = {
        **connection.settings_dict.get("OPTIONS", {}),
        **changes.get("OPTIONS", {}),
    }
    return cls(settings_dict, alias=alias)


def test_the_project_uses_this_backend():
    assert isinstance(connections["default"], DatabaseWrapper)


def test_begin_travels_with_the_first_statement_and_saves_a_round_trip(observer):
    stock = _wrapper(StockDatabaseWrapper, "stock")
    try:
        stock.set_autocommit(False)
        with protocol_trace(stock) as stock_trace:
            with stock.cursor() as cursor:
                cursor.execute("INSERT INTO auth_group (name) VALUES (%s)", ["stock"])
            stock.commit()
    finally:
        stock.close()

    with protocol_trace(connection) as trace, transaction.atomic():
        Group.objects.create(name="ours")
        assert observer() == ["stock"]  # in a transaction: not committed yet

    assert stock_trace.queries[0] == "BEGIN"
    assert stock_trace.round_trips == 3  # BEGIN, INSERT, COMMIT
    assert trace.queries[0].startswith("BEGIN; INSERT INTO ")
    assert trace.queries[-1] == "COMMIT"
    assert trace.round_trips == 2
    assert observer() == ["ours", "stock"]


def test_a_failing_block_rolls_back_everything(observer):
    with transaction.atomic():
        Group.objects.create(name="first")
        Group.objects.create(name="second")
        transaction.set_rollback(True)
    assert observer() == []
    assert not Group.objects.exists()


def test_a_block_that_sends_nothing_sends_no_begin_and_no_commit():
    connection.ensure_connection()
    with protocol_trace(connection) as trace, transaction.atomic():
        pass
    assert trace.lines == []


def test_outside_a_transaction_no_begin_is_sent(observer):
    with protocol_trace(connection) as trace:
        Group.objects.create(name="autocommit")
    assert len(trace.queries) == 1
    assert trace.queries[0].startswith("INSERT INTO ")
    assert observer() == ["autocommit"]


def test_a_savepoint_as_the_first_statement(observer):
    with transaction.atomic():
        with transaction.atomic():  # SAVEPOINT, opening the transaction
            Group.objects.create(name="undone")
            transaction.set_rollback(True)
        Group.objects.create(name="kept")
        assert observer() == []
    assert observer() == ["kept"]


def test_an_error_in_the_first_statement_fails_the_transaction_and_nothing_else(observer):
    with pytest.raises(DataError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    assert observer() == []
    # The connection is not left in a failed transaction, nor in a half-open one.
    with transaction.atomic():
        Group.objects.create(name="after")
        assert observer() == []
    assert observer() == ["after"]


def test_a_statement_that_never_left_leaves_begin_due(observer):
    db = connections["default"]
    assert isinstance(db, DatabaseWrapper)
    with transaction.atomic():
        with pytest.raises(ProgrammingError), connection.cursor() as cursor:
            cursor.execute("SELECT %s, %s", [1])  # refused by psycopg: nothing sent
        assert db.begin_due()
        Group.objects.create(name="in the transaction")
        assert observer() == []
        transaction.set_rollback(True)
    assert observer() == []


def test_a_literal_percent_and_named_parameters_are_left_as_they_were():
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT '100%'")
        assert cursor.fetchone() == ("100%",)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT %(a)s::int + %(b)s::int", {"a": 2, "b": 3})
        assert cursor.fetchone() == (5,)


def test_executemany_first_begins_the_transaction(observer):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO auth_group (name) VALUES (%s)", [("a",), ("b",)])
        assert observer() == []
        transaction.set_rollback(True)
    assert observer() == []


def test_a_named_cursor_first_is_in_the_transaction_and_not_holdable(observer):
    Group.objects.bulk_create([Group(name="one"), Group(name="two")])
    with transaction.atomic():
        groups = Group.objects.order_by("name").iterator(chunk_size=1)
        assert next(groups).name == "one"  # DECLARE ... CURSOR: the block's first statement
        with connection.cursor() as cursor:
            cursor.execute("SELECT is_holdable FROM pg_cursors WHERE NOT is_binary")
            assert cursor.fetchall() == [(False,)]  # as Django's own, inside a transaction
        Group.objects.filter(name="one").delete()
        assert observer() == ["one", "two"]
        assert [group.name for group in groups] == ["two"]
        transaction.set_rollback(True)
    assert observer() == ["one", "two"]


def test_the_transaction_options_of_the_connection_are_kept():
    wrapper = _wrapper(
        DatabaseWrapper, "serializable", OPTIONS={"isolation_level": IsolationLevel.SERIALIZABLE}
    )
    try:
        wrapper.set_autocommit(False)
        with protocol_trace(wrapper) as trace, wrapper.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone() == ("serializable",)
        wrapper.rollback()
    finally:
        wrapper.close()
    assert trace.queries[0].startswith("BEGIN ISOLATION LEVEL SERIALIZABLE; SHOW ")


def test_autocommit_off_in_the_settings_begins_again_after_each_commit(observer):
    wrapper = _wrapper(DatabaseWrapper, "no-autocommit", AUTOCOMMIT=False)
    try:
        wrapper.ensure_connection()
        assert not wrapper.get_autocommit()
        with wrapper.cursor() as cursor:
            cursor.execute("INSERT INTO auth_group (name) VALUES (%s)", ["first"])
            assert observer() == []
            wrapper.commit()
            assert observer() == ["first"]
            cursor.execute("INSERT INTO auth_group (name) VALUES (%s)", ["second"])
            assert observer() == ["first"]  # a new transaction, not autocommit
        wrapper.rollback()
    finally:
        wrapper.close()
    assert observer() == ["first"]


def test_server_side_binding_keeps_the_stock_behaviour(observer):
    wrapper = _wrapper(DatabaseWrapper, "server-side", OPTIONS={"server_side_binding": True})
    try:
        wrapper.set_autocommit(False)
        with protocol_trace(wrapper) as trace, wrapper.cursor() as cursor:
            cursor.execute("INSERT INTO auth_group (name) VALUES (%s)", ["bound"])
            assert observer() == []
        wrapper.rollback()
        assert not wrapper.connection.autocommit  # psycopg sends the BEGIN, as in the stock
    finally:
        wrapper.close()
    assert trace.queries == ["BEGIN"]  # alone; the INSERT went by the extended protocol
    assert any("\tParse\t" in line for line in trace.lines)
    assert observer() == []


# --- writes queued by config.statements ------------------------------------------------------


def _add_group(name: str) -> statements.Statement:
    return statements.insert(Group(name=name))


def test_queued_writes_go_ahead_of_the_next_statement_in_order(observer):
    with protocol_trace(connection) as trace, transaction.atomic():
        statements.sent_by_commit([_add_group("a"), _add_group("b")])
        assert sorted(Group.objects.values_list("name", flat=True)) == ["a", "b"]
        assert observer() == []
    assert trace.round_trips == 2  # BEGIN + the writes + the read; COMMIT
    assert trace.queries[0].startswith("BEGIN; INSERT INTO ")
    assert observer() == ["a", "b"]


def test_queued_writes_go_with_the_commit(observer):
    with protocol_trace(connection) as trace, transaction.atomic():
        assert not Group.objects.exists()
        statements.sent_by_commit([_add_group("at commit")])
        assert observer() == []
    assert trace.round_trips == 2
    assert trace.queries[-1].endswith("; COMMIT")
    assert observer() == ["at commit"]


def test_a_write_that_fails_at_commit_is_not_sent_again(observer):
    # A foreign key PostgreSQL checks at COMMIT (Django's are deferred): the COMMIT that
    # carries the write fails, and the transaction with it.
    orphan = statements.Statement(
        'INSERT INTO "auth_user_groups" ("user_id", "group_id") VALUES (%s, %s)', (-1, -1)
    )

    def transaction_with_the_orphan() -> None:
        with transaction.atomic():
            Group.objects.create(name="with the orphan")
            statements.sent_by_commit([orphan])

    with pytest.raises(IntegrityError):
        transaction_with_the_orphan()
    assert observer() == []
    with protocol_trace(connection) as trace, transaction.atomic():
        Group.objects.create(name="next")
    assert not any("auth_user_groups" in query for query in trace.queries)
    assert observer() == ["next"]


def test_a_write_that_fails_in_a_savepoint_is_not_sent_again(observer):
    with transaction.atomic():
        with pytest.raises(IntegrityError), transaction.atomic():
            statements.sent_by_commit([_add_group("twice"), _add_group("twice")])
        with protocol_trace(connection) as trace:
            Group.objects.create(name="after")
        assert not any("twice" in query for query in trace.queries)
    assert observer() == ["after"]


def test_queued_writes_go_before_executemany_and_named_cursors(observer):
    with transaction.atomic():
        statements.sent_by_commit([_add_group("first")])
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO auth_group (name) VALUES (%s)", [("x",), ("y",)])
        statements.sent_by_commit([_add_group("second")])
        names = [group.name for group in Group.objects.order_by("id").iterator(chunk_size=10)]
        assert names == ["first", "x", "y", "second"]
        assert observer() == []
    assert observer() == ["first", "second", "x", "y"]


def test_queued_writes_go_before_named_parameters_and_a_literal_percent():
    with transaction.atomic(), connection.cursor() as cursor:
        statements.sent_by_commit([_add_group("named")])
        cursor.execute("SELECT count(*) FROM auth_group WHERE name = %(name)s", {"name": "named"})
        assert cursor.fetchone() == (1,)
        statements.sent_by_commit([_add_group("100%")])
        cursor.execute("SELECT name FROM auth_group WHERE name LIKE '100%'")
        assert cursor.fetchall() == [("100%",)]


def test_a_closed_connection_forgets_what_was_queued(observer):
    with transaction.atomic():
        statements.sent_by_commit([_add_group("forgotten")])
        connection.close()  # Django then ends the block without a commit
    connection.ensure_connection()
    with transaction.atomic():
        Group.objects.create(name="fresh")
    assert observer() == ["fresh"]


def test_a_rollback_discards_what_was_queued(observer):
    with transaction.atomic():
        statements.sent_by_commit([_add_group("rolled back")])
        transaction.set_rollback(True)
    with protocol_trace(connection) as trace:
        assert not Group.objects.exists()  # autocommit: would carry them, were they kept
    assert trace.round_trips == 1
    assert observer() == []


def test_a_transaction_of_queued_writes_alone_that_fails_at_commit_leaves_nothing(observer):
    # BEGIN, the write and COMMIT in one string: the status is "idle" before and after.
    orphan = statements.Statement(
        'INSERT INTO "auth_user_groups" ("user_id", "group_id") VALUES (%s, %s)', (-1, -1)
    )

    def only_the_orphan() -> None:
        with transaction.atomic():
            statements.sent_by_commit([orphan])

    with pytest.raises(IntegrityError):
        only_the_orphan()
    with protocol_trace(connection) as trace:
        Group.objects.create(name="next")
    assert not any("auth_user_groups" in query for query in trace.queries)
    assert observer() == ["next"]


# --- found by review: each failed before its fix ----------------------------------------------


class _RefusedError(Exception):
    pass


def _refuse_the_commit(execute, sql, params, many, context):
    if sql.endswith("COMMIT"):
        raise _RefusedError(sql)
    return execute(sql, params, many, context)


def test_copy_and_stream_first_are_in_the_transaction_and_after_queued_writes(observer):
    with transaction.atomic():
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY auth_group (name) FROM STDIN") as copy,
        ):
            copy.write_row(("copied",))
        assert observer() == []  # not in autocommit
        statements.sent_by_commit([_add_group("queued")])
        with connection.cursor() as cursor:
            list(cursor.stream("INSERT INTO auth_group (name) VALUES ('streamed') RETURNING id"))
        assert list(Group.objects.order_by("id").values_list("name", flat=True)) == [
            "copied",
            "queued",
            "streamed",
        ]
        assert observer() == []
        transaction.set_rollback(True)
    assert observer() == []


def test_autocommit_is_refused_over_an_open_transaction(observer):
    transaction.set_autocommit(False)
    try:
        Group.objects.create(name="in the open transaction")
        with pytest.raises(ProgrammingError, match="can't change 'autocommit' now"):
            transaction.set_autocommit(True)  # as the stock backend (psycopg) refuses it
        assert not transaction.get_autocommit()
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert observer() == []


def test_a_commit_that_raised_leaves_nothing_for_the_next_transaction(observer):
    # An execute wrapper sees the COMMIT that carries queued writes; one that raises there
    # (not a database error: Django does not roll back) must not leave the transaction open.

    def refused() -> None:
        with connection.execute_wrapper(_refuse_the_commit), transaction.atomic():
            Group.objects.create(name="failed")
            statements.sent_by_commit([_add_group("failed, queued")])

    # As with the stock backend: Django cannot return to autocommit over the open
    # transaction, and says so; the connection is then closed, not reused.
    with pytest.raises(ProgrammingError, match="can't change 'autocommit' now") as raised:
        refused()
    assert isinstance(raised.value.__context__, _RefusedError)
    close_old_connections()  # what the next request or task starts with
    with transaction.atomic():
        Group.objects.create(name="next")
    assert observer() == ["next"]


def test_writes_that_committed_are_not_sent_again(observer):
    Group.objects.create(name="g")
    append_x = statements.Statement(
        'UPDATE "auth_group" SET "name" = "name" || %s WHERE "name" LIKE %s', ("x", "g%")
    )

    def raise_after(execute, sql, params, many, context):  # a slow-query guard, say
        result = execute(sql, params, many, context)
        if sql.endswith("COMMIT"):
            raise _RefusedError(sql)
        return result

    with (
        pytest.raises(_RefusedError),
        connection.execute_wrapper(raise_after),
        transaction.atomic(),
    ):
        statements.sent_by_commit([append_x])
    assert observer() == ["gx"]
    assert Group.objects.exists()  # the next statement
    assert observer() == ["gx"]  # applied once


def test_nothing_queued_after_a_close_in_the_block_reaches_the_next_connection(observer):
    def close_then_queue() -> None:
        with transaction.atomic():
            assert not Group.objects.exists()
            connection.close()  # Django ends this block without a commit
            statements.sent_by_commit([_add_group("ghost")])

    with pytest.raises(TransactionManagementError):
        close_then_queue()
    assert not Group.objects.exists()  # a new connection, in autocommit
    assert observer() == []


def test_a_queued_write_that_fails_with_a_savepoint_is_not_taken_for_its_blocks_error(observer):
    ran: list[int] = []

    def caller() -> None:
        with transaction.atomic():
            Group.objects.create(name="kept")
            statements.sent_by_commit([_add_group("kept")])  # a duplicate
            try:
                with transaction.atomic():  # its SAVEPOINT carries the queued INSERT
                    Group.objects.create(name="maybe a duplicate")
            except IntegrityError:
                pass  # the caller's handling of its own duplicate
            transaction.on_commit(lambda: ran.append(1))

    # Executed where it was issued, the duplicate would have failed the transaction; it
    # still does, and says so, instead of a COMMIT that silently rolls back.
    with pytest.raises(TransactionManagementError, match="queued earlier"):
        caller()
    assert (observer(), ran) == ([], [])


def test_a_savepoint_rollback_does_not_send_the_writes_it_undoes(observer):
    unsendable = statements.Statement('INSERT INTO "auth_group" ("name") VALUES (%s)', ("a\x00b",))
    with transaction.atomic():
        Group.objects.create(name="before")
        try:
            with transaction.atomic():
                statements.sent_by_commit([unsendable])
                Group.objects.filter(name="x").exists()  # carries it: refused, nothing sent
        except DataError:
            pass  # the savepoint is rolled back; the transaction goes on
        Group.objects.create(name="after")
    assert observer() == ["after", "before"]


def test_a_block_whose_own_send_fails_leaves_nothing_queued():
    unsendable = statements.Statement('INSERT INTO "auth_group" ("name") VALUES (%s)', ("a\x00b",))
    with pytest.raises(DataError), statements.sent_with_next([unsendable]):
        pass  # no statement: sent at the block's end, in autocommit
    assert Group.objects.count() == 0


def test_a_block_that_runs_nothing_on_a_closed_connection_still_sends():
    connection.close()
    with transaction.atomic(), statements.sent_with_next([_add_group("w")]):
        pass
    assert Group.objects.filter(name="w").exists()


def test_composed_sql_first_and_after_queued_writes(observer):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                psycopg_sql.SQL("INSERT INTO auth_group (name) VALUES ({})").format(
                    psycopg_sql.Literal("composed")
                )
            )
        assert observer() == []
        statements.sent_by_commit([_add_group("queued")])
        with connection.cursor() as cursor:
            cursor.execute(psycopg_sql.SQL("SELECT count(*) FROM auth_group"))
            assert cursor.fetchone() == (2,)
        transaction.set_rollback(True)
    assert observer() == []
