"""Transactional outbox and idempotent inbox (DESIGN.md "Never lose, never double").

A service writes its state change and the events it implies in one transaction (`Outbox.add`);
the `OutboxRelay` publishes them to Kafka in order and marks them sent. Consumers record every
applied event in the inbox in the same transaction as its effects (`Inbox.claim`), so a
redelivered event changes nothing.

A broker that forgets: a sent row stays in the outbox for `OUTBOX_RETENTION_HOURS` with the
partition and offset the broker gave it and the broker's cluster id. The relay compares them
with what the broker holds (`forgotten_records`): a new cluster id (an empty broker started in
the old one's place) or a partition whose end is at or below an offset it gave (an unclean
leader election) means acknowledged records are gone, and the relay queues the rows from there
to be published again, in their original order. Inboxes absorb the repeats. `RetentionPurge`
deletes rows past their retention in bounded batches, a few times an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Protocol
from uuid import UUID as UUIDValue

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
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
    SmallInteger,
    String,
    Table,
    Text,
    TextClause,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import SWEPT_BY_TIME, rows_affected
from shared.driver import fetch
from shared.events import CloudEvent, topic_of
from shared.jsontext import from_json, json_text
from shared.pgnotify import Listener
from shared.staging import staged, when_ended
from shared.telemetry import trace_dropped

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Rows are spread over shards by key; one relay at a time holds a shard (advisory lock), so
# events of one incident leave in the order they were written while replicas share the work.
OUTBOX_SHARDS = 16
# A relay holds the shards it takes as session-level locks on its own connection, a lease it
# gives up after a pass once it is this old, so that other replicas may take some. A pass
# then needs no transaction of its own: it marks the rows the pass before it sent and reads
# its own in one statement, where a transaction holding the shards needed four.
LEASE_SECONDS = 1.0
# The shards free to a relay ($1 the last shard, $2 the relay's lock space), locked as found.
TAKE_SHARDS = (
    "SELECT ARRAY(SELECT shard FROM generate_series(0, $1::int) AS shard"
    " WHERE pg_try_advisory_lock($2::int, shard))"
)
GIVE_UP_SHARDS = "SELECT pg_advisory_unlock_all()"
# The relay's connection runs only its passes, each a read of the outbox's unsent rows by their
# index and a mark of rows by their key. Its statements keep the plans made on their first
# passes; on a new database those came from the statistics of an empty outbox, where reading the
# table whole looks cheapest, and the mark read the whole outbox each pass until autovacuum
# first analysed it (6.5 ms a pass after 14,000 rows). Never so planned, a pass reads its rows.
# Its commits do not wait for the disk: a mark is the one thing they write, and a mark lost
# with the database's last moments only sends its rows again, as a crash between a send and
# its mark does, which the inboxes absorb. A pass then costs no flush of its own, and the relay
# reads the next rows without waiting for one.
RELAY_SETTINGS = {"enable_seqscan": "off", "synchronous_commit": "off"}


def unsent_of(schema: str, excluding: str = "") -> str:
    """The oldest unsent rows of the shards a relay holds ($1), as many as $2, none of the ids
    in the array `excluding` names. The shards were taken before this statement's snapshot:
    the rows another relay sent from them before it gave them up show as sent."""
    left_out = f" AND id <> ALL({excluding}::bigint[])" if excluding else ""
    return (
        f'SELECT id, topic, key, headers::text AS headers, payload FROM "{schema}".outbox'
        f" WHERE published_at IS NULL AND shard = ANY($1::smallint[]){left_out}"
        " ORDER BY id LIMIT $2"
    )


def mark_sent(schema: str, first: int = 1) -> str:
    """Rows sent (their ids), where the broker put them (partitions, offsets) and the broker's
    cluster id: four arrays, the parameters from `first` on."""
    ids, partitions, offsets, clusters = (f"${number}" for number in range(first, first + 4))
    return (
        f'UPDATE "{schema}".outbox AS o SET published_at = now(),'
        ' "partition" = r.at_partition, "offset" = r.at_offset, cluster_id = r.cluster_id'
        f" FROM unnest({ids}::bigint[], {partitions}::smallint[], {offsets}::bigint[],"
        f" {clusters}::text[]) AS r(id, at_partition, at_offset, cluster_id) WHERE o.id = r.id"
    )


def marked_and_unsent_of(schema: str) -> str:
    """`mark_sent` of the rows sent before ($3–$6) and `unsent_of` ($1, $2) in one statement;
    the rows it marks are not read again (the statement does not see its own changes)."""
    return f"WITH marked AS ({mark_sent(schema, 3)}) {unsent_of(schema, excluding='$3')}"


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
        # Where the broker put the row when it was sent: kept to notice a broker that forgot it.
        Column("partition", SmallInteger),
        Column("offset", BigInteger),
        Column("cluster_id", String(200)),
        Index(
            "ix_outbox_unpublished",
            "shard",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index(
            "ix_outbox_placement",
            "cluster_id",
            "topic",
            "partition",
            "offset",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
        # The retention sweep's: a row is written before it is sent, so rows sent before a
        # moment were written before it too. Nothing indexes the sending time (an index of it
        # would offer the relay's read of unsent rows a plan through every block range).
        Index("ix_outbox_created_at", "created_at", **SWEPT_BY_TIME),
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
        Index("ix_inbox_processed_at", "processed_at", **SWEPT_BY_TIME),
    )


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


class LocalRelay:
    """The outbox's relay in this process, as its writers see it: the shards it holds, and its
    wake-up. A NOTIFY at a commit wakes every listening backend of the database, and the
    listener of every process; a write whose rows all fall in the shards this process's relay
    holds wakes that relay in process instead, once it has committed, and notifies nobody
    (`begin_write`). The relay keeps those shards until such writes have ended (`writing`), so
    their rows are its own to send; any other write notifies as before."""

    def __init__(self) -> None:
        self.held: frozenset[int] = frozenset()
        self.writing = 0
        self._wake: Callable[[], None] | None = None

    def attach(self, wake: Callable[[], None]) -> bool:
        """The process's relay, woken by `wake`, runs (holding no shards yet); False when
        another relay of the process is attached already (it stays the one writers wake)."""
        if self._wake is not None:
            return False
        self._wake, self.held = wake, frozenset()
        return True

    def detach(self) -> None:
        self._wake, self.held = None, frozenset()

    def begin_write(self, shards: Iterable[int]) -> bool:
        """Whether a write to `shards` may count on the relay in process (it runs here and
        holds every one of them) instead of a NOTIFY; if so, the write is under way from now
        until `ended` is told it ended."""
        if self._wake is None or not self.held.issuperset(shards):
            return False
        self.writing += 1
        return True

    def ended(self, committed: bool) -> None:
        """A write `begin_write` said yes to has ended; committed, its rows wait for the relay."""
        self.writing -= 1
        if committed:
            self.wake()

    def wake(self) -> None:
        """Wake the relay, if one runs here, as a NOTIFY on its channel would."""
        if self._wake is not None:
            self._wake()


@contextlib.asynccontextmanager
async def woken_in_process(relay: LocalRelay, shards: Iterable[int]) -> AsyncIterator[bool]:
    """Around a statement that writes outbox rows in `shards` and commits on its own (intake's
    first report, notification's record of delivered answers): whether it may leave out its
    NOTIFY, the process's relay holding those shards (`LocalRelay`); if so, that relay is
    woken once the block has ended without an error."""
    if not relay.begin_write(shards):
        yield False
        return
    committed = False
    try:
        yield True
        committed = True
    finally:
        relay.ended(committed)


@dataclass(frozen=True)
class Outbox:
    table: Table
    # Its relay, when one runs in this process (`OutboxRelay`).
    local: LocalRelay = field(default_factory=LocalRelay, compare=False)

    @property
    def schema(self) -> str:
        assert self.table.schema is not None
        return self.table.schema

    async def add(self, session: AsyncSession, *events: CloudEvent) -> None:
        """Stage events in the caller's transaction: written with everything else it stages,
        by one statement at its commit (`shared.staging`), and then they leave; the relay is
        woken at the commit, in process or by a NOTIFY (`LocalRelay`)."""
        if not events:
            return
        stage = staged(session)
        rows = [outbox_values(event) for event in events]
        stage.add_rows(self.schema, rows)
        if self.local.begin_write(row["shard"] for row in rows):
            when_ended(session, self.local.ended)
        else:
            stage.notify(notify_channel(self.schema))


def outbox_row(event: CloudEvent) -> dict[str, Any]:
    """The outbox's columns for an event: its shard (by key, so one key's events leave in
    order), topic, key, id, type, headers and the encoded record."""
    return {
        "shard": zlib.crc32(event.key) % OUTBOX_SHARDS,
        "topic": topic_of(event.data),
        "key": event.subject,
        "event_id": event.id,
        "event_type": event.type,
        "headers": event.attributes(),
        "payload": event.value(),
    }


# The columns `outbox_values` names, in the order a statement that writes the outbox row
# itself (with the state change, in one round trip) lists them.
OUTBOX_COLUMNS = "shard, topic, key, event_id, event_type, headers, payload"
OUTBOX_VALUES = (
    ":shard, :topic, :event_key, :event_id, :event_type, CAST(:headers AS jsonb), :payload"
)


def outbox_values(event: CloudEvent) -> dict[str, Any]:
    """An event's outbox row as `Outbox.add` stages it, as parameters of a statement that writes
    it itself (`OUTBOX_COLUMNS`, `OUTBOX_VALUES`): the key bound as `event_key`, the headers
    as JSON text."""
    row = outbox_row(event)
    return {
        **{name: value for name, value in row.items() if name != "key"},
        "event_key": row["key"],
        "headers": json_text(row["headers"]),
    }


@dataclass(frozen=True)
class InboxEntry:
    """An event as the inbox records it: its id (`source`, `id`), its type and where it was
    read."""

    source: str
    id: UUIDValue
    type: str
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, event: CloudEvent, topic: str, partition: int, offset: int) -> InboxEntry:
        return cls(event.source, event.id, event.type, topic, partition, offset)


@dataclass(frozen=True)
class Inbox:
    table: Table
    consumer: str

    @cached_property
    def claim_sql(self) -> str:
        """An INSERT of a batch's inbox rows (`claim_parameters`), nothing more: claimed at the
        commit as part of the statement that writes what the batch staged
        (`shared.staging.claim_at_commit`), an event applied before fails it, and so the
        batch."""
        # Constant text whatever the batch's size: compiled and prepared once, where a
        # multi-row VALUES would be compiled anew for every size of batch.
        return (
            f"INSERT INTO {self.table.schema}.{self.table.name}"
            ' (ce_source, ce_id, ce_type, consumer, topic, "partition", "offset")'
            " SELECT source, id, type, CAST(:inbox_consumer AS text), topic, part, position"
            " FROM unnest(CAST(:inbox_sources AS text[]), CAST(:inbox_ids AS uuid[]),"
            " CAST(:inbox_types AS text[]), CAST(:inbox_topics AS text[]),"
            " CAST(:inbox_partitions AS smallint[]), CAST(:inbox_offsets AS bigint[]))"
            " AS batch(source, id, type, topic, part, position)"
        )

    @cached_property
    def _claim_all(self) -> TextClause:
        return text(f"{self.claim_sql} ON CONFLICT DO NOTHING RETURNING ce_source, ce_id")

    def claim_parameters(self, events: Sequence[InboxEntry]) -> dict[str, Any]:
        return {
            "inbox_consumer": self.consumer,
            "inbox_sources": [event.source for event in events],
            "inbox_ids": [event.id for event in events],
            "inbox_types": [event.type for event in events],
            "inbox_topics": [event.topic for event in events],
            "inbox_partitions": [event.partition for event in events],
            "inbox_offsets": [event.offset for event in events],
        }

    async def claim_all(
        self, session: AsyncSession, events: Sequence[InboxEntry]
    ) -> set[tuple[str, UUIDValue]]:
        """Record every event of a batch as applied, in one statement; the ids (source, id) of
        those that were not applied before. An id twice in the batch is claimed once."""
        if not events:
            return set()
        claimed = await fetch(session, self._claim_all, self.claim_parameters(events))
        return {(source, event_id) for source, event_id in claimed}

    async def claim(
        self, session: AsyncSession, event: CloudEvent, topic: str, partition: int, offset: int
    ) -> bool:
        """Record the event as applied; False when it was applied before (a redelivery)."""
        return bool(await self.claim_all(session, [InboxEntry.of(event, topic, partition, offset)]))


# (topic, partition)
Partition = tuple[str, int]
# (cluster id, topic, partition)
Placement = tuple[str, str, int]


@dataclass(frozen=True)
class BrokerView:
    """What the broker holds now: its cluster id, the end offset of each partition asked about
    (0 for a partition it does not have), and the partitions where it was seen still holding
    the last record the outbox placed there (looked at where the end offset says otherwise)."""

    cluster_id: str
    end_offsets: Mapping[Partition, int]
    holding_last: frozenset[Partition] = frozenset()


@dataclass(frozen=True)
class Forgotten:
    """Sent rows the broker no longer has: those placed on `cluster_id`/`topic`/`partition` at
    `from_offset` or beyond."""

    cluster_id: str
    topic: str
    partition: int
    from_offset: int


def forgotten_records(highest: Mapping[Placement, int], broker: BrokerView) -> list[Forgotten]:
    """Which retained rows the broker lost, from the highest offset the outbox recorded on each
    (cluster, topic, partition). Rows of another cluster are all gone (an empty broker answers
    under a new id); on this cluster, a partition whose end is at or below a recorded offset
    lost the rows from its end on (offsets only grow on a broker that keeps what it took),
    unless the broker was seen still holding the last of them (its end offset was wrong)."""
    lost = []
    for (cluster_id, topic, partition), offset in sorted(highest.items()):
        if cluster_id != broker.cluster_id:
            lost.append(Forgotten(cluster_id, topic, partition, 0))
            continue
        end = broker.end_offsets.get((topic, partition), 0)
        if end <= offset and (topic, partition) not in broker.holding_last:
            lost.append(Forgotten(cluster_id, topic, partition, end))
    return lost


def doubtful_partitions(
    highest: Mapping[Placement, int], cluster_id: str, end_offsets: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Partitions of this cluster whose end offset is at or below the highest offset recorded
    there, with that offset: where the relay looks whether the broker still has the record."""
    return {
        (topic, partition): offset
        for (cluster, topic, partition), offset in highest.items()
        if cluster == cluster_id and end_offsets.get((topic, partition), 0) <= offset
    }


def offsets_gone_back(
    highest: Mapping[Partition, int], placed: Iterable[tuple[str, int, int]]
) -> dict[Partition, int]:
    """Partitions where the broker just gave a record (topic, partition, offset) an offset at
    or below one it gave before: it forgot what it held from there. The lowest such offset per
    partition, which is where its log ended when the batch arrived."""
    gone_back: dict[Partition, int] = {}
    for topic, partition, offset in placed:
        known = highest.get((topic, partition))
        if known is not None and offset <= known:
            gone_back[(topic, partition)] = min(offset, gone_back.get((topic, partition), offset))
    return gone_back


class BrokerProbe(Protocol):
    """The questions the relay asks the broker to notice it forgot (shared/kafka.py)."""

    async def cluster_id(self) -> str: ...

    async def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]: ...

    async def holds(self, topic: str, partition: int, offset: int, event_id: str) -> bool: ...

    async def ensure_topics(self) -> None: ...


@dataclass
class BrokerMemory:
    """The relay's knowledge of the broker: the cluster it last checked, the highest offset it
    knows was given on each partition there, and when to check again."""

    check_every: float
    cluster_id: str | None = None
    highest: dict[Partition, int] = field(default_factory=dict)
    check_due: bool = True
    checked_at: float = 0.0
    glanced_at: float = 0.0

    def should_check(self) -> bool:
        return self.check_due or time.monotonic() - self.checked_at >= self.check_every

    def placed(self, records: Iterable[tuple[str, int, int]]) -> None:
        for topic, partition, offset in records:
            if offset > self.highest.get((topic, partition), -1):
                self.highest[(topic, partition)] = offset


@dataclass(frozen=True)
class BrokerCheck:
    """How a relay checks that the broker kept what it was sent: what it asks (`probe`), how
    often when nothing else calls for it (`every` seconds), and where it counts the rows it
    queues again (`republished`)."""

    probe: BrokerProbe
    every: float = 60.0
    republished: Counter | None = None


# Under load the relay asks the cluster id at most this often; a quiet relay asks before its
# first batch after the pause.
GLANCE_SECONDS = 1.0


class OutboxRelay:
    """Publishes outbox rows in order, woken by LISTEN/NOTIFY, with a short poll as fallback;
    with a `broker_check`, checks that the broker still has what it was sent (module docstring):
    before its first batch, after any failure, when a batch comes back with offsets gone back,
    and every `broker_check.every` seconds.

    With a `pace`, a pass that sent rows is followed by the next no sooner than `pace` seconds
    after it began: rows written meanwhile go out together, and the consumers downstream take
    them as one batch (one transaction, one pass of their own relays). A row written after a
    quiet spell goes at once, and a backlog (a full pass) without rests."""

    def __init__(
        self,
        outbox: Outbox,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        dsn: str,
        poll_interval: float = 0.5,
        batch_size: int = 200,
        published: Counter | None = None,
        broker_check: BrokerCheck | None = None,
        server_settings: Mapping[str, str] | None = None,
        listener: Listener | None = None,
        pace: float = 0.0,
    ) -> None:
        self._outbox = outbox
        self._sessions = sessions
        self._producer = producer
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._pace = pace
        # Woken through the process's listening connection (`listener`; without one, a listener
        # of its own); it holds its shards and runs its passes on a connection of its own
        # (`server_settings`: as the service's other connections), which listens to nothing.
        channel = notify_channel(outbox.schema)
        self._wakeup = (
            listener.wakeup(channel)
            if listener is not None
            else Listener.alone(dsn, channel, server_settings)
        )
        self._dsn = dsn
        self._connection_settings = {**(server_settings or {}), **RELAY_SETTINGS}
        self._connection: asyncpg.Connection | None = None
        self._lock_space = zlib.crc32(f"outbox:{outbox.schema}".encode()) & 0x7FFFFFFF
        self._published = published
        schema = outbox.schema
        self._read_unsent = unsent_of(schema)
        self._mark_sent = mark_sent(schema)
        self._marked_and_unsent = marked_and_unsent_of(schema)
        # Rows sent and not yet marked sent: (id, partition, offset, cluster id) each, marked
        # by the next pass's statement, or before the shards are given up; dropped with the
        # connection that held their shards (a replica then sends them again: inboxes absorb
        # the repeat, as after a crash between a send and its mark).
        self._sent_unmarked: list[tuple[int, int, int, str | None]] = []
        # The shards of the relay's lease, the connection that holds them, and since when.
        self._held: list[int] = []
        self._lease_connection: asyncpg.Connection | None = None
        self._leased_at = time.monotonic()
        # The outbox's `LocalRelay` while this relay is the one its process's writers wake.
        self._local: LocalRelay | None = None
        self._probe = broker_check.probe if broker_check is not None else None
        self._broker = BrokerMemory(broker_check.every if broker_check is not None else 0.0)
        self._republished = broker_check.republished if broker_check is not None else None

    async def run(self) -> None:
        # The process's writers wake this relay in process while it runs (`LocalRelay`).
        self._local = self._outbox.local if self._outbox.local.attach(self._wakeup.wake) else None
        try:
            await self._run()
        finally:
            if self._local is not None:
                self._local.detach()
                self._local = None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self._probe is not None and self._broker.should_check():
                    await self.check_broker()
                began = time.monotonic()
                published = await self.publish_batch()
                backoff = 0.2
                if self._pace and 0 < published < self._batch_size:
                    await self._rest(began + self._pace - time.monotonic())
                if published < self._batch_size and not self._check_pending():
                    await self._wait_for_rows()
            except asyncio.CancelledError:
                await self.close()
                raise
            except Exception:
                log.exception("outbox relay of %s failed; retrying", self._outbox.schema)
                # Whatever failed, the broker may be another one when it answers again.
                self._broker.check_due = True
                await self.close()
                await asyncio.sleep(backoff + random.random() * backoff)
                backoff = min(backoff * 2, 5.0)

    def _check_pending(self) -> bool:
        """A broker check is due and the relay can make it (a relay without a probe, in a test
        or a tool, never checks: it waits for rows all the same)."""
        return self._probe is not None and self._broker.check_due

    async def _rest(self, seconds: float) -> None:
        """The rest of the pace after a pass that sent rows; rows written meanwhile wait for
        the next pass (their NOTIFYs keep it from waiting)."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _wait_for_rows(self) -> None:
        """Until a NOTIFY or the poll. Shards taken are given up when their lease ends, also
        while the relay waits: a replica's broker check waits for every shard."""
        if self._held:
            lease_left = LEASE_SECONDS - (time.monotonic() - self._leased_at)
            if lease_left < self._poll_interval:
                if await self._wakeup.wait(max(lease_left, 0.0)):
                    return
                await self._end_lease(await self.connection())
        await self._wakeup.wait(self._poll_interval)

    async def _end_lease(self, connection: asyncpg.Connection) -> None:
        """The lease is over: the process's writers notify from now on, and the shards go
        once no write that counted on this relay is under way (the last one's end wakes it
        for a pass that sends its rows, then lets them go)."""
        self._let_go()
        if self._local is None or self._local.writing == 0:
            await self._give_up_shards(connection)

    async def connection(self) -> asyncpg.Connection:
        """The connection that holds the relay's shards and runs its passes: what it holds
        there (session-level locks) it loses with the connection (`_connection_lost`)."""
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(
                self._dsn, server_settings=self._connection_settings
            )
            self._connection.add_termination_listener(self._connection_lost)
        return self._connection

    def _connection_lost(self, *_: object) -> None:
        """The shards went with the connection: the process's writers notify from the moment
        the loss is seen, not from the relay's next pass (which may wait for a new connection,
        while another replica takes the shards and waits for the NOTIFYs). The relay wakes."""
        self._let_go()
        self._wakeup.wake()

    async def _lease(self, connection: asyncpg.Connection) -> list[int]:
        """The shards the relay holds on `connection`; when it holds none there, those it can
        take now (a connection that was lost took its locks with it)."""
        if connection is not self._lease_connection:
            self._held, self._lease_connection = [], connection
            self._sent_unmarked = []
            self._let_go()
        if not self._held:
            self._held = list(
                await connection.fetchval(TAKE_SHARDS, OUTBOX_SHARDS - 1, self._lock_space)
            )
            self._leased_at = time.monotonic()
            if self._local is not None:
                self._local.held = frozenset(self._held)
        return self._held

    async def _give_up_shards(self, connection: asyncpg.Connection) -> None:
        """Mark what was sent, then let the shards go: whoever takes them next reads only
        what this relay did not send."""
        self._let_go()
        await self._record_sent(connection)
        await connection.execute(GIVE_UP_SHARDS)
        self._held = []

    def _let_go(self) -> None:
        """From now on the process's writers notify: the shards are about to go."""
        if self._local is not None:
            self._local.held = frozenset()

    async def _record_sent(self, connection: asyncpg.Connection) -> None:
        """Mark the rows sent and not yet marked, on the connection that holds their shards."""
        unmarked, self._sent_unmarked = self._sent_unmarked, []
        holder = self._lease_connection
        if unmarked and holder is not None and connection is holder:
            await holder.execute(self._mark_sent, *zip(*unmarked, strict=True))

    async def close(self) -> None:
        """Mark what was sent, if the connection still answers, and close it: its shards are
        free at once."""
        self._let_go()
        if self._lease_connection is not None:
            with contextlib.suppress(Exception):
                await self._record_sent(self._lease_connection)
        self._sent_unmarked = []
        await self._wakeup.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        self._held, self._lease_connection = [], None

    async def check_broker(self) -> int:
        """Compare what the outbox recorded with what the broker holds; queue what it lost to be
        published again. Holds every shard meanwhile, so no batch goes out before the rows the
        broker lost. Returns how many rows were queued again."""
        if self._probe is None:
            raise RuntimeError("a relay without a broker probe cannot check the broker")
        table = self._outbox.table
        cluster_id = await self._probe.cluster_id()
        # Its own lease would stand in the way of the locks below, taken on another connection.
        await self._give_up_shards(await self.connection())
        async with self._sessions() as session, session.begin():
            await session.execute(
                text(
                    "SELECT pg_advisory_xact_lock(:space, shard) "
                    "FROM generate_series(0, :last) AS shard ORDER BY shard"
                ),
                {"last": OUTBOX_SHARDS - 1, "space": self._lock_space},
            )
            rows = await session.execute(
                select(
                    table.c.cluster_id, table.c.topic, table.c.partition, func.max(table.c.offset)
                )
                .where(table.c.published_at.is_not(None), table.c.cluster_id.is_not(None))
                .group_by(table.c.cluster_id, table.c.topic, table.c.partition)
            )
            highest = {(c, t, int(p)): int(o) for c, t, p, o in rows.all()}
            here = {(t, p) for c, t, p in highest if c == cluster_id}
            ends = await self._probe.end_offsets(here) if here else {}
            holding = await self._still_held(
                session, cluster_id, doubtful_partitions(highest, cluster_id, ends)
            )
            lost = forgotten_records(highest, BrokerView(cluster_id, ends, holding))
            if lost or (self._broker.cluster_id not in (None, cluster_id)):
                # An empty broker has no topics: make them as configured before anything is
                # sent. Then the producer learns them anew: it would go on sending to the
                # partitions the old broker had, which the new one takes but nobody reads.
                await self._probe.ensure_topics()
                await self._producer.client.force_metadata_update()
            queued = await self._queue_again(session, lost)
        self._broker.highest = {(t, p): o for (c, t, p), o in highest.items() if c == cluster_id}
        for gone in lost:
            if gone.cluster_id == cluster_id:
                self._broker.highest.pop((gone.topic, gone.partition), None)
                if gone.from_offset > 0:
                    self._broker.highest[(gone.topic, gone.partition)] = gone.from_offset - 1
        if queued:
            self._said_lost(queued, lost, cluster_id)
        self._broker.cluster_id = cluster_id
        self._broker.check_due = False
        self._broker.checked_at = self._broker.glanced_at = time.monotonic()
        return queued

    async def _still_held(
        self, session: AsyncSession, cluster_id: str, doubtful: Mapping[Partition, int]
    ) -> frozenset[Partition]:
        """The doubtful partitions whose last recorded record the broker still has."""
        if not doubtful or self._probe is None:
            return frozenset()
        table = self._outbox.table
        held = set()
        for (topic, partition), offset in sorted(doubtful.items()):
            event_id = (
                await session.execute(
                    select(table.c.event_id).where(
                        table.c.published_at.is_not(None),
                        table.c.cluster_id == cluster_id,
                        table.c.topic == topic,
                        table.c.partition == partition,
                        table.c.offset == offset,
                    )
                )
            ).scalar()
            if event_id is not None and await self._probe.holds(
                topic, partition, offset, str(event_id)
            ):
                held.add((topic, partition))
        return frozenset(held)

    async def _queue_again(self, session: AsyncSession, lost: Iterable[Forgotten]) -> int:
        """Mark the rows the broker lost unsent: the relay sends them again, oldest first, before
        any later row of their shard."""
        table = self._outbox.table
        queued = 0
        for gone in lost:
            result = await session.execute(
                update(table)
                .where(
                    table.c.published_at.is_not(None),
                    table.c.cluster_id == gone.cluster_id,
                    table.c.topic == gone.topic,
                    table.c.partition == gone.partition,
                    table.c.offset >= gone.from_offset,
                )
                .values(published_at=None, partition=None, offset=None, cluster_id=None)
            )
            queued += rows_affected(result)
        if queued and self._republished is not None:
            self._republished.inc(queued)
        return queued

    async def _same_broker(self) -> bool:
        """Before a batch, unless asked within `GLANCE_SECONDS`: is the broker the one checked?
        One small metadata request; a broker restarted while the relay was quiet shows here
        before any row is sent to it."""
        if self._probe is None or self._broker.cluster_id is None:
            return True
        if time.monotonic() - self._broker.glanced_at < GLANCE_SECONDS:
            return True
        same = await self._probe.cluster_id() == self._broker.cluster_id
        self._broker.glanced_at = time.monotonic()
        if not same:
            self._broker.check_due = True
        return same

    def _said_lost(self, queued: int, lost: list[Forgotten], cluster_id: str) -> None:
        partitions = sorted({f"{gone.topic}[{gone.partition}]@{gone.from_offset}" for gone in lost})
        log.warning(
            "outbox of %s: broker %s lost records; republishing %d records after broker loss "
            "(from %s)",
            self._outbox.schema,
            cluster_id,
            queued,
            ", ".join(partitions[:20]) + (" ..." if len(partitions) > 20 else ""),
        )

    async def publish_batch(self) -> int:
        """Publish up to one batch from the shards of this relay's lease; returns rows sent.
        The relay's own connection (`connection`) holds the shards. The rows are marked sent
        by the statement that reads the next pass's rows (the relay's next pass comes within
        its poll interval), or before the shards are given up, or when the relay closes: one
        statement a pass, each its own transaction."""
        connection = await self.connection()
        held = await self._lease(connection)
        sent = await self._publish_from(connection, held) if held else 0
        if held and time.monotonic() - self._leased_at >= LEASE_SECONDS:
            await self._end_lease(connection)
        return sent

    async def _publish_from(self, connection: asyncpg.Connection, held: list[int]) -> int:
        if self._sent_unmarked:
            marking = zip(*self._sent_unmarked, strict=True)
            rows = await connection.fetch(self._marked_and_unsent, held, self._batch_size, *marking)
            self._sent_unmarked = []
        else:
            rows = await connection.fetch(self._read_unsent, held, self._batch_size)
        if not rows:
            return 0
        if not await self._same_broker():
            return 0  # the rows wait for `check_broker`: the ones it loses go first
        deliveries = [await self._send(row) for row in rows]
        placed: list[RecordMetadata] = await asyncio.gather(*deliveries)
        records = [
            (row["topic"], meta.partition, meta.offset)
            for row, meta in zip(rows, placed, strict=True)
        ]
        gone_back = offsets_gone_back(self._broker.highest, records)
        if gone_back and self._broker.cluster_id is not None:
            # Found out by sending: the rows it lost go again after this batch.
            lost = [
                Forgotten(self._broker.cluster_id, topic, partition, offset)
                for (topic, partition), offset in sorted(gone_back.items())
            ]
            async with self._sessions() as session, session.begin():
                queued = await self._queue_again(session, lost)
            if queued:
                self._said_lost(queued, lost, self._broker.cluster_id)
            self._broker.check_due = True
        self._sent_unmarked = [
            (row["id"], meta.partition, meta.offset, self._broker.cluster_id)
            for row, meta in zip(rows, placed, strict=True)
        ]
        self._broker.placed(records)
        if self._published is not None:
            self._published.inc(len(rows))
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        """Queue one record; a PRODUCER span, child of the writer's, travels in its headers."""
        headers = from_json(row["headers"])
        topic, key = row["topic"], row["key"]
        if trace_dropped(headers):
            # Never recorded: the writer's context travels on as written (docs/performance.md,
            # item 104).
            return await self._queue(topic, key, row["payload"], headers)
        with tracer.start_as_current_span(
            f"{topic} publish",
            context=extract(headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.message.id": headers.get("ce_id", ""),
                "incident.id": key,
            },
        ):
            inject(headers)
            return await self._queue(topic, key, row["payload"], headers)

    async def _queue(
        self, topic: str, key: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        delivered: asyncio.Future[Any] = await self._producer.send(
            topic,
            value=payload,
            key=key.encode(),
            headers=[(name, value.encode()) for name, value in headers.items()],
        )
        return delivered

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


@dataclass(frozen=True)
class Retention:
    """Rows of `table` whose `column` is older than `keep` may go; found by the index of
    `found_by`, a time never later than `column`'s (the column itself when not given)."""

    table: Table
    column: str
    keep: timedelta
    found_by: str | None = None

    @classmethod
    def of_sent_outbox_rows(cls, table: Table, keep: timedelta) -> Retention:
        """Sent outbox rows past `keep`, found among those written before their cutoff by the
        outbox's index of writing times (`ix_outbox_created_at`): a row is sent after it is
        written."""
        return cls(table, "published_at", keep, found_by="created_at")


# Rows deleted per transaction: short transactions, locks held briefly, WAL in small steps.
PURGE_BATCH = 1000


def past_retention(retention: Retention) -> str:
    """A purge's statement: up to `:batch` rows older than `:keep` deleted, found by the index
    of their time (`shared.db.SWEPT_BY_TIME`)."""
    table = retention.table
    name = f'"{table.schema}".{table.name}'
    past = f"{retention.column} < now() - CAST(:keep AS interval)"
    if retention.found_by is not None:
        past = f"{retention.found_by} < now() - CAST(:keep AS interval) AND {past}"
    return (
        f"DELETE FROM {name} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {name} "
        f"WHERE {past} LIMIT :batch))"
    )


class RetentionPurge:
    """Deletes outbox rows sent longer ago than their retention and inbox rows older than
    theirs, every `interval` seconds, in batches of `PURGE_BATCH`. Idle, it costs one cheap
    indexed query per table per interval."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retentions: Iterable[Retention],
        interval: float,
        purged: Counter | None = None,
    ) -> None:
        self._sessions = sessions
        self._retentions = tuple(retentions)
        self._interval = interval
        self._purged = purged

    async def run(self) -> None:
        while True:
            await self.purge()
            await asyncio.sleep(self._interval)  # the schedule itself, not a synchronisation

    async def purge(self) -> int:
        total = 0
        for retention in self._retentions:
            total += await self.purge_one(retention)
        return total

    async def purge_one(self, retention: Retention) -> int:
        table = retention.table
        name = f'"{table.schema}".{table.name}'
        deleted_in_all = 0
        while True:
            async with self._sessions() as session, session.begin():
                result = await session.execute(
                    text(past_retention(retention)),
                    {"keep": retention.keep, "batch": PURGE_BATCH},
                )
            deleted = rows_affected(result)
            deleted_in_all += deleted
            if self._purged is not None and deleted:
                self._purged.labels(table.name).inc(deleted)
            if deleted < PURGE_BATCH:
                break
        if deleted_in_all:
            log.info("%s: purged %d rows past %s", name, deleted_in_all, retention.keep)
        return deleted_in_all
