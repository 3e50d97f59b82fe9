"""Building blocks for tests that run the system: a webhook sink and isolated systems."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import uvicorn
import yaml
from sqlalchemy import Executable, event
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.auth import ensure_dev_keys, mint
from shared.db import alembic_config, create_engine, create_session_factory
from shared.retention import PURGE_BATCH, Purge, purge
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES, Settings
from tools.devrun import ServiceProcesses, development_secrets
from tools.localinfra import Infrastructure, free_port, free_ports, infrastructure

# How long a test waits for a condition before it calls it unmet. Only a failing test waits
# this long: a busy machine makes the system slower, not different, so tests wait on what
# they expect to see, and this bound only turns a hang into a failure.
PATIENCE_SECONDS = 90.0

# Decides the answer to one POST: None answers 200; a Response is sent as it is.
Responder = Callable[[Request, dict[str, Any]], Response | None]


@dataclass
class WebhookSink:
    """A local HTTP server that records every alert POSTed to it."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    responder: Responder | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def for_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return [alert for alert in self.received if alert.get("incident_id") == incident_id]

    async def wait_for(
        self,
        incident_id: str,
        parties: set[str],
        which: Callable[[dict[str, Any]], bool] = lambda _alert: True,
        timeout: float = PATIENCE_SECONDS,
    ) -> list[dict[str, Any]]:
        """Every alert about the incident, once each party got one `which` accepts (an incident
        alerts one party about several duties, in no promised order)."""

        def reached() -> set[str]:
            return {alert["party"] for alert in self.for_incident(incident_id) if which(alert)}

        async with asyncio.timeout(timeout):
            while not parties <= reached():
                await asyncio.sleep(0.05)
        return self.for_incident(incident_id)


class CapturingProducer:
    """Stands in for the dead-letter producer of a consumer run without a broker: keeps what
    it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **record: Any) -> None:
        self.sent.append({"topic": topic, **record})


class LocalServer:
    """An ASGI app served on 127.0.0.1:`port` in the test's own event loop; it can be stopped
    and started again on the same port (a gateway going down and coming back)."""

    def __init__(self, app: Any, port: int, **config: Any) -> None:
        self.app = app
        self.port = port
        self._config = {"log_level": "warning", "lifespan": "off", **config}
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, **self._config)
        )
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises why it could not start
            await asyncio.sleep(0.02)

    async def stop(self, *, cut_requests: bool = False) -> None:
        """Stop serving; with `cut_requests`, answers still in flight are dropped."""
        if self._server is None or self._serving is None:
            return
        self._server.should_exit = True
        self._server.force_exit = cut_requests
        with contextlib.suppress(asyncio.CancelledError):
            await self._serving
        self._server = self._serving = None


@contextlib.asynccontextmanager
async def serving(app: Any, port: int, **config: Any) -> AsyncIterator[LocalServer]:
    server = LocalServer(app, port, **config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink(free_port())

    async def receive(request: Request) -> Response:
        alert = json.loads(await request.body())
        answer = sink.responder(request, alert) if sink.responder else None
        if answer is None:
            sink.received.append(alert)
            return JSONResponse({"ok": True})
        return answer

    app = Starlette(routes=[Route("/alerts", receive, methods=["POST"])])
    async with serving(app, sink.port):
        yield sink


def directory_with_contacts(
    path: Path, contacts: Callable[[dict[str, Any]], list[dict[str, Any]]]
) -> Path:
    """The real directory of 乌审旗 with each party's contacts replaced by `contacts(party)`."""
    directory = yaml.safe_load((REPOSITORY_ROOT / "config" / "directory.yaml").read_text("utf-8"))
    for party in directory["parties"]:
        party["contacts"] = contacts(party)
    path.write_text(yaml.safe_dump(directory, allow_unicode=True), encoding="utf-8")
    return path


class PartyAuth(httpx.Auth):
    """Signs each request as the party it speaks for: the reporter of a report, the party of an
    action; `X-Act-As: <party> [scope ...]` says so explicitly; otherwise `BLO`."""

    requires_request_body = True

    def __init__(self, private_key_pem: bytes, settings: Settings | None = None) -> None:
        self._key = private_key_pem
        self._settings = settings or Settings()

    def token(self, party: str, scopes: tuple[str, ...] | None = None) -> str:
        return mint(
            self._key,
            party,
            scopes=scopes,
            issuer=self._settings.auth_issuer,
            audience=self._settings.auth_audience,
        )

    def auth_flow(self, request: httpx.Request):
        acting = request.headers.pop("X-Act-As", None)
        if acting:
            party, *scopes = acting.split()
            token = self.token(party, tuple(scopes) or None)
        else:
            token = self.token(self._speaker(request))
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    @staticmethod
    def _speaker(request: httpx.Request) -> str:
        if request.method == "POST" and request.content:
            try:
                body = json.loads(request.content)
            except ValueError:
                return "BLO"
            if isinstance(body, dict):
                reporter = body.get("reporter")
                if isinstance(reporter, dict) and isinstance(reporter.get("party"), str):
                    return reporter["party"]
                if isinstance(body.get("party"), str):
                    return body["party"]
        return "BLO"


def test_keys(work_dir: Path) -> tuple[bytes, Path]:
    """The signing key tests mint with, and the JWKS the services verify against."""
    private_path, jwks_path = ensure_dev_keys(work_dir / "auth")
    return private_path.read_bytes(), jwks_path


@contextlib.asynccontextmanager
async def running_system(
    work_dir: Path,
    environment: Mapping[str, str],
    services: Iterable[str] = SERVICE_NAMES,
    infra: Infrastructure | None = None,
    traces_to_console: bool = False,
) -> AsyncIterator[tuple[Infrastructure, ServiceProcesses]]:
    """Services as processes with `environment`; on `infra`, or on a fresh one of their own.
    With `traces_to_console` (and the console among `services`) they trace as `make run` does.

    A fresh PostgreSQL and broker isolate tests that need other settings (a policy with
    second-long deadlines, contacts that fail) from the shared system's consumers.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
    async with contextlib.AsyncExitStack() as stack:
        if infra is None:
            infra = await stack.enter_async_context(
                infrastructure(Settings(), work_dir, fresh=True)
            )
        processes = ServiceProcesses(
            environment={
                **infra.environment(),
                "ALERTS_FILE": str(work_dir / "alerts.jsonl"),
                **development_secrets(work_dir),
                **environment,
            },
            ports=free_ports(services),
            log_dir=work_dir / "logs",
            traces_to_console=traces_to_console,
        )
        stack.callback(processes.stop)
        await processes.start()
        yield infra, processes


def log_warnings(log_dir: Path, per_service: int = 15) -> str:
    """The last warnings and errors of each service's log: what a failure message needs when
    the system, not the test, stopped short (the logs themselves stay behind on CI)."""
    lines = []
    for log_file in sorted(log_dir.glob("*.log")):
        worrying = [
            line
            for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines()
            if '"level": "WARNING"' in line or '"level": "ERROR"' in line or "Traceback" in line
        ]
        lines.append(f"--- {log_file.stem}: {len(worrying)} warnings and errors")
        lines.extend(line[:600] for line in worrying[-per_service:])
    return "\n".join(lines)


def clients_for(processes: ServiceProcesses, work_dir: Path) -> dict[str, httpx.AsyncClient]:
    """An authenticated client per service of `processes`."""
    auth = PartyAuth(test_keys(work_dir)[0])
    return {
        # A busy machine may answer slowly; a test waits for the answer, not for a speed.
        service: httpx.AsyncClient(
            base_url=processes.url(service), timeout=PATIENCE_SECONDS, auth=auth
        )
        for service in processes.ports
    }


def on_database(database_url: str, name: str) -> str:
    """`database_url` with the database `name` on the same server (its address may be a Unix
    socket's, in the URL's query)."""
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(database_url: str, **settings: Any) -> AsyncIterator[Settings]:
    """A database of the test's own on the server of `database_url`, dropped after: the
    settings that point at it (with `settings`)."""
    name = f"scratch_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(on_database(database_url, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Settings(database_url=on_database(database_url, name), **settings)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def migrate_down(settings: Settings, service: str, revision: str) -> None:
    """Take the service's schema back to `revision`, as an operator's rollback would."""
    from alembic import command

    await asyncio.to_thread(command.downgrade, alembic_config(settings, service), revision)


MARKER = "marker"


class Heard:
    """What a connection listening on one channel heard, up to a marker notified last."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self.payloads: list[str] = []
        self._marked = asyncio.Event()

    def heard(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == MARKER:
            self._marked.set()
        else:
            self.payloads.append(payload)

    async def so_far(self, dsn: str) -> list[str]:
        """The notifications of every commit before now: a marker's, committed now, comes
        after them."""
        self._marked.clear()
        marker = await asyncpg.connect(dsn)
        try:
            await marker.execute("SELECT pg_notify($1, $2)", self._channel, MARKER)
        finally:
            await marker.close()
        await asyncio.wait_for(self._marked.wait(), PATIENCE_SECONDS)
        return list(self.payloads)


@contextlib.asynccontextmanager
async def listening(dsn: str, channel: str) -> AsyncIterator[Heard]:
    """What a connection listening on `channel` hears meanwhile (`Heard.so_far`)."""
    connection = await asyncpg.connect(dsn)
    heard = Heard(channel)
    await connection.add_listener(channel, heard.heard)
    try:
        yield heard
    finally:
        await connection.close()


async def execute_sql(settings: Settings, statement: str, *arguments: Any) -> None:
    """One statement on the suite's database, outside any service (to age rows, say)."""
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        await connection.execute(statement, *arguments)
    finally:
        await connection.close()


async def fetch_value(settings: Settings, statement: str, *arguments: Any) -> Any:
    """The first value a query of the suite's database answers, outside any service."""
    rows = await fetch_rows(settings, statement, *arguments)
    return rows[0][0] if rows else None


async def fetch_rows(settings: Settings, statement: str, *arguments: Any) -> list[Any]:
    """The rows a query of the suite's database answers, outside any service."""
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        return list(await connection.fetch(statement, *arguments))
    finally:
        await connection.close()


@contextlib.contextmanager
def statements_sent(engine: AsyncEngine) -> Iterator[list[str]]:
    """The statements `engine` sends while the block runs, in order."""
    sent: list[str] = []

    def seen(_c: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def kept_plan(
    connection: AsyncConnection,
    statement: Executable,
    arguments: Mapping[str, str] | None = None,
    *,
    analyze: bool = False,
) -> dict[str, Any]:
    """The plan PostgreSQL may keep for `statement` for any values of its parameters (its
    generic plan), the statement prepared as the driver prepares it (`$n` parameters, lists
    expanded), as `EXPLAIN (FORMAT JSON)` gives it. With `analyze` the plan is run, with
    `arguments` (SQL literals by parameter name, NULL for any not given), and tells what each
    node read: in a transaction the caller rolls back."""
    compiled = statement.compile(
        dialect=asyncpg_dialect.dialect(), compile_kwargs={"render_postcompile": True}
    )
    name = f"kept_{uuid4().hex}"
    await connection.exec_driver_sql(f"PREPARE {name} AS {compiled}")
    await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    values = ", ".join((arguments or {}).get(key, "NULL") for key in compiled.positiontup or ())
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    explained = await connection.exec_driver_sql(
        f"EXPLAIN ({options}) EXECUTE {name}" + (f"({values})" if values else "")
    )
    plan: dict[str, Any] = explained.scalar()[0]
    await connection.exec_driver_sql(f"DEALLOCATE {name}")
    return plan


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan as `EXPLAIN (FORMAT JSON)` or `auto_explain` writes it, depth
    first."""
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def node_reads(node: dict[str, Any]) -> str:
    """What a plan node reads: its index, else its table ("" for neither)."""
    return node.get("Index Name") or node.get("Relation Name", "")


async def purge_all(settings: Settings, each: Purge, batch: int = PURGE_BATCH) -> None:
    """Run a retention purge as the service's worker does, until nothing is left to purge."""
    engine = create_engine(settings, pool_size=1)
    try:
        sessions = create_session_factory(engine)
        await purge(sessions, each, batch=batch)
        assert await purge(sessions, each) == 0  # once purged, nothing left to purge
    finally:
        await engine.dispose()


async def log_in(console: httpx.AsyncClient, party: str, *, personal_data: bool = False) -> None:
    """The console's local login, as its page's form posts it, on a client whose base URL is
    the console: the client keeps the session cookie."""
    response = await console.post(
        "/login/local",
        data={
            "party": party,
            "name": "值班员",
            **({"personal_data": "true"} if personal_data else {}),
        },
        headers={"Origin": str(console.base_url).rstrip("/")},
    )
    assert response.status_code == 303, response.text
    assert console.cookies.get("sqjz_session")
