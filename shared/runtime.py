"""What every service runs between start and stop: database, producer, relay, consumers.

Built in the service's lifespan and handed to routes through `request.app.state`, so no client
lives in a module-level global.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import MetaData, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import TokenVerifier, authenticate
from shared.db import (
    connection_settings,
    create_engine,
    create_session_factory,
    migrate,
    migration_head,
)
from shared.kafka import EventConsumer, HandlerTable, KafkaBrokerProbe, create_producer
from shared.limits import RequestLimitsMiddleware
from shared.messaging import (
    BrokerCheck,
    Inbox,
    Outbox,
    OutboxRelay,
    Retention,
    RetentionPurge,
    inbox_table,
    outbox_table,
)
from shared.observability import (
    HttpMetricsMiddleware,
    IncidentRoute,
    ServiceMetrics,
    configure_logging,
)
from shared.pgnotify import Listener
from shared.problems import install_problem_handlers
from shared.settings import Settings
from shared.telemetry import (
    ServerSpans,
    configure_tracing,
    instrument_http_clients,
    server_telemetry,
)

log = logging.getLogger(__name__)

# The release of the package, as installed: the version every API document and image names.
RELEASE = importlib.metadata.version("correction-emergency")

Worker = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpecification:
    """A consumer group of the service: its topics, its handlers, what builds its member, and
    how long a fetch that brought records may wait for more (`EventConsumer.linger_seconds`;
    0: never)."""

    group: str
    topics: tuple[str, ...]
    handlers: HandlerTable
    consumer_type: Callable[..., EventConsumer]
    linger_ms: int = 0

    def member(
        self,
        sessions: async_sessionmaker[AsyncSession],
        inbox_table: Table,
        producer: AIOKafkaProducer,
        settings: Settings,
        metrics: ServiceMetrics | None = None,
    ) -> EventConsumer:
        """This process's member of the group."""
        consumer = self.consumer_type(
            self.group,
            self.topics,
            self.handlers,
            sessions,
            Inbox(inbox_table, self.group),
            producer,
            settings,
            metrics,
        )
        consumer.linger_seconds = self.linger_ms / 1000
        return consumer


@dataclass(frozen=True)
class MessagingTables:
    outbox: Outbox
    inbox_table: Table

    @classmethod
    def of(cls, metadata: MetaData) -> MessagingTables:
        return cls(Outbox(outbox_table(metadata)), inbox_table(metadata))


@dataclass
class ServiceRuntime:
    """The clients and background workers of one service process."""

    service: str
    settings: Settings
    messaging: MessagingTables
    # The relay's pace (`OutboxRelay`): 0, each pass as soon as rows are there.
    relay_pace_ms: int = 0
    engine: AsyncEngine = field(init=False)
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    producer: AIOKafkaProducer = field(init=False)
    relay: OutboxRelay = field(init=False)
    # The process's one listening connection: its workers wait on their channels through it.
    listener: Listener = field(init=False)
    broker_probe: KafkaBrokerProbe = field(init=False)
    metrics: ServiceMetrics = field(init=False)
    tracer_provider: TracerProvider | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    _workers: list[tuple[str, Worker]] = field(default_factory=list)
    _consumer_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _worker_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _consumer_specs: list[ConsumerSpecification] = field(default_factory=list)
    _migration_head: str | None = None
    _readiness_checks: list[tuple[str, Callable[[], str]]] = field(default_factory=list)
    _details: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(self.service)
        # The process's own outbox: its writers and its relay share what the relay holds
        # (`LocalRelay`), which the tables, shared by every runtime of the service, do not.
        self._outbox = Outbox(self.messaging.outbox.table)

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def add_consumer(
        self,
        group: str,
        topics: Iterable[str],
        handlers: HandlerTable,
        consumer_type: Callable[..., EventConsumer] = EventConsumer,
        *,
        linger_ms: int = 0,
    ) -> None:
        """A consumer group of this service; `consumer_type` builds it (a subclass may apply
        records in batches) from the arguments `EventConsumer` takes. `handlers` must decide
        about every type of `topics`, and name no other: the service does not start else.
        `linger_ms`: how long a fetch that brought records waits for more to join its batch
        (for a consumer off the alerts' path)."""
        topics = tuple(topics)
        undecided, foreign = handlers.undecided(topics), handlers.foreign(topics)
        if undecided or foreign:
            raise ValueError(
                f"{group}: decide whether to handle or ignore {undecided}; "
                f"not on {list(topics)}: {foreign}"
            )
        self._consumer_specs.append(
            ConsumerSpecification(group, topics, handlers, consumer_type, linger_ms)
        )

    @property
    def consumer_registrations(self) -> list[tuple[str, tuple[str, ...], HandlerTable]]:
        """Group, topics and handler table of every consumer, for documents and tests."""
        return [(spec.group, spec.topics, spec.handlers) for spec in self._consumer_specs]

    @property
    def consumer_specifications(self) -> list[ConsumerSpecification]:
        """Every consumer group as registered, each able to build its member."""
        return list(self._consumer_specs)

    def add_readiness_check(
        self, name: str, check: Callable[[], str], *, required: bool = True
    ) -> None:
        """A check `/readyz` reports: "ok", or what is wrong. One not `required` is a detail:
        shown, but the service stays ready whatever it says."""
        self._readiness_checks.append((name, check))
        if not required:
            self._details.add(name)

    def is_ready(self, checks: dict[str, str]) -> bool:
        return all(value == "ok" for name, value in checks.items() if name not in self._details)

    def add_worker(self, name: str, worker: Worker) -> None:
        """A background loop, restarted after a failure, cancelled at stop."""
        self._workers.append((name, worker))

    async def start(self) -> None:
        if self.settings.migrate_on_startup:
            await migrate(self.settings, self.service)
        self._migration_head = migration_head(self.service)
        # No span per SQL statement: an incident takes over a hundred across the services, and
        # the spans of each request, consumed event and send already time the work around them.
        self.engine = create_engine(self.settings, application_name=self.service)
        self.sessions = create_session_factory(self.engine)
        self.producer = create_producer(self.settings, client_id=self.service)
        await _retry(self.producer.start, f"{self.service}: connect to Kafka")
        self.broker_probe = KafkaBrokerProbe(self.settings, self.service)
        server_settings = connection_settings(self.settings, self.service)
        self.listener = Listener(self.settings.plain_database_url, server_settings)
        self.relay = OutboxRelay(
            self.outbox,
            self.sessions,
            self.producer,
            self.settings.plain_database_url,
            self.settings.outbox_poll_interval_seconds,
            published=self.metrics.outbox_published,
            broker_check=BrokerCheck(
                self.broker_probe,
                self.settings.outbox_broker_check_seconds,
                self.metrics.outbox_republished,
            ),
            server_settings=server_settings,
            listener=self.listener,
            pace=self.relay_pace_ms / 1000,
        )
        self._worker_tasks.append(_spawn("outbox-relay", self.relay.run))
        purge = RetentionPurge(
            self.sessions,
            [
                Retention.of_sent_outbox_rows(
                    self.outbox.table, timedelta(hours=self.settings.outbox_retention_hours)
                ),
                Retention(
                    self.messaging.inbox_table,
                    "processed_at",
                    timedelta(hours=self.settings.inbox_retention_hours),
                ),
            ],
            self.settings.retention_sweep_interval_seconds,
            self.metrics.retention_purged,
        )
        self._worker_tasks.append(_spawn("retention-purge", purge.run))
        for spec in self._consumer_specs:
            consumer = spec.member(
                self.sessions,
                self.messaging.inbox_table,
                self.producer,
                self.settings,
                self.metrics,
            )
            consumer.follow_broker(self.broker_probe)
            self.consumers.append(consumer)
            self._consumer_tasks.append(_spawn(spec.group, consumer.run))
        for name, worker in self._workers:
            self._worker_tasks.append(_spawn(name, worker))
        self.metrics.add_scrape_hook(self._refresh_gauges)

    async def stop(self) -> None:
        """SIGTERM: stop fetching, finish and commit the records in hand, publish what the last
        transactions staged, flush spans; all within the grace period."""
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace_seconds
        for consumer in self.consumers:
            consumer.request_stop()
        if self._consumer_tasks:
            await asyncio.wait(self._consumer_tasks, timeout=self._left(deadline, 0.5))
        await _cancel(self._consumer_tasks + self._worker_tasks)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._left(deadline, 0.3)):
                while await self.relay.publish_batch():
                    pass
        with contextlib.suppress(Exception):
            await self.relay.close()
        with contextlib.suppress(Exception):
            await self.listener.close()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        await self.broker_probe.close()
        await self.engine.dispose()
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.force_flush, 5000)

    @staticmethod
    def _left(deadline: float, share: float) -> float:
        return max((deadline - asyncio.get_running_loop().time()) * share, 0.1)

    async def _refresh_gauges(self) -> None:
        backlog, oldest = await self.relay.backlog_and_age()
        self.metrics.outbox_backlog.set(backlog)
        self.metrics.outbox_oldest_age.set(oldest)
        self.metrics.consumer_lag.clear()
        for consumer in self.consumers:
            for (topic, partition), lag in (await consumer.lag()).items():
                self.metrics.consumer_lag.labels(consumer.name, topic, str(partition)).set(lag)

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {error.__class__.__name__}"
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=3)
            checks["broker"] = "ok"
        except Exception as error:
            checks["broker"] = f"unavailable: {error.__class__.__name__}"
        try:
            async with self.engine.connect() as connection:
                applied = (
                    await connection.execute(
                        text(f'SELECT version_num FROM "{self.service}".alembic_version')
                    )
                ).scalar_one_or_none()
            checks["migrations"] = (
                "ok"
                if applied == self._migration_head
                else f"at {applied}, code needs {self._migration_head}"
            )
        except Exception as error:
            checks["migrations"] = f"unavailable: {error.__class__.__name__}"
        for name, check in self._readiness_checks:
            checks[name] = check()
        return checks


def _spawn(name: str, worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(_supervise(name, worker), name=name)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _supervise(name: str, worker: Worker) -> None:
    delay = 0.2
    while True:
        try:
            await worker()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s failed; restarting in %.1fs", name, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)


async def _retry(action: Callable[[], Awaitable[object]], what: str, attempts: int = 30) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await action()
            return
        except Exception as error:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d): %r", what, attempt, error)
            await asyncio.sleep(min(0.2 * attempt, 2.0))


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def session_in_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one transaction per request, committed when the route returns."""
    async with runtime_of(request).sessions() as session, session.begin():
        yield session


# "function" scope commits before the response is sent: a client that got 201 can read it back.
DatabaseSession = Annotated[AsyncSession, Depends(session_in_transaction, scope="function")]


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Database and broker reachable, migrations applied")
    async def readyz(request: Request) -> JSONResponse:
        runtime = runtime_of(request)
        checks = await runtime.readiness()
        ready = runtime.is_ready(checks)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        body = await runtime_of(request).metrics.render()
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return router


# Where Swagger UI's and ReDoc's assets are served (fastapi-offline's copies).
DOCS_ASSETS = "/docs/assets"


def create_service_app(
    runtime: ServiceRuntime,
    title: str,
    description: str,
    routers: Iterable[APIRouter],
    public_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """The FastAPI app every service builds: lifespan, problem+json errors, health routes,
    a bearer token on every route of `routers` (`public_routers` carry their own proof, like
    the signed acknowledgement links), limits on body size and request rate."""

    if runtime.settings.log_json:
        configure_logging(runtime.service)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # /docs and /redoc load their scripts and styles from the service itself: a county
    # intranet does not reach a public CDN.
    app = FastAPIOffline(
        title=title,
        description=description,
        version=RELEASE,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        telemetry=server_telemetry(),
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=runtime.settings.max_request_body_bytes,
        rate=runtime.settings.rate_limit_per_second,
        burst=runtime.settings.rate_limit_burst,
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=runtime.metrics)
    runtime.tracer_provider = configure_tracing(runtime.settings, runtime.service)
    if runtime.tracer_provider is not None:
        app.add_middleware(ServerSpans, tracer_provider=runtime.tracer_provider)
        instrument_http_clients()
    app.state.token_verifier = TokenVerifier.from_settings(runtime.settings)
    app.include_router(health_router())
    routers, public_routers = tuple(routers), tuple(public_routers)
    for router in (*routers, *public_routers):
        if not issubclass(router.route_class, IncidentRoute):
            raise TypeError(
                f"router {router.prefix or router.tags}: a service's routes are IncidentRoute "
                "(their log lines name the incident of the path)"
            )
    for router in routers:
        app.include_router(router, dependencies=[Depends(authenticate)])
    for router in public_routers:
        app.include_router(router)
    return app
