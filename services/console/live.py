"""Live updates for browsers: the console reads every topic and tells each open page, over
server-sent events, that something about an incident it may see has happened.

A browser hears only the event's type and incident, and only of incidents of its township (or
all, for a party of the banner); it then asks the services for what changed, with its user's
token, so the services keep deciding what it may read. Each console replica reads the topics
on its own (no consumer group, from the newest record): its browsers are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.domain.access import Principal, Reach
from shared.events import topics
from shared.kafka import IdleFetching, connection_options, fetch_options
from shared.settings import Settings

log = logging.getLogger(__name__)

# Types whose data states (or moves) an incident's township: read to keep the places current.
PLACE_TYPES = frozenset({"incident.reported", "incident.report_filed"})
HEARTBEAT_SECONDS = 15.0
QUEUE_SIZE = 200


@dataclass(frozen=True)
class LiveEvent:
    type: str
    topic: str
    incident_id: str
    township_code: str | None

    def as_sse(self) -> str:
        data = {"type": self.type, "topic": self.topic, "incident_id": self.incident_id}
        return f"event: change\ndata: {json.dumps(data)}\n\n"


def may_hear(principal: Principal, township_code: str | None) -> bool:
    """Whether a page of `principal` may be told of an event of an incident of `township_code`
    (None: not known to the console, so only parties that see every township hear of it)."""
    if principal.reach == Reach.ALL:
        return True
    return township_code is not None and township_code == principal.township


def township_stated(type_: str, value: bytes | None) -> str | None:
    """The township an incidents.v1 event states for its incident, if it states one."""
    if type_ not in PLACE_TYPES or not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if type_ == "incident.reported":
        return (data.get("facts") or {}).get("township_code")
    changes = data.get("changes") or {}
    return changes.get("township_code")


@dataclass(eq=False)  # each open page is itself: kept in a set by identity
class Listener:
    principal: Principal
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )


@dataclass
class LiveHub:
    """The open pages of this replica, each with a queue of what it may hear."""

    listeners: set[Listener] = field(default_factory=set)

    def publish(self, event: LiveEvent) -> None:
        for listener in list(self.listeners):
            if not may_hear(listener.principal, event.township_code):
                continue
            try:
                listener.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A page that does not read is told to reload rather than keep the replica's
                # memory: it drops out and its script reconnects.
                self.listeners.discard(listener)
                with contextlib.suppress(asyncio.QueueFull):
                    listener.queue.put_nowait(None)

    async def stream(self, principal: Principal) -> AsyncIterator[str]:
        listener = Listener(principal)
        self.listeners.add(listener)
        try:
            yield "retry: 2000\nevent: ready\ndata: {}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(listener.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield event.as_sse()
        finally:
            self.listeners.discard(listener)


PlaceLookup = Callable[[str], Awaitable[str | None]]
# A record as the feed hands it on: its topic, headers and value.
Record = tuple[str, list[tuple[str, bytes]] | None, bytes | None]


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


@dataclass
class LiveFeed:
    """Reads every topic from its newest record and hands each event to the hub."""

    settings: Settings
    hub: LiveHub
    place_of: PlaceLookup
    places: dict[str, str] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **connection_options(self.settings),
            group_id=None,
            client_id="console-live",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            **fetch_options(self.settings),
        )
        await consumer.start()
        try:
            await self._take_positions(consumer)
            self.ready.set()
            fetching = IdleFetching(
                consumer,
                self.settings.kafka_idle_fetch_interval_ms,
                self.settings.kafka_fetch_max_wait_ms,
            )
            never = asyncio.Event()
            while True:
                batches = await fetching.next_batches(never, timeout_ms=1000, max_records=500)
                await self.hand_on_batch(
                    [(r.topic, r.headers, r.value) for records in batches.values() for r in records]
                )
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _take_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition of every topic, each from where it ends now: what is published
        after `ready` is heard (the topics exist: the services' start made them)."""
        await consumer.topics()  # the cluster's metadata, partitions included
        assigned = [
            TopicPartition(topic, partition)
            for topic in topics.ALL_TOPICS
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not assigned:
            raise RuntimeError(f"none of {topics.ALL_TOPICS} exists yet")
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)

    async def hand_on_batch(self, records: list[Record]) -> None:
        """Each record's event to the hub, once every place the batch states is known: after a
        quiet spell one fetch brings an incident's report with the events it caused, its
        partitions in any order, and an event handed on before its incident's place was known
        would reach only the pages that see every township."""
        events: list[tuple[str, str, str]] = []
        for topic, headers, value in records:
            type_, subject = _header(headers, "ce_type"), _header(headers, "ce_subject")
            if type_ is None or subject is None or not _is_uuid(subject):
                continue
            if topic == topics.INCIDENTS:
                self._remember_place(subject, township_stated(type_, value))
            events.append((type_, topic, subject))
        for type_, topic, subject in events:
            township = self.places.get(subject)
            if township is None:
                township = await self.place_of(subject)
                self._remember_place(subject, township)
            self.hub.publish(LiveEvent(type_, topic, subject, township))

    def _remember_place(self, incident_id: str, township_code: str | None) -> None:
        if township_code is None:
            return
        if len(self.places) > 50_000:
            self.places.clear()
        self.places[incident_id] = township_code


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True
