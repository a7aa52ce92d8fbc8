"""Django's PostgreSQL backend, sending a transaction's BEGIN, and writes whose results nobody
reads, in the round trip of the next statement (or of the COMMIT).

Each round trip to the server is a large part of an agent run's latency (docs/benchmarks.md).
This backend saves those that carry nothing the caller waits for:

- **BEGIN.** Outside autocommit, psycopg starts every transaction by sending `BEGIN` alone and
  waiting for the answer. Here the psycopg connection stays in autocommit and the backend
  sends `BEGIN` itself, in the query string of the transaction's first statement
  (`BEGIN; SELECT ...`).
- **Writes queued by config.statements** (`sent_with_next`, `sent_by_commit`) go ahead of the
  next statement, in the order queued, or ahead of the `COMMIT` (`...; UPDATE ...; COMMIT`).

PostgreSQL runs the statements of one query string in order, in the transaction, and stops at
the first error, which then fails the transaction. Nothing else changes:

- Django's own view of the transaction is the stock backend's: `atomic()`, savepoints,
  `on_commit`, `get_autocommit()` and `AUTOCOMMIT = False` behave the same;
- psycopg's `commit()` and `rollback()` look at the server's transaction status, not at the
  autocommit flag: they send COMMIT or ROLLBACK exactly when a transaction is open, and
  nothing for a block that sent no statement (psycopg does the same);
- the `BEGIN` is psycopg's own (isolation level, read only, deferrable from the connection);
- queued writes are bound on the client before anything is sent: a parameter psycopg cannot
  send fails there, and leaves them due; once sent, they ran or failed the transaction;
- a rollback discards queued writes, and so does a rollback to a savepoint (every savepoint
  statement carries what was due before it); a queued write that fails with the `SAVEPOINT`
  carrying it fails the transaction with TransactionManagementError, so that the savepoint's
  own `except IntegrityError` cannot take it for its block's error;
- Django's return to autocommit over an open transaction is refused, as psycopg refuses it;
- where one `execute` cannot carry several statements (`executemany`, `copy`, `stream`, a
  named cursor's `DECLARE`, named parameters or a literal `%` after queued writes, a query
  that is not a string), what is due is sent alone first, as psycopg would send its `BEGIN`.
  With `server_side_binding`, where no `execute` can, the backend is the stock one.

Code that executes on the raw psycopg connection (`connection.connection`) inside `atomic()`
would run outside the transaction: use `connection.cursor()`, as Django's own code does.

Enabled by config/settings.py for every PostgreSQL `DATABASE_URL`;
tests/config/test_postgresql_backend.py holds it to the stock backend's semantics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django.db import DatabaseError, ProgrammingError
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.transaction import TransactionManagementError
from psycopg import IsolationLevel, ServerCursor, pq

from config.statements import Statement

# Django's backend module, whose cursor classes and private methods django-stubs do not declare.
_stock: Any = postgresql

# A write waiting for the next statement, with the row-count list of whoever asked for it
# (None: nobody reads it).
_Entry = tuple[Statement, list[int] | None]


class DatabaseWrapper(postgresql.DatabaseWrapper):
    # Decided per connection when it opens, as psycopg's autocommit is set then.
    _sends_ahead = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ahead: list[_Entry] = []  # per connection object, so per thread

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        options = self.settings_dict.get("OPTIONS", {})
        self._sends_ahead = options.get("server_side_binding") is not True
        self._ahead.clear()  # nothing of an earlier connection's transaction is due here
        return connection

    def _sending_ahead(self) -> bool:
        return self._sends_ahead and self.connection is not None

    # --- the BEGIN ---------------------------------------------------------------------------

    def begin_due(self) -> bool:
        """Whether the next statement opens the transaction Django is in: Django's
        autocommit is off and the server has no transaction open yet."""
        return (
            self._sending_ahead()
            and not self.autocommit
            and self.connection.info.transaction_status == pq.TransactionStatus.IDLE
        )

    def begin_sql(self) -> str:
        """The `BEGIN` psycopg would send for this connection's transaction options."""
        raw = self.connection
        parts = ["BEGIN"]
        if raw.isolation_level is not None:
            level = IsolationLevel(raw.isolation_level).name.replace("_", " ")
            parts.append(f"ISOLATION LEVEL {level}")
        if raw.read_only is not None:
            parts.append("READ ONLY" if raw.read_only else "READ WRITE")
        if raw.deferrable is not None:
            parts.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
        return " ".join(parts)

    def _set_autocommit(self, autocommit: bool) -> None:
        if not self._sending_ahead():
            cast(Any, super())._set_autocommit(autocommit)
            return
        # Django's flag (set by the caller) says whether a transaction is wanted; psycopg's
        # stays on, so that psycopg never sends a BEGIN of its own.
        status = self.connection.info.transaction_status
        if autocommit and status != pq.TransactionStatus.IDLE:
            # As psycopg refuses it: autocommit over an open transaction would leave it open,
            # to be committed by whatever comes next. Django then closes the connection.
            raise ProgrammingError(
                f"can't change 'autocommit' now: connection in transaction status {status.name}"
            )
        if not self.connection.autocommit:  # a new connection: psycopg's default is off
            cast(Any, super())._set_autocommit(True)

    # --- writes that wait for the next statement (config.statements) ---------------------------

    def queue_ahead(self, entries: list[_Entry]) -> None:
        if self.closed_in_transaction:
            # Django ends this block without a commit: nothing may wait for a later one.
            raise TransactionManagementError("the connection was closed in this transaction")
        self.ensure_connection()  # so that a later connection never finds them
        self._ahead.extend(entries)

    def withdraw(self, owner: list[int]) -> None:
        """Drop the writes `owner` asked for that have not been sent."""
        self._ahead[:] = [entry for entry in self._ahead if entry[1] is not owner]

    def is_due(self, owner: list[int]) -> bool:
        return any(entry[1] is owner for entry in self._ahead)

    def take_ahead(self) -> list[_Entry]:
        ahead, self._ahead = self._ahead, []
        return ahead

    def give_back(self, ahead: list[_Entry]) -> None:
        """Writes taken to go with a statement that was not sent: still due, first."""
        self._ahead[:0] = ahead

    def send_due(self, *, then: str | None = None) -> None:
        """Send what is due now (the BEGIN and the queued writes), in one query string that
        ends with `then` (a COMMIT) if given."""
        self.ensure_connection()
        if not self._ahead and not self.begin_due() and then is None:
            return
        with self.cursor() as cursor:
            if then is None:
                cast(_CursorWrapper, cursor).send(None, None)
            else:  # as a statement of its own, which the query log shows
                cursor.execute(then, [])

    # --- the transaction's ends ----------------------------------------------------------------

    def _commit(self) -> None:
        if self._ahead:
            # psycopg's commit then finds no transaction open, and sends nothing.
            self.send_due(then="COMMIT")
        cast(Any, super())._commit()

    def _savepoint(self, sid: str) -> None:
        carried = bool(self._ahead)
        try:
            cast(Any, super())._savepoint(sid)
        except DatabaseError as exc:
            if carried and self.connection.info.transaction_status == pq.TransactionStatus.INERROR:
                # A write queued before the savepoint failed with it. Raised as the error of
                # the savepoint's own block, `except IntegrityError` around that block would
                # take it for its own and go on in a failed transaction, whose COMMIT then
                # rolls back without a word. The transaction is failed: say so.
                self.needs_rollback = True
                raise TransactionManagementError(
                    "a write queued earlier in this transaction failed"
                ) from exc
            raise

    def _savepoint_rollback(self, sid: str) -> None:
        # Every savepoint statement carries what was due, so whatever is still queued was
        # queued inside this savepoint: the rollback undoes it, it need not be sent.
        self._ahead.clear()
        cast(Any, super())._savepoint_rollback(sid)

    def _rollback(self) -> None:
        self._ahead.clear()
        cast(Any, super())._rollback()

    def _close(self) -> None:
        self._ahead.clear()
        cast(Any, super())._close()

    # --- cursors ----------------------------------------------------------------------------

    def create_cursor(self, name: str | None = None) -> Any:
        if name is None or not self._sending_ahead():
            return super().create_cursor(name)
        self.send_due()  # DECLARE cannot share a query string
        # As Django's, but holdable only where Django is in autocommit (psycopg always is).
        cursor = _stock.ServerSideCursor(
            self.connection, name=name, scrollable=False, withhold=self.get_autocommit()
        )
        tzloader = self.connection.adapters.get_loader(_stock.TIMESTAMPTZ_OID, pq.Format.TEXT)
        if self.timezone != tzloader.timezone:
            register_tzloader(self.timezone, cursor)
        return cursor

    def make_cursor(self, cursor: Any) -> CursorWrapper:
        if not self._sending_ahead():
            return super().make_cursor(cursor)
        return _CursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> CursorDebugWrapper:
        if not self._sending_ahead():
            return super().make_debug_cursor(cursor)
        return _CursorDebugWrapper(cursor, self)


def _count(raw: Any, ahead: list[_Entry]) -> None:
    """From the first of `ahead`'s results on: give each its row count, and leave `raw` at
    the result after them."""
    for _, owner in ahead:
        if owner is not None:
            owner.append(raw.rowcount)
        raw.nextset()


class _CursorWrapper(CursorWrapper):
    """Sends what is due (the BEGIN, queued writes) ahead of the statement, in its query
    string. These are the innermost calls of Django's cursor, after any execute wrapper, so
    what is due comes first in the string."""

    db: DatabaseWrapper

    def _execute(self, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        return self.send(sql, params, *ignored_wrapper_args)

    def send(self, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        """Execute `sql` (None: nothing of its own) with what is due ahead of it."""
        db, django_s = self.db, cast(Any, super())
        begin, ahead = db.begin_due(), db.take_ahead()
        if not begin and not ahead:
            return None if sql is None else django_s._execute(sql, params, *ignored_wrapper_args)
        joinable = sql is None or (
            isinstance(sql, str)
            and not isinstance(self.cursor, ServerCursor)
            # Named parameters cannot join the writes' positional ones, and a literal % would
            # turn into a placeholder once joined to parameters.
            and not (ahead and (isinstance(params, Mapping) or (params is None and "%" in sql)))
        )
        if not joinable:
            db.give_back(ahead)
            self.send(None, None)  # what is due, alone first
            return django_s._execute(sql, params, *ignored_wrapper_args)
        parts = [db.begin_sql()] if begin else []
        parts += [statement.sql for statement, _ in ahead]
        query = "; ".join([*parts, *([] if sql is None else [sql])])
        if ahead:
            # Bound here, on the client, where a parameter psycopg cannot send fails before
            # anything has left: then, and only then, the writes are still due. Once sent,
            # they either ran or failed the transaction with them.
            joined = [p for statement, _ in ahead for p in statement.params]
            try:
                with db.wrap_database_errors:
                    query = self.cursor.mogrify(query, [*joined, *(params or ())])
            except BaseException:
                db.give_back(ahead)
                raise
            params = None
        result = django_s._execute(query, params, *ignored_wrapper_args)
        if begin:
            self.cursor.nextset()
        _count(self.cursor, ahead)  # on to the statement's own result
        return result

    def _executemany(self, sql: Any, param_list: Any, *ignored_wrapper_args: Any) -> Any:
        self.send(None, None)
        return cast(Any, super())._executemany(sql, param_list, *ignored_wrapper_args)

    # psycopg's own ways of sending, which Django's cursor passes through: after what is due.

    def copy(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        self.send(None, None)
        parent = getattr(super(), "copy", None)  # the debug cursor's logs it
        return (parent or self.cursor.copy)(statement, *args, **kwargs)

    def stream(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self.send(None, None)
        return self.cursor.stream(query, *args, **kwargs)


class _CursorDebugWrapper(_CursorWrapper, postgresql.CursorDebugWrapper):
    pass
