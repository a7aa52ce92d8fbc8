"""Django's PostgreSQL backend, with a transaction's BEGIN sent in its first statement's round trip.

Outside autocommit, psycopg starts every transaction by sending `BEGIN` on its own and waiting
for the answer before it sends the transaction's first statement: one round trip per
transaction, 3 of the 14 an agent run took (docs/benchmarks.md). This backend keeps the psycopg
connection in autocommit and sends `BEGIN` itself, in the same query string as the transaction's
first statement (`BEGIN; SELECT ...`), as config.statements sends writes ahead of a read.

Nothing else changes:

- Django's own view of the transaction is the stock backend's: `atomic()`, savepoints,
  `on_commit`, `get_autocommit()` and `AUTOCOMMIT = False` behave the same;
- psycopg's `commit()` and `rollback()` look at the server's transaction status, not at the
  autocommit flag: they send COMMIT or ROLLBACK exactly when a transaction is open, and
  nothing for a block that sent no statement (psycopg does the same);
- the `BEGIN` is psycopg's own (isolation level, read only, deferrable from the connection);
- a statement that never left (an error on the client side) leaves the `BEGIN` due;
- where one `execute` cannot carry two statements (`executemany`, a named cursor's
  `DECLARE`, a query that is not a string), `BEGIN` is sent alone first, as psycopg would.
  With `server_side_binding`, where no `execute` can, the backend is the stock one.

Code that executes on the raw psycopg connection (`connection.connection`) inside `atomic()`
would run outside the transaction: use `connection.cursor()`, as Django's own code does.

Enabled by config/settings.py for every PostgreSQL `DATABASE_URL`;
tests/config/test_postgresql_backend.py holds it to the stock backend's semantics.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from psycopg import IsolationLevel, ServerCursor, pq

from config.statements import batches

# Django's backend module, whose cursor classes and private methods django-stubs do not declare.
_stock: Any = postgresql


class DatabaseWrapper(postgresql.DatabaseWrapper):
    # Decided per connection when it opens, as psycopg's autocommit is set then.
    _sends_begin_with_first = False

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        self._sends_begin_with_first = batches(self)
        return connection

    def _sends_begin(self) -> bool:
        return self._sends_begin_with_first and self.connection is not None

    def begin_due(self) -> bool:
        """Whether the next statement opens the transaction Django is in: Django's
        autocommit is off and the server has no transaction open yet."""
        return (
            not self.autocommit
            and self.connection is not None
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

    def begin_alone(self) -> None:
        """Send the due `BEGIN` in a round trip of its own."""
        with self.wrap_database_errors:
            self.connection.execute(self.begin_sql())

    def _set_autocommit(self, autocommit: bool) -> None:
        if not self._sends_begin():
            cast(Any, super())._set_autocommit(autocommit)
            return
        # Django's flag (set by the caller) says whether a transaction is wanted; psycopg's
        # stays on, so that psycopg never sends a BEGIN of its own.
        if not self.connection.autocommit:  # a new connection: psycopg's default is off
            cast(Any, super())._set_autocommit(True)

    def create_cursor(self, name: str | None = None) -> Any:
        if name is None or not self._sends_begin():
            return super().create_cursor(name)
        if self.begin_due():
            self.begin_alone()  # DECLARE cannot share a query string
        # As Django's, but holdable only where Django is in autocommit (psycopg always is).
        cursor = _stock.ServerSideCursor(
            self.connection, name=name, scrollable=False, withhold=self.get_autocommit()
        )
        tzloader = self.connection.adapters.get_loader(_stock.TIMESTAMPTZ_OID, pq.Format.TEXT)
        if self.timezone != tzloader.timezone:
            register_tzloader(self.timezone, cursor)
        return cursor

    def make_cursor(self, cursor: Any) -> CursorWrapper:
        if not self._sends_begin():
            return super().make_cursor(cursor)
        return _CursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> CursorDebugWrapper:
        if not self._sends_begin():
            return super().make_debug_cursor(cursor)
        return _CursorDebugWrapper(cursor, self)


class _CursorWrapper(CursorWrapper):
    """Sends the due `BEGIN` ahead of the first statement, in its query string. These are
    the innermost calls of Django's cursor (after execute wrappers such as
    config.statements'), so the `BEGIN` comes before everything else the string carries."""

    db: DatabaseWrapper

    def _execute(self, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        db, django_s = self.db, cast(Any, super())
        if not db.begin_due():
            return django_s._execute(sql, params, *ignored_wrapper_args)
        if not isinstance(sql, str) or isinstance(self.cursor, ServerCursor):
            db.begin_alone()
            return django_s._execute(sql, params, *ignored_wrapper_args)
        # The BEGIN has no placeholder: the parameters and a literal % stay as they were.
        result = django_s._execute(f"{db.begin_sql()}; {sql}", params, *ignored_wrapper_args)
        self.cursor.nextset()  # on to the statement's own result
        return result

    def _executemany(self, sql: Any, param_list: Any, *ignored_wrapper_args: Any) -> Any:
        if self.db.begin_due():
            self.db.begin_alone()
        return cast(Any, super())._executemany(sql, param_list, *ignored_wrapper_args)


class _CursorDebugWrapper(_CursorWrapper, postgresql.CursorDebugWrapper):
    pass
