"""Kafka on aiokafka: an `acks=all` producer, topic creation, and the event consumer.

The consumer never auto-commits: for each record it decodes, validates and applies the event in
one database transaction (with the inbox), and only then marks `offset + 1` for commit. Marked
offsets are committed together at most every `KAFKA_COMMIT_INTERVAL_MS`, before a rebalance
takes partitions away and when the consumer stops: a consumer that crashes in between reads up to
that interval's records again, and the inbox makes them change nothing. Under load this is one
offset-commit request a second instead of one per fetch, for the consumer and the broker.

Its handler table says, for every type of its topics, which handler applies it or that it is
read past.
A record that cannot be decoded or validated goes to `<topic>.dlq` with the reason and the
consumer's name in its headers, and the consumer goes on. Infrastructure failures are retried,
never skipped.

A broker restarted empty keeps no committed offsets, and Tansu does not answer a position past
a partition's end as out of range: a consumer would go on from where it was and skip what the
outboxes send again below that (shared/messaging.py). So before records that follow a quiet
spell it asks the broker's cluster id, and reads every partition from its start on a new one;
and it asks again when it is given partitions, since the offsets it committed on the old broker
can reach the new one (`EventConsumer._on_assigned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.propagate import extract
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import KeptSession, database_unavailable, sqlstate
from shared.events import EVENT_TYPES, CloudEvent, UndecodableEvent, decode, type_of
from shared.events.topics import all_topics_with_dead_letters, dead_letter_topic
from shared.messaging import BrokerProbe, Inbox, InboxEntry
from shared.observability import ServiceMetrics, current_incident
from shared.settings import Settings
from shared.staging import claim_at_commit, write_staged
from shared.telemetry import span_unless_dropped

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# A consumer asks the broker's cluster id when records come after this long without any, and
# at most this often while they keep coming.
QUIET_SECONDS = 0.5
GLANCE_SECONDS = 1.0
# After this many failures of the same record with a non-infrastructure error, the record is
# dead-lettered with the error as its reason rather than blocking its partition for ever.
MAX_HANDLER_ATTEMPTS = 5
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    PoolTimeout,  # every pooled connection busy: the database is slow
    KafkaError,
    OperationalError,
    InterfaceError,
)


# A consumer with no record for this long pauses its partitions between looks, each pause an
# eighth of the quiet spell so far, up to `kafka_idle_fetch_interval_ms`.
IDLE_AFTER_SECONDS = 1.0
IDLE_PAUSE_SHARE = 1 / 8
# Margin on the broker's hold of a fetch for the one look of an idle consumer.
IDLE_LOOK_MARGIN_MS = 30
# A lingering consumer looks whether it is told to stop at least this often.
LINGER_SLICE_SECONDS = 0.2
# The longest a lingering consumer lets the broker hold its empty fetch
# (`EventConsumer.fetch_max_wait_ms`).
LINGERING_FETCH_MAX_WAIT_MS = 500
# A look waits this long at most for the broker to answer (a broker that is down never does).
LOOK_LIMIT_SECONDS = 5.0
# A commit in a rebalance waits this long at most: before partitions are taken away
# (`_RebalanceLog`), and of where a new broker's logs start (`EventConsumer._on_assigned`).
REBALANCE_COMMIT_LIMIT_SECONDS = 5.0
# A stopping consumer's last commit, and its leaving the group, each wait this long at most.
STOP_STEP_LIMIT_SECONDS = 10.0


class IdleFetching:
    """Paces a consumer's fetches by whether records come.

    aiokafka fetches in the background for as long as a partition is assigned and not paused;
    on a broker that holds each empty fetch to its end (Tansu), an idle consumer would ask it
    every `fetch_max_wait_ms`. After `IDLE_AFTER_SECONDS` without a record the consumer pauses
    its partitions, resumes them for one look (which lasts until the broker has answered),
    pauses again: each pause an eighth of how long it has been quiet, up to
    `longest_pause_ms`. So a record after a quiet spell waits at most an eighth of that spell
    more (a second's quiet: 125 ms), an idle consumer looks about once per
    `longest_pause_ms`, and records that come are fetched freely again at once. Pausing
    keeps positions: a record that arrives meanwhile is fetched at the next look, never skipped.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, longest_pause_ms: int, fetch_max_wait_ms: int
    ) -> None:
        self._consumer = consumer
        self._longest_pause = longest_pause_ms / 1000
        self._look_ms = fetch_max_wait_ms + IDLE_LOOK_MARGIN_MS
        self._records_at = time.monotonic()

    def pause_seconds(self, now: float) -> float:
        """How long to pause before the next look; 0 while records come (or pausing is off)."""
        quiet = now - self._records_at
        if self._longest_pause <= 0 or quiet < IDLE_AFTER_SECONDS:
            return 0.0
        return min(quiet * IDLE_PAUSE_SHARE, self._longest_pause)

    async def next_batches(
        self, stopping: asyncio.Event, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The next records: fetched freely while they come, at one look per pause when the
        consumer is idle (empty when `stopping` is set during the pause)."""
        pause = self.pause_seconds(time.monotonic())
        if pause == 0:
            batches: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        else:
            self._consumer.pause(*self._consumer.assignment())
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), pause)
            finally:
                self._consumer.resume(*self._consumer.paused())
            if stopping.is_set():
                return {}
            batches = await self._look(stopping, max_records)
        if batches:
            self._records_at = time.monotonic()
        return batches

    async def _look(
        self, stopping: asyncio.Event, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One look, just resumed: records, or nothing once the broker has answered a fetch of
        every partition since the resume. A look cut at a fixed time would pause again before
        a slow answer came, and aiokafka drops what it fetched for a paused partition: on a
        busy machine every look would then miss the records, however often it looked."""
        resumed_ms = int(time.time() * 1000)
        give_up = time.monotonic() + LOOK_LIMIT_SECONDS
        while True:
            batches: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                timeout_ms=self._look_ms, max_records=max_records
            )
            if batches or stopping.is_set() or time.monotonic() >= give_up:
                return batches
            if self._answered_since(resumed_ms):
                # An answer processed after getmany gave up is still buffered: take it now,
                # before the pause would drop it.
                buffered: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                    timeout_ms=0, max_records=max_records
                )
                return buffered

    def _answered_since(self, resumed_ms: int) -> bool:
        """Whether a fetch answer for each assigned partition was processed at or after
        `resumed_ms` (aiokafka stamps each answered partition with the wall clock in ms)."""
        for partition in self._consumer.assignment():
            answered = self._consumer.last_poll_timestamp(partition)
            if answered is None or answered < resumed_ms:
                return False
        return True


class RejoinOverdue(Exception):
    """A consumer's rebalance did not end within `KAFKA_REJOIN_LIMIT_SECONDS`."""


class RejectEvent(Exception):
    """Raised by a handler for a well-formed event it cannot accept; it is dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RecordPosition:
    topic: str
    partition: int
    offset: int


EventHandler = Callable[[AsyncSession, CloudEvent, RecordPosition], Awaitable[None]]
# Run once for a batch, in its transaction, before its handlers, with the events they will
# apply: what each handler would ask for on its own, asked for the batch in one statement.
BatchPreparation = Callable[[AsyncSession, Sequence[CloudEvent]], Awaitable[None]]


def on_data(apply: Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]) -> EventHandler:
    """A handler from a method that takes the session, the event and its data."""

    async def handler(session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        await apply(session, event, event.data)

    return handler


@dataclass(frozen=True)
class HandlerTable:
    """What a consumer does with each event type of the topics it reads.

    A type in `handlers` is claimed in the inbox and applied in one transaction. A type in
    `ignored` is read past on purpose and leaves no trace: nothing to make idempotent, and the
    inbox says what the consumer acted on. It is told by its `ce_type` header, and its value is
    never decoded (`reads_past`): what it holds is for the consumers that act on it, and audit,
    which logs every event, dead-letters one it cannot read. A type in neither was never
    decided about: the service refuses to start with such a table
    (`ServiceRuntime.add_consumer`, `undecided`), and should one arrive anyway it is
    dead-lettered with that reason.

    `prepare`, if given, runs once for a batch applied together, before its handlers, with the
    events they will apply (a record applied on its own goes without it): handlers then find
    done what each would otherwise ask for by itself.

    `asks`, for a handled type of which some events ask nothing of this consumer, tells them
    by their data: such an event is read past once decoded, as an ignored type is, with no
    inbox claim (and, in a batch, no span). Applying it would change nothing, so applying it
    twice would not either.
    """

    handlers: Mapping[str, EventHandler]
    ignored: frozenset[str] = frozenset()
    prepare: BatchPreparation | None = None
    asks: Mapping[str, Callable[[Any], bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = self.ignored & self.handlers.keys()
        if both:
            raise ValueError(f"both handled and ignored: {sorted(both)}")
        unhandled = self.asks.keys() - self.handlers.keys()
        if unhandled:
            raise ValueError(f"asks of types not handled: {sorted(unhandled)}")

    @classmethod
    def of(
        cls, handler: EventHandler, handled: Iterable[str], ignored: Iterable[str] = ()
    ) -> HandlerTable:
        """One handler for every type of `handled` (it tells them apart itself)."""
        return cls(dict.fromkeys(handled, handler), frozenset(ignored))

    @property
    def handled(self) -> frozenset[str]:
        return frozenset(self.handlers)

    def handler_for(self, ce_type: str) -> EventHandler | None:
        """The type's handler, or None for a type read past; RejectEvent for a type nobody
        decided about, so that it waits on the dead-letter topic until somebody does."""
        handler = self.handlers.get(ce_type)
        if handler is None and ce_type not in self.ignored:
            raise RejectEvent(f"no consumer decision (handle or ignore) for {ce_type}")
        return handler

    def handler_of(self, event: CloudEvent) -> EventHandler | None:
        """`handler_for` the event's type, or None for an event that asks nothing of this
        consumer (`asks`)."""
        handler = self.handler_for(event.type)
        asks = self.asks.get(event.type)
        if handler is None or asks is None or asks(event.data):
            return handler
        return None

    def reads_past(self, record: ConsumerRecord) -> bool:
        """Whether the record is of a type this consumer ignores on the topic it came by, told
        by its header alone: most records of a topic are for other consumers."""
        ce_type = type_of(record.headers)
        if ce_type is None or ce_type not in self.ignored:
            return False
        spec = EVENT_TYPES.get(ce_type)
        return spec is not None and spec.topic == record.topic

    def undecided(self, topics: Iterable[str]) -> list[str]:
        """Types registered on `topics` that this table neither handles nor ignores."""
        wanted = set(topics)
        return sorted(
            ce_type
            for ce_type, spec in EVENT_TYPES.items()
            if spec.topic in wanted and ce_type not in self.handlers and ce_type not in self.ignored
        )

    def foreign(self, topics: Iterable[str]) -> list[str]:
        """Types the table names that never travel on `topics`: a stale or mistyped entry."""
        wanted = set(topics)
        return sorted(
            ce_type
            for ce_type in self.handled | self.ignored
            if ce_type not in EVENT_TYPES or EVENT_TYPES[ce_type].topic not in wanted
        )


def connection_options(settings: Settings) -> dict[str, Any]:
    """How every client of this service (producer, consumers, admin, DLQ replay) meets the
    broker: its address, and in production SASL/SCRAM over TLS as the service's own user."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise RuntimeError(
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def fetch_options(settings: Settings, max_wait_ms: int | None = None) -> dict[str, Any]:
    """How every long-running consumer fetches: how long the broker may hold an empty fetch
    (`max_wait_ms`, by default the setting's), how often aiokafka's fetcher looks around when
    nothing wakes it, and how much one fetch may bring."""
    held = settings.kafka_fetch_max_wait_ms if max_wait_ms is None else max_wait_ms
    return {
        "fetch_max_wait_ms": held,
        "consumer_timeout_ms": settings.kafka_consumer_timeout_ms,
        "fetch_max_bytes": settings.kafka_fetch_max_bytes,
        "max_partition_fetch_bytes": settings.kafka_max_partition_fetch_bytes,
    }


class KeyedPartitioner:
    """Kafka's default partitioner (the key's murmur2 hash, modulo the partitions), each key's
    hash worked out once: an incident's events all carry its id as their key, and aiokafka's
    murmur2 is pure Python, a fiftieth of escalation's CPU at 50 incidents a second
    (docs/performance.md, item 116). A record without a key goes where aiokafka's would."""

    def __init__(self, keys_kept: int = 4096) -> None:
        self._hash: Callable[[bytes], int] = functools.lru_cache(maxsize=keys_kept)(murmur2)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            chosen: int = DefaultPartitioner()(key, all_partitions, available)
            return chosen
        return all_partitions[(self._hash(key) & 0x7FFFFFFF) % len(all_partitions)]


def create_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        partitioner=KeyedPartitioner(),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=0,
        request_timeout_ms=15000,
    )


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> None:
    """Create the topics (and their DLQs) with the configured partitions if missing.

    A topic some client's metadata request made first (Tansu creates one it is asked about,
    with its own default of partitions) keeps what it has: the broker cannot add partitions,
    and keys stay on one partition either way. That is said, so it is not a surprise."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted_names = list(names or all_topics_with_dead_letters())
        wanted = [
            NewTopic(name, settings.kafka_topic_partitions, settings.kafka_topic_replication_factor)
            for name in wanted_names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        there = [name for name in wanted_names if name in existing]
        for topic in await admin.describe_topics(there) if there else []:
            if len(topic["partitions"]) != settings.kafka_topic_partitions:
                log.warning(
                    "topic %s has %d partitions, not the %d configured (made before us)",
                    topic["topic"],
                    len(topic["partitions"]),
                    settings.kafka_topic_partitions,
                )
    finally:
        await admin.close()


class KafkaBrokerProbe:
    """What the outbox relay asks the broker (shared/messaging.py `BrokerProbe`). Its clients
    connect on the first question and are dropped after a failure, so the next question finds
    a restarted broker. No question names a topic the broker does not list: Tansu creates a
    topic it is asked about, with its own default of partitions."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        self._settings = settings
        self._client_id = f"{client_id}-probe"
        self._client: AIOKafkaClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._connecting = asyncio.Lock()

    async def _clients(self) -> tuple[AIOKafkaClient, AIOKafkaConsumer]:
        async with self._connecting:  # the relay and the consumers of a process share it
            return await self._connected()

    async def _connected(self) -> tuple[AIOKafkaClient, AIOKafkaConsumer]:
        if self._client is None or self._reader is None:
            client = AIOKafkaClient(
                **connection_options(self._settings),
                client_id=self._client_id,
                request_timeout_ms=15000,
            )
            reader = AIOKafkaConsumer(
                **connection_options(self._settings),
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                # A position past the end is an answer ("not there"), not a reason to move.
                auto_offset_reset="none",
                request_timeout_ms=15000,
            )
            try:
                await client.bootstrap()
                await reader.start()
            except BaseException:
                await self._drop(client, reader)
                raise
            self._client, self._reader = client, reader
        return self._client, self._reader

    @contextlib.asynccontextmanager
    async def _asking(self) -> AsyncIterator[tuple[AIOKafkaClient, AIOKafkaConsumer]]:
        clients = await self._clients()
        try:
            yield clients
        except BaseException:
            await self.close()
            raise

    async def cluster_id(self) -> str:
        """One metadata request naming no topic: brokers and the cluster id, nothing more."""
        async with self._asking() as (client, _):
            node = client.get_random_node()
            if node is None:
                raise KafkaError("no broker known to ask for the cluster id")
            response = await client.send(node, MetadataRequest([]))
            return str(response.cluster_id)

    async def _held(
        self, client: AIOKafkaClient, wanted: Iterable[tuple[str, int]]
    ) -> set[tuple[str, int]]:
        listed = await client.fetch_all_metadata()
        return {
            (topic, partition)
            for topic, partition in wanted
            if partition in (listed.partitions_for_topic(topic) or ())
        }

    async def end_offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """End offsets; 0 for a partition the broker does not have."""
        wanted = set(partitions)
        async with self._asking() as (client, reader):
            held = await self._held(client, wanted)
            asked = [TopicPartition(topic, partition) for topic, partition in sorted(held)]
            ends = await reader.end_offsets(asked) if asked else {}
        return {
            (topic, partition): int(ends.get(TopicPartition(topic, partition), 0))
            for topic, partition in wanted
        }

    async def holds(self, topic: str, partition: int, offset: int, event_id: str) -> bool:
        """Whether the record at `offset` is still the event `event_id`. Asked where the end
        offset says it is gone: Tansu answers a partition's end with the first offset of its
        last batch plus one, short of the truth when that batch held several records."""
        async with self._asking() as (client, reader):
            if not await self._held(client, [(topic, partition)]):
                return False
            place = TopicPartition(topic, partition)
            reader.assign([place])
            try:
                return await self._record_is(reader, place, offset, event_id)
            finally:
                # aiokafka fetches an assigned partition in the background for as long as it
                # stays assigned: an idle service would fetch it, and turn its event loop, for
                # ever after one question.
                reader.unsubscribe()

    @staticmethod
    async def _record_is(
        reader: AIOKafkaConsumer, place: TopicPartition, offset: int, event_id: str
    ) -> bool:
        reader.seek(place, offset)
        deadline = asyncio.get_running_loop().time() + 5.0
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                fetched = await reader.getmany(place, timeout_ms=int(left * 1000))
            except OffsetOutOfRangeError:
                return False
            for record in fetched.get(place, []):
                if record.offset == offset:
                    ids = [value for name, value in record.headers or () if name == "ce_id"]
                    return ids == [event_id.encode()]
                if record.offset > offset:
                    return False
        return False

    async def ensure_topics(self) -> None:
        # In production the topics are the cluster's (Strimzi KafkaTopic objects, made again by
        # its topic operator) and no service user may create one.
        if self._settings.deployment_environment == "production":
            return
        await ensure_topics(self._settings)

    async def close(self) -> None:
        client, reader = self._client, self._reader
        self._client = self._reader = None
        await self._drop(client, reader)

    @staticmethod
    async def _drop(client: AIOKafkaClient | None, reader: AIOKafkaConsumer | None) -> None:
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.stop()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


# Errors that will happen again however often the record is retried: a handler refusing data it
# cannot store (bad values, overflowing times, constraint violations). Dead-lettered at once.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    RecursionError,
    IntegrityError,
    DataError,
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)
# Kafka refuses larger records; a bigger dead letter keeps its head and points at the original.
MAX_DEAD_LETTER_VALUE = 900 * 1024


def is_permanent(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and not error.connection_invalidated:
        # SQLSTATE class 22 (data exception) or 23 (integrity): the same row fails every time.
        code = sqlstate(error)
        if code is not None and code[:2] in ("22", "23"):
            return True
    return isinstance(error, PERMANENT_ERRORS)


def is_transient(error: BaseException) -> bool:
    """Errors of the infrastructure, retried for as long as they last: never dead-lettered."""
    if isinstance(error, DBAPIError) and database_unavailable(error):
        return True
    return isinstance(error, TRANSIENT_ERRORS)


class _RebalanceLog(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no types
    """Commits what was applied before partitions are taken away (their next owner starts where
    this one stopped), and logs the assignments.

    The group is rejoined only once this listener returns, so its commit is bounded: aiokafka
    runs the listener from the task that would find the group's coordinator again, and a
    commit waiting for that coordinator (after a broker restarted empty) waited for ever, the
    consumer never assigned again. A commit not made in time is given up: the partitions'
    next owner reads those records again, and its inbox absorbs them."""

    def __init__(
        self,
        consumer_name: str,
        commit: Callable[[], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
        commit_limit_seconds: float = REBALANCE_COMMIT_LIMIT_SECONDS,
    ) -> None:
        self._name = consumer_name
        self._commit = commit
        self._assigned = assigned
        self._commit_limit = commit_limit_seconds
        # When the partitions were last taken away and not yet given again (monotonic).
        self.rebalancing_since: float | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing_since = time.monotonic()
        if revoked:
            log.info("%s: partitions revoked %s", self._name, sorted(map(str, revoked)))
            try:
                async with asyncio.timeout(self._commit_limit):
                    await self._commit()
            except TimeoutError:
                log.warning(
                    "%s: offsets not committed within %.0f s before the partitions were taken;"
                    " their records will be read again",
                    self._name,
                    self._commit_limit,
                )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s: partitions assigned %s", self._name, sorted(map(str, assigned)))
        self.rebalancing_since = None
        if self._assigned is not None:
            await self._assigned(assigned)


class EventConsumer:
    """One consumer group member applying events of `topics` through its `handlers`."""

    # How long a fetch that brought records waits for more to join its batch, up to
    # `batch_max_records`; 0: never. A consumer off the alerts' path may wait: fuller batches
    # under load, each with the fixed statements of one.
    linger_seconds: float = 0.0

    def __init__(
        self,
        name: str,
        topics: Iterable[str],
        handlers: HandlerTable,
        sessions: async_sessionmaker[AsyncSession],
        inbox: Inbox,
        producer: AIOKafkaProducer,
        settings: Settings,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.name = name
        self.topics = tuple(topics)
        self.handlers = handlers
        self._sessions = sessions
        # The batches' session, kept from one to the next (one batch at a time).
        self._batches = KeptSession(sessions)
        self._inbox = inbox
        self._producer = producer
        self._settings = settings
        self.batch_max_records = settings.kafka_batch_max_records
        self._consumer: AIOKafkaConsumer | None = None
        self.rebalances = _RebalanceLog(name, self._commit_applied, self._on_assigned)
        self._stopping = asyncio.Event()
        self._failures: dict[RecordPosition, int] = {}
        self._metrics = metrics
        self._broker_probe: BrokerProbe | None = None
        self._cluster_id: str | None = None
        # The broker this member was last given partitions on: see `_on_assigned`.
        self._assigned_on: str | None = None
        self._glanced_at = self._records_at = time.monotonic()
        # Offsets applied and not yet committed, and when offsets were last committed.
        self._applied: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()

    @property
    def fetch_max_wait_ms(self) -> int:
        """How long the broker may hold this consumer's fetch when nothing is there. One that
        lingers waits for more records anyway: it lets the broker hold its fetches as long (up
        to `LINGERING_FETCH_MAX_WAIT_MS`), and under load fetches a few times a second instead
        of once per `kafka_fetch_max_wait_ms`, each fetch a request for all its partitions
        and an answer for each. On a broker that holds an empty fetch to its end (Tansu) a
        record may wait that much more before its linger begins; Apache Kafka answers as soon
        as a record arrives."""
        setting = self._settings.kafka_fetch_max_wait_ms
        lingered = min(round(self.linger_seconds * 1000), LINGERING_FETCH_MAX_WAIT_MS)
        return max(setting, lingered)

    def follow_broker(self, probe: BrokerProbe) -> None:
        """Ask `probe` the broker's cluster id before records that follow a pause (module
        docstring): an empty broker started in the old one's place is read from its start."""
        self._broker_probe = probe

    async def _broker_is_new(self) -> bool:
        """Whether the records just fetched come from another broker than the last ones: asked
        when they follow a quiet spell (a broker restarts in one) and at most every
        `GLANCE_SECONDS` under load; nothing is asked while no records come."""
        now = time.monotonic()
        quiet, self._records_at = now - self._records_at, now
        if self._broker_probe is None or (
            quiet < QUIET_SECONDS and now - self._glanced_at < GLANCE_SECONDS
        ):
            return False
        cluster_id = await self._broker_probe.cluster_id()
        self._glanced_at = now
        known, self._cluster_id = self._cluster_id, cluster_id
        return known is not None and known != cluster_id

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions given on another broker than the last ones: every one from its start.

        After a broker restarted empty the group is new, so a rebalance always follows, and
        the offsets it starts from are not the new broker's: Tansu takes a commit from a member
        it does not know, and this member's last commits (of records read from the old broker)
        reach the new one when aiokafka retries them there. Checked here, where the positions
        are set, rather than only when records come: a seek made while the group rebalances
        is lost with the assignment it was made on."""
        if self._broker_probe is None or not assigned:
            return
        assert self._consumer is not None
        cluster_id = await self._broker_probe.cluster_id()
        self._cluster_id, self._glanced_at = cluster_id, time.monotonic()
        if self._assigned_on is not None and self._assigned_on != cluster_id:
            log.warning(
                "%s: partitions assigned on a new broker (cluster %s); reading from the start",
                self.name,
                cluster_id,
            )
            self._applied.clear()  # positions on the old broker mean nothing here
            await self._consumer.seek_to_beginning(*assigned)
            # What is committed there is the old broker's: replaced by where the new logs start,
            # for whoever is given these partitions next (this consumer started again, another
            # member). Until that is done, the next assignment here looks again.
            starts = await self._consumer.beginning_offsets(list(assigned))
            async with asyncio.timeout(REBALANCE_COMMIT_LIMIT_SECONDS):
                await self._consumer.commit(starts)
        self._assigned_on = cluster_id

    async def run(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **connection_options(self._settings),
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **fetch_options(self._settings, self.fetch_max_wait_ms),
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
        )
        self.rebalances.rebalancing_since = None  # a new member: no rebalance of its own yet
        self._consumer.subscribe(self.topics, listener=self.rebalances)
        await self._consumer.start()
        fetching = IdleFetching(
            self._consumer, self._settings.kafka_idle_fetch_interval_ms, self.fetch_max_wait_ms
        )
        try:
            while not self._stopping.is_set():
                batches = await fetching.next_batches(
                    self._stopping, timeout_ms=200, max_records=self.batch_max_records
                )
                self._check_rejoined()
                if batches and self.linger_seconds > 0:
                    batches = await self._lingered(batches)
                if batches and await self._broker_is_new():
                    # Its log starts over: where this consumer was on the old one skips what
                    # the outboxes send again below it. Every partition from its start; the
                    # inbox absorbs what was applied before.
                    log.warning(
                        "%s: the broker is a new one (cluster %s); reading from the start",
                        self.name,
                        self._cluster_id,
                    )
                    self._applied.clear()  # positions on the old broker mean nothing here
                    await self._consumer.seek_to_beginning()
                    continue
                await self._process_fetched(batches)
                if time.monotonic() - self._committed_at >= self._commit_interval():
                    await self._commit_applied()
        finally:
            # Each bounded: a consumer started again for a rebalance that never ended has a
            # coordinator that may never answer.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_STEP_LIMIT_SECONDS):
                    await self._commit_applied()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_STEP_LIMIT_SECONDS):
                    await self._consumer.stop()
            await self._batches.close()

    def _check_rejoined(self) -> None:
        """Raise when a rebalance has kept this consumer's partitions longer than the limit: its
        supervisor starts it again, a new member of the group (shared/runtime.py)."""
        since = self.rebalances.rebalancing_since
        limit = self._settings.kafka_rejoin_limit_seconds
        if since is not None and time.monotonic() - since > limit:
            raise RejoinOverdue(
                f"{self.name}: no partitions given again within {limit:g} s of a rebalance;"
                " the consumer starts again"
            )

    async def _lingered(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """`batches` and the records that arrive within `linger_seconds` of them, up to
        `batch_max_records` in all: one batch, each partition's records in their order."""
        assert self._consumer is not None
        held = sum(len(records) for records in batches.values())
        ends = time.monotonic() + self.linger_seconds
        while held < self.batch_max_records and not self._stopping.is_set():
            left = ends - time.monotonic()
            if left <= 0:
                break
            # In slices, so that a consumer told to stop does not wait out its linger.
            more: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                timeout_ms=int(min(left, LINGER_SLICE_SECONDS) * 1000),
                max_records=self.batch_max_records - held,
            )
            for partition, records in more.items():
                batches.setdefault(partition, []).extend(records)
                held += len(records)
        return batches

    async def _mark_applied(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets to commit, each the next record to read of its partition: committed at
        once when the interval is 0, else with the next commit (`run`)."""
        self._applied.update(offsets)
        if self._commit_interval() <= 0:
            await self._commit_applied()

    def _commit_interval(self) -> float:
        return self._settings.kafka_commit_interval_ms / 1000

    async def _commit_applied(self) -> None:
        """Commit the offsets applied since the last commit, in one request. Those of partitions
        taken away meanwhile (a revocation whose commit failed) are dropped: their next owner
        reads those records again, and its inbox absorbs them."""
        self._committed_at = time.monotonic()
        if not self._applied:
            return
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        offsets = {
            partition: at for partition, at in self._applied.items() if partition in assigned
        }
        self._applied = {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced while the commit was under way: those of its partitions
            # still assigned are committed next time, the others read again by their next owner.
            self._applied = offsets | self._applied
            log.info("%s: offsets not committed, the group rebalanced meanwhile", self.name)
        except BaseException:
            # Not committed: kept for the next commit, unless newer offsets came meanwhile.
            self._applied = offsets | self._applied
            raise

    def request_stop(self) -> None:
        """Finish the records in hand, commit them, and leave the group."""
        self._stopping.set()

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per partition: end offset minus committed offset, measured by the consumer itself
        (Tansu cannot answer the admin call that lists group offsets)."""
        if self._consumer is None:
            return {}
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        ends = await self._consumer.end_offsets(assigned)
        result = {}
        for partition in assigned:
            done = self._applied.get(partition)
            if done is None:
                done = await self._consumer.committed(partition) or 0
            result[(partition.topic, partition.partition)] = max(ends[partition] - done, 0)
        return result

    def _count(self, topic: str, outcome: str) -> None:
        if self._metrics is not None:
            label = "redelivered" if outcome == "duplicate" else outcome
            self._metrics.events.labels(self.name, topic, label).inc()

    async def _process_fetched(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Apply what one fetch brought, every partition's records in one transaction and their
        offsets committed in one request (under load a fetch holds a record or two of many
        partitions); if any record fails, take the partitions one at a time."""
        if len(batches) > 1 and await self._applied_together(batches):
            return
        for partition, records in batches.items():
            await self._process_partition(partition, records)

    async def _process_partition(
        self, partition: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        """Apply a partition's records in one transaction; if any of them fails, apply them one
        at a time, where a failure is retried or dead-lettered on its own. A record alone goes
        the same way: claimed in the inbox with what it writes, it costs a round trip less than
        claimed first (`_apply_decoded`)."""
        if await self._applied_together({partition: records}):
            return
        await self._process_one_by_one(partition, records)

    async def _applied_together(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> bool:
        """Apply the records of `batches` in one transaction and commit every partition's
        offset after it; False, with everything rolled back and nothing committed, if any of
        them failed."""
        assert self._consumer is not None
        together = [record for records in batches.values() for record in records]
        try:
            await self._apply_batch(together)
        except Exception as error:
            log.info(
                "%s: batch of %d records from %d partitions failed (%r); taken apart",
                self.name,
                len(together),
                len(batches),
                error,
            )
            return False
        await self._mark_applied(
            {partition: records[-1].offset + 1 for partition, records in batches.items()}
        )
        return True

    async def _apply_batch(self, records: list[ConsumerRecord]) -> None:
        """Every record of the batch applied in one transaction, each in its CONSUMER span, the
        handled ones claimed in the inbox by the statement that writes what the batch staged.
        Under load this saves a BEGIN, a COMMIT and its flush per event, and an inbox round
        trip per batch; raising anything (an event applied before among them) sends the batch
        back one record at a time."""
        outcomes: list[tuple[str, str]] = []
        received: list[tuple[ConsumerRecord, CloudEvent]] = []
        for record in records:
            if self.handlers.reads_past(record):
                outcomes.append((record.topic, "ignored"))
            else:
                received.append((record, decode(record.topic, record.headers, record.value)))
        if received:  # a batch of nothing but types read past opens no transaction
            await self._apply_decoded(received, outcomes)
        for topic, outcome in outcomes:
            self._count(topic, outcome)

    async def _apply_decoded(
        self, received: list[tuple[ConsumerRecord, CloudEvent]], outcomes: list[tuple[str, str]]
    ) -> None:
        handlers = [self.handlers.handler_of(event) for _, event in received]
        # Each handled event is applied once (a repeat within the batch is one) and claimed in
        # the inbox last, by the statement that writes what the batch staged: no round trip of
        # its own. An event applied before (a redelivery) fails that statement, the batch is
        # rolled back and taken apart, and each record is then claimed before it is applied
        # (`process`).
        claims: dict[tuple[str, Any], InboxEntry] = {}
        applying: list[bool] = []
        for (record, event), handler in zip(received, handlers, strict=True):
            first = handler is not None and (event.source, event.id) not in claims
            if first:
                claims[(event.source, event.id)] = InboxEntry.of(
                    event, record.topic, record.partition, record.offset
                )
            applying.append(first)
        if not claims:  # nothing in it asks anything of this consumer: no transaction
            outcomes.extend((record.topic, "ignored") for record, _ in received)
            return
        async with self._batches.transaction() as session:
            if self.handlers.prepare is not None:
                await self.handlers.prepare(
                    session,
                    [event for (_, event), first in zip(received, applying, strict=True) if first],
                )
            for (record, event), handler, first in zip(received, handlers, applying, strict=True):
                current_incident.set(event.subject)
                if handler is None:
                    outcome = "ignored"
                elif first:
                    with self._span(record.topic, event):
                        position = RecordPosition(record.topic, record.partition, record.offset)
                        await handler(session, event, position)
                    outcome = "applied"
                else:
                    outcome = "duplicate"
                outcomes.append((record.topic, outcome))
            claim_at_commit(
                session, self._inbox.claim_sql, self._inbox.claim_parameters(list(claims.values()))
            )
            await write_staged(session)

    async def _apply(
        self,
        session: AsyncSession,
        record: ConsumerRecord,
        event: CloudEvent,
        handler: EventHandler,
    ) -> str:
        """Claim the event in the inbox and, unless applied before, hand it to `handler`:
        `applied` when it was new, `duplicate` when it was applied before."""
        fresh = await self._inbox.claim(
            session, event, record.topic, record.partition, record.offset
        )
        if fresh:
            position = RecordPosition(record.topic, record.partition, record.offset)
            await handler(session, event, position)
        return "applied" if fresh else "duplicate"

    def _span(self, topic: str, event: CloudEvent) -> contextlib.AbstractContextManager[trace.Span]:
        # No span of its own for a dropped trace (docs/performance.md, item 104).
        return span_unless_dropped(
            tracer,
            f"{topic} process",
            extract(event.trace_headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": str(event.id),
                "incident.id": event.subject,
            },
        )

    async def _process_one_by_one(
        self, partition: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        assert self._consumer is not None
        done = None
        for record in records:
            try:
                await self.process(record)
            except Exception as error:
                # Commit what succeeded, then re-read from the failed record after a pause.
                if done is not None:
                    await self._mark_applied({partition: done + 1})
                self._consumer.seek(partition, record.offset)
                await self._pause_after_failure(record, error)
                return
            done = record.offset
        if done is not None:
            await self._mark_applied({partition: done + 1})

    async def _pause_after_failure(self, record: ConsumerRecord, error: Exception) -> None:
        position = RecordPosition(record.topic, record.partition, record.offset)
        attempts = self._failures.get(position, 0) + 1
        self._failures[position] = attempts
        level = logging.WARNING if is_transient(error) else logging.ERROR
        log.log(level, "%s: %s failed (attempt %d): %r", self.name, position, attempts, error)
        await asyncio.sleep(min(0.1 * 2**attempts, 5.0) * (0.5 + random.random()))

    async def process(self, record: ConsumerRecord) -> str:
        """Apply one record; returns `applied`, `duplicate`, `ignored` or `dead-lettered`."""
        position = RecordPosition(record.topic, record.partition, record.offset)
        if self.handlers.reads_past(record):
            self._count(record.topic, "ignored")
            return "ignored"
        try:
            event = decode(record.topic, record.headers, record.value)
        except UndecodableEvent as error:
            await self.dead_letter(record, error.reason)
            return "dead-lettered"
        current_incident.set(event.subject)
        with self._span(record.topic, event):
            try:
                # An event read past costs no transaction and leaves no inbox row.
                handler = self.handlers.handler_of(event)
                if handler is None:
                    outcome = "ignored"
                else:
                    async with self._batches.transaction() as session:
                        outcome = await self._apply(session, record, event, handler)
                        await write_staged(session)
            except RejectEvent as error:
                await self.dead_letter(record, error.reason)
                return "dead-lettered"
            except Exception as error:
                attempts = self._failures.get(position, 0) + 1
                if is_transient(error):
                    raise
                if is_permanent(error):
                    await self.dead_letter(record, f"handler refused the event: {error!r}")
                    return "dead-lettered"
                if attempts < MAX_HANDLER_ATTEMPTS:
                    raise
                await self.dead_letter(record, f"handler failed {attempts} times: {error!r}")
                return "dead-lettered"
        self._failures.pop(position, None)
        self._count(record.topic, outcome)
        return outcome

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        log.warning(
            "%s: %s[%d]@%d to DLQ: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        extra = {
            "dlq_reason": reason[:4000],
            "dlq_consumer": self.name,
            "dlq_original_topic": record.topic,
            "dlq_original_partition": str(record.partition),
            "dlq_original_offset": str(record.offset),
            "dlq_failed_at": datetime.now(UTC).isoformat(),
        }
        value = record.value if record.value is not None else b""
        if len(value) > MAX_DEAD_LETTER_VALUE:
            extra["dlq_value_truncated_from"] = str(len(value))
            value = value[:MAX_DEAD_LETTER_VALUE]
        headers = [(name, value) for name, value in (record.headers or ()) if name not in extra]
        headers += [(name, text.encode()) for name, text in extra.items()]
        await self._producer.send_and_wait(
            dead_letter_topic(record.topic), value=value, key=record.key, headers=headers
        )
        self._count(record.topic, "dead_lettered")
        self._failures.pop(RecordPosition(record.topic, record.partition, record.offset), None)
