"""Statements of the hot paths sent to asyncpg as they are, in a SQLAlchemy session's
transaction.

SQLAlchemy's work around a statement (compiling or looking it up, binding its values, the
execution context, the result and its rows, the greenlet hand-overs) costs more CPU on the
client than the round trip itself for the short statements a consumer's batch or a dispatcher's
pass sends. `fetch` sends a constant `text()` statement straight to the session's asyncpg
connection, inside the session's transaction, and answers rows that read as SQLAlchemy's do
(`row.id`, `row[0]`). Everything else keeps to SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


class DriverRow(asyncpg.Record):  # type: ignore[misc]  # asyncpg has no types
    """A row as `fetch` returns it: by position, by name (`row["id"]`) and, as SQLAlchemy's
    rows, as an attribute (`row.id`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# A bind parameter of a `text()` statement, as SQLAlchemy finds them (not a `::` cast).
BIND_PARAMETER = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@dataclass(frozen=True)
class DriverStatement:
    """A `text()` statement as asyncpg takes it: `:name` numbered `$n` (a name used twice is
    one parameter), and the names in their numbers' order."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: TextClause) -> DriverStatement:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        return cls(BIND_PARAMETER.sub(number, statement.text), tuple(names))

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [parameters[name] for name in self.names]


# The hot paths' statements are constants: each is translated once (keyed by its text).
_driver_statements: dict[str, DriverStatement] = {}


def driver_statement(statement: TextClause) -> DriverStatement:
    found = _driver_statements.get(statement.text)
    if found is None:
        found = _driver_statements[statement.text] = DriverStatement.of(statement)
    return found


async def fetch(
    on: AsyncSession | AsyncConnection,
    statement: TextClause,
    parameters: Mapping[str, Any] | None = None,
    *,
    alone: bool = False,
) -> list[DriverRow]:
    """Run a constant `text()` statement of a hot path in the transaction of `on` (a session, or
    a connection in a transaction or in autocommit as `shared.db.single_statement`'s), straight
    on asyncpg: no SQLAlchemy compiling, binding, execution context or result around it (about
    two thirds of a short statement's CPU time on the client). The values go to asyncpg as
    SQLAlchemy passes them for an untyped `text()`, and come back as the driver decodes them.

    Whoever listens for the engine's statements (`before_cursor_execute`) hears this one as
    well. A failure is handled as SQLAlchemy handles its own statements': a database error is
    raised as `DBAPIError` of its kind (with its SQLSTATE), so that callers tell errors apart
    as before, and a connection that is lost, or left mid-statement by a cancelled task, is
    invalidated (with the pool's older connections), never handed out again.

    `alone`: the statement is all its transaction sends before the commit. If nothing was
    sent before it, it goes without `BEGIN`: PostgreSQL runs one statement atomically on its
    own, and the commit, with no transaction begun on the driver, sends nothing (two round
    trips fewer)."""
    translated = driver_statement(statement)
    connection = on if isinstance(on, AsyncConnection) else await _connection_of(on)
    sync = connection.sync_connection
    assert sync is not None  # started by now
    if sync.closed or sync.invalidated:
        adapted: Any = (await connection.get_raw_connection()).dbapi_connection  # reconnects
    else:
        adapted = sync.connection.dbapi_connection  # the one in use: no I/O, no greenlet
    arguments = translated.arguments(parameters or {})
    begin = _begins_with_the_dialect(connection, adapted) and not alone
    if sync._has_events or sync.engine._has_events:
        sync.dispatch.before_cursor_execute(sync, None, translated.sql, arguments, None, False)
    try:
        if begin:
            await adapted._start_transaction()
        rows: list[DriverRow] = await adapted.driver_connection.fetch(
            translated.sql, *arguments, record_class=DriverRow
        )
    except BaseException as error:
        failure = error
        if isinstance(error, Exception):
            try:
                adapted._handle_exception(error)  # raises the dialect's DBAPI error for it
            except Exception as dbapi_error:
                failure = dbapi_error
        # Raises `failure` as SQLAlchemy would, having invalidated the connection if it is
        # lost or in an unknown state.
        await connection.run_sync(_handle_failure, failure, translated.sql, arguments)
        raise
    return rows


# session.info: the session's current transaction and its connection, as `fetch` found them.
SESSION_CONNECTION = "driver_connection"


async def _connection_of(session: AsyncSession) -> AsyncConnection:
    """The connection of the session's transaction (begun if none is): asked of the session
    once a transaction, where each ask costs a greenlet's hand-over and a proxy's look-up."""
    sync_session = session.sync_session
    kept: tuple[Any, AsyncConnection] | None = sync_session.info.get(SESSION_CONNECTION)
    transaction = sync_session.get_transaction()
    if kept is not None and transaction is not None and kept[0] is transaction:
        return kept[1]
    connection = await session.connection()
    sync_session.info[SESSION_CONNECTION] = (sync_session.get_transaction(), connection)
    return connection


def _handle_failure(sync: Any, failure: BaseException, sql: str, arguments: list[Any]) -> None:
    # SQLAlchemy re-raises what it does not wrap (a cancellation, an exit) as the exception
    # being handled: in this greenlet there is none until it is raised here.
    try:
        raise failure
    except BaseException:
        sync._handle_dbapi_exception(failure, sql, arguments, None, None)


def _begins_with_the_dialect(connection: AsyncConnection, adapted: Any) -> bool:
    """Whether `BEGIN` is still to be sent for the transaction `connection` is in (not in
    autocommit, not sent yet).

    SQLAlchemy's asyncpg dialect sends `BEGIN` with the first statement it runs itself; one
    sent to the driver before that would run on its own and commit at once. So `fetch` asks
    the dialect to begin first (`_start_transaction`, the step its own statements take first).
    This, the translation of errors (`_handle_exception`) and their handling
    (`_handle_dbapi_exception`) are the only uses of SQLAlchemy's inside, held to what they
    promise by `tests/integration/test_driver_statements.py`."""
    if adapted._transaction is not None or adapted.autocommit:
        return False
    if not connection.in_transaction():
        # A transaction SQLAlchemy does not know of would be rolled back unseen.
        raise TypeError("a driver statement runs in a session, a transaction or autocommit")
    return True
