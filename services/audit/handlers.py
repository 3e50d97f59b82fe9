"""The consumer of audit: every event of every topic becomes one leaf, and that is all it does.

Records arrive in batches per partition; a batch is appended to the Merkle log in one
transaction (one lock, one read of the tree's border, multi-row inserts), so the log keeps up
with thousands of events a second. The log holds an event once (its source and id) and skips an
event it holds already: it is this consumer's inbox, and no inbox row is written besides it. A
batch that fails for any reason is retried one record at a time by the shared consumer, which
dead-letters only what cannot be decoded, validated or stored as an event. Findings are drawn
from the log afterwards by a follower of their own (`follower.py`): evidence never waits for,
nor depends on, the judgement drawn from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import store
from services.audit.datakeys import CLOSED_STATUSES, DataKeys, note_closures
from services.audit.leaves import canonical_json, leaf_document, leaf_hash
from services.audit.linking import incidents_named
from services.audit.personal import about_incident, has_personal_fields, seal_personal
from shared.events import EVENT_TYPES, CloudEvent, decode
from shared.kafka import EventConsumer, EventHandler, HandlerTable, RecordPosition, RejectEvent
from shared.pii import PiiCipher
from shared.telemetry import kept_trace_id

log = logging.getLogger(__name__)

SOURCE = "audit"
CONSUMER = "audit.log"

Received = tuple[CloudEvent, RecordPosition]


def event_data(event: CloudEvent) -> Any:
    """The event's data as it was written (decoded once, when it was received); an event made
    here, never received, as its model writes it."""
    return event.raw_data if event.raw_data is not None else event.data_json()


def new_leaf(
    event: CloudEvent,
    position: RecordPosition,
    keys: Mapping[str, PiiCipher | None] | None = None,
) -> store.NewLeaf:
    """The event as a leaf; with `keys` (each incident's data key, None if erased), its
    personal fields sealed under the key of the incident it is published under, if `keys`
    names it (`about_incident` and `has_personal_fields`)."""
    data = event_data(event)
    also = incidents_named(event.type, data, event.subject) if isinstance(data, dict) else ()
    if keys is not None and event.subject in keys:
        data = seal_personal(data, keys[event.subject])
    leaf = canonical_json(
        leaf_document(
            topic=position.topic,
            partition=position.partition,
            offset=position.offset,
            attributes=event.attributes(),
            data=data,
        )
    )
    return store.NewLeaf(
        ce_source=event.source,
        ce_id=event.id,
        ce_type=event.type,
        subject=event.subject,
        ce_time=event.time,
        topic=position.topic,
        partition=position.partition,
        offset=position.offset,
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
        also=also,
    )


def closures(received: Sequence[Received]) -> dict[str, datetime]:
    """The incidents the events close, with when (incident.status_changed to a closed status)."""
    closed: dict[str, datetime] = {}
    for event, _ in received:
        if event.type != "incident.status_changed":
            continue
        data = event_data(event)
        if isinstance(data, dict) and data.get("status") in CLOSED_STATUSES:
            at = datetime.fromisoformat(data["changed_at"])
            closed[event.subject] = min(at, closed.get(event.subject, at))
    return closed


@dataclass(frozen=True)
class AuditLog:
    """Every event becomes a leaf, and nothing else happens here: findings follow the log in
    their own transaction (`follower.py`), so no defect of theirs can keep an event out. Its
    personal fields are sealed under the incident's data key (`personal.py`), made here when
    the incident's first personal data arrives; a closing event marks when the retention
    period starts."""

    data_keys: DataKeys

    @property
    def table(self) -> HandlerTable:
        """Every type of every topic becomes a leaf; none is ignored."""
        return HandlerTable.of(self.append, EVENT_TYPES)

    async def append(
        self, session: AsyncSession, event: CloudEvent, position: RecordPosition
    ) -> None:
        await self.append_one(session, event, position)

    async def append_one(
        self, session: AsyncSession, event: CloudEvent, position: RecordPosition
    ) -> bool:
        """Append the event as a leaf; False when the log holds it already."""
        await store.open_append(session)
        return bool(await self.append_all(session, [(event, position)]))

    async def append_all(
        self, session: AsyncSession, received: Sequence[Received]
    ) -> set[tuple[str, UUID]]:
        """Append the events as leaves, those the log holds already skipped; the events
        appended (source, id). The transaction has opened the append already
        (`store.open_append`: the writer's role, the lock, the NOTIFY at commit)."""
        personal = [
            event.subject
            for event, _ in received
            if about_incident(event.subject) and has_personal_fields(event_data(event))
        ]
        keys = await self.data_keys.for_append(session, personal)
        appended = await store.append_new(
            session, [new_leaf(event, position, keys) for event, position in received]
        )
        # A closing event seen again changes nothing: the first closure counts.
        await note_closures(session, closures(received))
        return set(appended)


class BatchingConsumer(EventConsumer):
    """The shared consumer, with a batch appended to the log in a few statements rather than
    record by record, and the log as its inbox: an event appended is applied, one the log held
    already is a duplicate."""

    def __init__(self, audit_log: AuditLog, *arguments: Any) -> None:
        super().__init__(*arguments)
        self._audit_log = audit_log
        self.batch_max_records = self._settings.audit_batch_max_records

    async def _apply_batch(self, records: list[ConsumerRecord]) -> None:
        received = [
            (
                decode(record.topic, record.headers, record.value),
                RecordPosition(record.topic, record.partition, record.offset),
            )
            for record in records
        ]
        for event, _ in received:  # one by one if not all are appended, each with its reason
            if self.handlers.handler_for(event.type) is None:
                raise RejectEvent(f"{self.name} appends every event, ignores none")
        async with self._batches.transaction() as session:
            await store.open_append(session)
            appended = await self._audit_log.append_all(session, received)
        for event, position in received:
            if (event.source, event.id) in appended:
                appended.discard((event.source, event.id))  # a repeat in the batch is one
                # Appended together, so each record's span marks its place in its incident's
                # trace rather than timing it: only in a trace that is kept, where a marker
                # shows (most of a flood's traces are not: docs/performance.md, item 103).
                if kept_trace_id(event.trace_headers) is not None:
                    with self._span(position.topic, event):
                        pass
                self._count(position.topic, "applied")
            else:
                self._count(position.topic, "redelivered")

    async def _apply(
        self,
        session: AsyncSession,
        record: ConsumerRecord,
        event: CloudEvent,
        handler: EventHandler,
    ) -> str:
        """A record alone (after its batch failed): appended unless the log holds it."""
        position = RecordPosition(record.topic, record.partition, record.offset)
        appended = await self._audit_log.append_one(session, event, position)
        return "applied" if appended else "duplicate"
