"""Which handler errors a consumer waits out and which it dead-letters.

An error from a database that is restarting, starting up or out of connections says nothing
about the event: the consumer must retry it for as long as it takes, never count it towards
dead-lettering. Errors are built as SQLAlchemy's asyncpg dialect raises them.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from shared.kafka import is_permanent, is_transient

DBAPI = AsyncAdapt_asyncpg_dbapi(asyncpg)


def as_sqlalchemy_raises(error: Exception) -> DBAPIError:
    """`error` from asyncpg, translated and wrapped the way a failed statement reaches us."""
    translated = next(
        DBAPI._asyncpg_error_translate[kind](error.args[0], error)
        for kind in type(error).__mro__
        if kind in DBAPI._asyncpg_error_translate
    )
    translated.__cause__ = error  # the dialect raises it `from` asyncpg's
    wrapped = DBAPIError.instance("SELECT 1", {}, translated, DBAPI.Error)
    assert not wrapped.connection_invalidated
    return wrapped


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.CrashShutdownError("terminating connection due to crash of a process"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionFailureError("connection failure"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        # What a pooled connection says when the server went away in the middle of its work.
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_database_away_or_busy_is_waited_out(error: Exception) -> None:
    wrapped = as_sqlalchemy_raises(error)
    assert is_transient(wrapped)
    assert not is_permanent(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_data_the_database_refuses_is_dead_lettered(error: Exception) -> None:
    wrapped = as_sqlalchemy_raises(error)
    assert is_permanent(wrapped)
    assert not is_transient(wrapped)


async def test_rest_answers_503_with_retry_after_when_the_database_is_away() -> None:
    from fastapi import FastAPI
    from httpx import ASGITransport, AsyncClient

    from shared.problems import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/away")
    async def away() -> None:
        raise as_sqlalchemy_raises(
            asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        )

    @app.get("/refused")
    async def refused() -> None:
        # What a new connection meets while the server restarts: the socket's own error.
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    @app.get("/pool-exhausted")
    async def pool_exhausted() -> None:
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        raise PoolTimeout("QueuePool limit of size 10 overflow 10 reached")

    @app.get("/too-long")
    async def too_long() -> None:
        raise as_sqlalchemy_raises(
            asyncpg.exceptions.StringDataRightTruncationError("value too long")
        )

    async with AsyncClient(transport=ASGITransport(app), base_url="http://test") as client:
        response = await client.get("/away")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.json()["type"].endswith("database-unavailable")
        assert (await client.get("/too-long")).status_code == 422
        refused_now = await client.get("/refused")
        assert refused_now.status_code == 503 and refused_now.headers["Retry-After"] == "1"
        assert (await client.get("/pool-exhausted")).status_code == 503
