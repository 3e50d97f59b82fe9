"""Async SQLAlchemy over asyncpg, one PostgreSQL schema per service, Alembic per service."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
from sqlalchemy import CursorResult, MetaData, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.jsontext import from_json, json_text
from shared.settings import REPOSITORY_ROOT, Settings
from shared.staging import StagingSession

if TYPE_CHECKING:
    from alembic.config import Config

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# An index for the retention sweeps alone, over a time that grows as rows are written (when an
# event was sent, processed, a key claimed). Rows lie in their table in about that order, so a
# block-range index (BRIN) finds the old ones: it keeps a summary per megabyte of table, where
# a B-tree takes an entry for every row written. Each range is summarised as it fills
# (`autosummarize`), so a sweep reads the ranges that hold old rows and the last, open one.
SWEPT_BY_TIME: dict[str, Any] = {
    "postgresql_using": "brin",
    "postgresql_with": {"autosummarize": "on"},
}


class SweptIndex(NamedTuple):
    """A swept index as the revisions that made it a block-range index name it."""

    name: str
    table: str
    column: str
    b_tree_predicate: str | None  # of the B-tree it was, if it had one


OUTBOX_SWEPT = SweptIndex(
    "ix_outbox_published_at", "outbox", "published_at", "published_at IS NOT NULL"
)
INBOX_SWEPT = SweptIndex("ix_inbox_processed_at", "inbox", "processed_at", None)
# Since the revisions after those: sent outbox rows are swept by when they were written (a row
# is sent after it is written). A block-range index of sending times, which every unsent row has
# empty, was one that the relay's read of unsent rows could be planned by, reading every range.
OUTBOX_BY_CREATION = "ix_outbox_created_at"


def swept_by_block_ranges(schema: str, swept: Sequence[SweptIndex]) -> None:
    """In a revision: the swept indexes of `schema` made block-range indexes (`SWEPT_BY_TIME`)."""
    from alembic import op

    for index, table, column, _ in swept:
        op.drop_index(index, table_name=table, schema=schema)
        op.create_index(index, table, [column], schema=schema, **SWEPT_BY_TIME)


def sent_rows_found_by_creation(schema: str) -> None:
    """In a revision: the outbox's block-range index of sending times (`OUTBOX_SWEPT`) made one
    of creation times, which nothing else reads and nothing changes once written."""
    from alembic import op

    op.drop_index(OUTBOX_SWEPT.name, table_name=OUTBOX_SWEPT.table, schema=schema)
    op.create_index(
        OUTBOX_BY_CREATION, OUTBOX_SWEPT.table, ["created_at"], schema=schema, **SWEPT_BY_TIME
    )


def sent_rows_found_by_sending(schema: str) -> None:
    """In a revision's downgrade: the outbox's block-range index of sending times again."""
    from alembic import op

    op.drop_index(OUTBOX_BY_CREATION, table_name=OUTBOX_SWEPT.table, schema=schema)
    op.create_index(
        OUTBOX_SWEPT.name,
        OUTBOX_SWEPT.table,
        [OUTBOX_SWEPT.column],
        schema=schema,
        **SWEPT_BY_TIME,
    )


def swept_by_b_trees(schema: str, swept: Sequence[SweptIndex]) -> None:
    """In a revision's downgrade: the swept indexes of `schema` B-trees again, as they were."""
    import sqlalchemy as sa
    from alembic import op

    for index, table, column, predicate in swept:
        op.drop_index(index, table_name=table, schema=schema)
        op.create_index(
            index,
            table,
            [column],
            schema=schema,
            postgresql_where=sa.text(predicate) if predicate else None,
        )


# SQLSTATE classes of a database that is away or busy, whatever the statement: 08 connection
# exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient
# resources (too many connections), 57 operator intervention (shutting down, starting up).
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def sqlstate(error: DBAPIError) -> str | None:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    code = code or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return str(code) if code is not None else None


def lost_a_race(error: DBAPIError) -> bool:
    """The statement was rolled back for another transaction's sake (a deadlock, a
    serialization failure: SQLSTATE class 40): run on its own, it can run again as it was."""
    code = sqlstate(error)
    return code is not None and code.startswith("40")


def database_unavailable(error: DBAPIError) -> bool:
    """The database, not the statement, failed: worth retrying as it is, never the caller's
    fault (consumers wait it out, REST answers 503)."""
    if error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code is not None and code[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
        return True
    cause = error.orig.__cause__ if error.orig is not None else None
    # asyncpg's word for a pooled connection whose server went away mid-statement; OSError
    # for a server that refuses connections.
    return isinstance(cause, asyncpg.exceptions.InternalClientError | OSError) or isinstance(
        error.orig, OSError
    )


def service_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def create_engine(
    settings: Settings, *, pool_size: int | None = None, application_name: str | None = None
) -> AsyncEngine:
    return create_async_engine(
        settings.async_database_url,
        # A fixed pool (DATABASE_POOL_SIZE): connections are kept, not opened for a burst and
        # closed after it (settings.py).
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=0,
        # No ping on checkout: with asyncpg it costs three round trips (BEGIN, a query,
        # ROLLBACK) before every transaction. A connection found dead instead fails its
        # transaction, which invalidates the whole pool; consumers retry the record, REST
        # callers get 503 with Retry-After (shared.problems).
        pool_pre_ping=False,
        # No statement or idle transaction holds a connection (and its locks) without end: a
        # runaway query is cancelled (SQLSTATE 57014, answered as unavailable: 503, retry).
        connect_args={"server_settings": connection_settings(settings, application_name)},
        # JSON columns and results by orjson, as the services write their JSON themselves.
        json_serializer=json_text,
        json_deserializer=from_json,
    )


def connection_settings(settings: Settings, application_name: str | None) -> dict[str, str]:
    """PostgreSQL settings of a service's connection: its limits, and its name."""
    server_settings = session_limits(settings)
    if application_name:
        # Names the service in pg_stat_activity and in the server's log (`%a`), so an
        # operator can tell whose connection holds a lock or runs a slow statement.
        server_settings["application_name"] = application_name
    return server_settings


def session_limits(settings: Settings) -> dict[str, str]:
    """PostgreSQL settings of every service session (milliseconds)."""
    return {
        "statement_timeout": str(int(settings.database_statement_timeout_seconds * 1000)),
        "idle_in_transaction_session_timeout": str(
            int(settings.database_idle_in_transaction_seconds * 1000)
        ),
    }


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Outbox rows and NOTIFYs wait for the commit and go in one statement (`shared.staging`).
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=StagingSession)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session, one transaction: committed on success, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


class KeptSession:
    """A worker's session, kept from one unit of work to the next: for a loop that runs a
    transaction after another (a consumer's batches, a dispatcher's passes), where building a
    session and closing it again each time cost about a fifth of a short transaction's CPU on
    the client (docs/performance.md, item 69).

    Each `transaction()` is what `transaction(sessions)` is: one transaction, committed on
    success, rolled back on error; the session holds no connection between them (it goes back
    to the pool at commit) and forgets the rows it loaded (nothing read in one unit of work is
    taken for current in the next). A unit of work that fails closes the session, as leaving
    `transaction(sessions)` does; the next one starts a new session. One unit of work at a time
    is what it is kept for: a second one asked for while one runs gets a session of its own."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._idle: AsyncSession | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        session, self._idle = self._idle or self._sessions(), None
        try:
            async with session.begin():
                yield session
        except BaseException:
            # Closed even when the task is cancelled meanwhile, as AsyncSession's own exit does.
            await asyncio.shield(session.close())
            raise
        session.expunge_all()
        self._idle = session

    async def close(self) -> None:
        session, self._idle = self._idle, None
        if session is not None:
            await session.close()


@asynccontextmanager
async def single_statement(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncConnection]:
    """A connection for work that is one statement: PostgreSQL runs it atomically on its own,
    so it goes without BEGIN and COMMIT (two round trips fewer). Whatever runs on it commits
    at once: a unit of work of more than one statement belongs in `transaction`. A Core
    connection of the sessions' engine: no ORM session is built for one statement."""
    engine: AsyncEngine = sessions.kw["bind"]
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def driver_of(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy one: for a statement on the hot path sent as
    it is, without SQLAlchemy compiling it and binding its values (as the relays do)."""
    return (await connection.get_raw_connection()).driver_connection


def migrations_folder(service: str) -> Path:
    return REPOSITORY_ROOT / "services" / service / "migrations" / "versions"


def alembic_config(settings: Settings, service: str) -> Config:
    # Alembic is loaded where a schema changes only: with its templates (Mako and, where it is
    # installed, Pygments) it holds about 9 MB of every service that merely checks its head.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(REPOSITORY_ROOT / "shared" / "alembic"))
    config.set_main_option("version_locations", str(migrations_folder(service)))
    config.set_main_option("path_separator", "os")
    # The option is interpolated: a percent-encoded password must keep its `%`.
    config.set_main_option("sqlalchemy.url", settings.async_database_url.replace("%", "%%"))
    config.attributes["schema"] = service
    # A migration that seals rows already written needs the service's keys (intake's 0007).
    config.attributes["settings"] = settings
    return config


def migration_head(service: str) -> str | None:
    """The revision the code expects its schema at."""
    return head_revision(migrations_folder(service))


def head_revision(folder: Path) -> str | None:
    """The revision no other follows, read from the migration files' `revision` and
    `down_revision` literals as Alembic reads them, without importing the files (or Alembic);
    None where there are no migrations. Several heads are an error, as they are to Alembic's
    `upgrade head`."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in sorted(folder.glob("*.py")):
        literals = _module_literals(path, {"revision", "down_revision"})
        if "revision" not in literals:
            continue
        revisions.add(literals["revision"])
        down = literals.get("down_revision")
        followed.update((down,) if isinstance(down, str) else down or ())
    heads = sorted(revisions - followed)
    if len(heads) > 1:
        raise RuntimeError(f"the migrations in {folder} have several heads: {', '.join(heads)}")
    return heads[0] if heads else None


def _module_literals(path: Path, names: set[str]) -> dict[str, Any]:
    """The module's top-level assignments of `names` to literals."""
    literals: dict[str, Any] = {}
    for statement in ast.parse(path.read_text(encoding="utf-8")).body:
        match statement:
            case ast.AnnAssign(target=ast.Name(id=name), value=value) if value is not None:
                pass
            case ast.Assign(targets=[ast.Name(id=name)], value=value):
                pass
            case _:
                continue
        if name in names:
            literals[name] = ast.literal_eval(value)
    return literals


async def migrate(settings: Settings, service: str, revision: str = "head") -> None:
    """Bring the service's schema to `revision`; Alembic's sync API runs in a worker thread.
    With `DATABASE_RUNTIME_ROLE` set (the migration job), the service's runtime login is then
    granted what it needs of the tables, and nothing it could rewrite the schema with."""
    from alembic import command

    await asyncio.to_thread(command.upgrade, alembic_config(settings, service), revision)
    if settings.database_runtime_role:
        await grant_runtime_access(settings, service, settings.database_runtime_role)


# The runtime login reads and writes rows; it owns nothing, so it can neither alter a table,
# disable a trigger nor truncate. A table guarded by an append-only trigger (the audit log's)
# it may only read and add to.
RUNTIME_GRANTS = (
    'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
    'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
    'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA "{schema}" TO "{role}"',
)
APPEND_ONLY_TABLES = """
SELECT c.relname, bool_or(p.proname = 'reject_change') AS append_only
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
LEFT JOIN pg_proc p ON p.oid = t.tgfoid
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
GROUP BY c.relname
"""
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


async def grant_runtime_access(settings: Settings, schema: str, role: str) -> None:
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"DATABASE_RUNTIME_ROLE {role!r} is not a plain lower-case role name")
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        async with connection.transaction():
            for grant in RUNTIME_GRANTS:
                await connection.execute(grant.format(schema=schema, role=role))
            for table, append_only in await connection.fetch(APPEND_ONLY_TABLES, schema):
                rights = "SELECT, INSERT" if append_only else "SELECT, INSERT, UPDATE, DELETE"
                await connection.execute(f'GRANT {rights} ON "{schema}"."{table}" TO "{role}"')
    finally:
        await connection.close()


def autogenerate_revision(settings: Settings, service: str, message: str) -> None:
    """Write a new migration for the difference between the service's models and the database."""
    import importlib

    from alembic import command

    config = alembic_config(settings, service)
    config.attributes["target_metadata"] = importlib.import_module(
        f"services.{service}.models"
    ).metadata
    command.upgrade(config, "head")
    command.revision(config, message=message, autogenerate=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="sqjz-migrate",
        description="Database migrations of one service: `upgrade` applies them to DATABASE_URL; "
        "`revision` writes a new one from the difference between the models and the database",
    )
    parser.add_argument("action", choices=["upgrade", "revision"])
    parser.add_argument("service")
    parser.add_argument("-m", "--message", default="change")
    arguments = parser.parse_args(argv)
    settings = Settings()
    if arguments.action == "upgrade":
        asyncio.run(migrate(settings, arguments.service))
    else:
        autogenerate_revision(settings, arguments.service, arguments.message)


if __name__ == "__main__":
    main()


def rows_affected(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows an UPDATE or DELETE touched. The session types every result as a plain
    Result; what comes back from one of these is the driver's cursor result, which counts."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no row count on a {type(result).__name__}")
    return result.rowcount
