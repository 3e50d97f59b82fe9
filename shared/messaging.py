"""Transactional outbox and idempotent inbox (DESIGN.md "Never lose, never double").

A service writes its state change and the events it implies in one transaction (`Outbox.add`);
the `OutboxRelay` publishes them to Kafka in order and marks them sent. Consumers record every
applied event in the inbox in the same transaction as its effects (`Inbox.claim`), so a
redelivered event changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import CloudEvent, topic_of
from shared.pgnotify import Wakeup, notify

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Rows are spread over shards by key; one relay at a time holds a shard (advisory lock), so
# events of one incident leave in the order they were written while replicas share the work.
OUTBOX_SHARDS = 16


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("shard", SmallInteger, nullable=False),
        Column("topic", String(200), nullable=False),
        Column("key", Text, nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("event_type", String(200), nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index(
            "ix_outbox_unpublished",
            "shard",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("ce_source", String(200), nullable=False),
        Column("ce_id", UUID(as_uuid=True), nullable=False),
        Column("ce_type", String(200), nullable=False),
        Column("consumer", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition", SmallInteger, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("ce_source", "ce_id"),
    )


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


@dataclass(frozen=True)
class Outbox:
    table: Table

    @property
    def schema(self) -> str:
        assert self.table.schema is not None
        return self.table.schema

    async def add(self, session: AsyncSession, *events: CloudEvent) -> None:
        """Stage events in the caller's transaction; they leave when it commits."""
        if not events:
            return
        await session.execute(
            insert(self.table),
            [
                {
                    "shard": zlib.crc32(event.key) % OUTBOX_SHARDS,
                    "topic": topic_of(event.data),
                    "key": event.subject,
                    "event_id": event.id,
                    "event_type": event.type,
                    "headers": event.attributes(),
                    "payload": event.value(),
                }
                for event in events
            ],
        )
        await notify(session, notify_channel(self.schema))


@dataclass(frozen=True)
class Inbox:
    table: Table
    consumer: str

    async def claim(
        self, session: AsyncSession, event: CloudEvent, topic: str, partition: int, offset: int
    ) -> bool:
        """Record the event as applied; False when it was applied before (a redelivery)."""
        result = await session.execute(
            insert(self.table)
            .values(
                ce_source=event.source,
                ce_id=event.id,
                ce_type=event.type,
                consumer=self.consumer,
                topic=topic,
                partition=partition,
                offset=offset,
            )
            .on_conflict_do_nothing()
            .returning(self.table.c.ce_id)
        )
        return result.first() is not None


class OutboxRelay:
    """Publishes outbox rows in order, woken by LISTEN/NOTIFY, with a short poll as fallback."""

    def __init__(
        self,
        outbox: Outbox,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        listen_dsn: str,
        poll_interval: float = 0.5,
        batch_size: int = 200,
        published: Counter | None = None,
    ) -> None:
        self._outbox = outbox
        self._sessions = sessions
        self._producer = producer
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._wakeup = Wakeup(listen_dsn, notify_channel(outbox.schema))
        self._lock_space = zlib.crc32(f"outbox:{outbox.schema}".encode()) & 0x7FFFFFFF
        self._published = published

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                published = await self.publish_batch()
                backoff = 0.2
                if published < self._batch_size:
                    await self._wakeup.wait(self._poll_interval)
            except asyncio.CancelledError:
                await self._wakeup.close()
                raise
            except Exception:
                log.exception("outbox relay of %s failed; retrying", self._outbox.schema)
                await self._wakeup.close()
                await asyncio.sleep(backoff + random.random() * backoff)
                backoff = min(backoff * 2, 5.0)

    async def publish_batch(self) -> int:
        """Publish up to one batch from the shards this relay can lock; returns rows sent."""
        table = self._outbox.table
        async with self._sessions() as session, session.begin():
            shards = (
                (
                    await session.execute(
                        text(
                            "SELECT shard FROM generate_series(0, :last) AS shard "
                            "WHERE pg_try_advisory_xact_lock(:space, shard)"
                        ),
                        {"last": OUTBOX_SHARDS - 1, "space": self._lock_space},
                    )
                )
                .scalars()
                .all()
            )
            if not shards:
                return 0
            rows = (
                await session.execute(
                    select(table.c.id, table.c.topic, table.c.key, table.c.headers, table.c.payload)
                    .where(table.c.published_at.is_(None), table.c.shard.in_(shards))
                    .order_by(table.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            deliveries = [await self._send(row) for row in rows]
            await asyncio.gather(*deliveries)
            await session.execute(
                update(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .values(published_at=func.now())
            )
        if self._published is not None:
            self._published.inc(len(rows))
        return len(rows)

    async def _send(self, row: Row) -> asyncio.Future:
        """Queue one record; a PRODUCER span, child of the writer's, travels in its headers."""
        headers = dict(row.headers)
        with tracer.start_as_current_span(
            f"{row.topic} publish",
            context=extract(headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": row.topic,
                "messaging.message.id": headers.get("ce_id", ""),
                "incident.id": row.key,
            },
        ):
            inject(headers)
            return await self._producer.send(
                row.topic,
                value=row.payload,
                key=row.key.encode(),
                headers=[(name, value.encode()) for name, value in headers.items()],
            )

    async def backlog(self) -> int:
        return (await self.backlog_and_age())[0]

    async def backlog_and_age(self) -> tuple[int, float]:
        """Unpublished events and the age in seconds of the oldest (0 when none)."""
        table = self._outbox.table
        async with self._sessions() as session:
            result = await session.execute(
                select(
                    func.count(),
                    func.coalesce(
                        func.extract("epoch", func.now() - func.min(table.c.created_at)), 0
                    ),
                ).where(table.c.published_at.is_(None))
            )
            count, age = result.one()
            return int(count), float(age)
