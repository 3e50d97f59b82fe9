"""The consumer of audit: every event of every topic becomes one leaf, and that is all it does.

Records arrive in batches per partition; a batch is claimed in the inbox and appended to the
Merkle log in one transaction (one lock, one read of the tree's border, multi-row inserts), so
the log keeps up with thousands of events a second. A batch that fails for any reason is
retried one record at a time by the shared consumer, which dead-letters only what cannot be
decoded, validated or stored as an event. Findings are drawn from the log afterwards by a
follower of their own (`follower.py`): evidence never waits for, nor depends on, the judgement
drawn from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import store
from services.audit.leaves import canonical_json, leaf_document, leaf_hash
from services.audit.linking import incidents_named
from shared.events import EVENT_TYPES, CloudEvent, decode
from shared.kafka import EventConsumer, HandlerTable, RecordPosition, RejectEvent
from shared.pgnotify import notify

log = logging.getLogger(__name__)

SOURCE = "audit"
CONSUMER = "audit.log"

Received = tuple[CloudEvent, RecordPosition]

CLAIM_BATCH = text(
    'INSERT INTO audit.inbox (ce_source, ce_id, ce_type, consumer, topic, "partition", "offset") '
    "SELECT source, id, type, :consumer, topic, part, position FROM unnest("
    "CAST(:sources AS text[]), CAST(:ids AS uuid[]), CAST(:types AS text[]), "
    "CAST(:topics AS text[]), CAST(:partitions AS smallint[]), CAST(:offsets AS bigint[])"
    ") AS batch(source, id, type, topic, part, position) "
    "ON CONFLICT DO NOTHING RETURNING ce_source, ce_id"
)


def new_leaf(event: CloudEvent, position: RecordPosition) -> store.NewLeaf:
    data = json.loads(event.raw_value) if event.raw_value is not None else event.data_json()
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
        also=incidents_named(event.type, data, event.subject) if isinstance(data, dict) else (),
    )


@dataclass(frozen=True)
class AuditLog:
    """Every event becomes a leaf, and nothing else happens here: findings follow the log in
    their own transaction (`follower.py`), so no defect of theirs can keep an event out."""

    @property
    def table(self) -> HandlerTable:
        """Every type of every topic becomes a leaf; none is ignored."""
        return HandlerTable.of(self.append, EVENT_TYPES)

    async def append(
        self, session: AsyncSession, event: CloudEvent, position: RecordPosition
    ) -> None:
        await self.append_all(session, [(event, position)])

    async def append_all(self, session: AsyncSession, received: Sequence[Received]) -> None:
        await store.act_as_writer(session)
        appended = await store.append(
            session, [new_leaf(event, position) for event, position in received]
        )
        if appended:
            await notify(session, store.APPENDED_CHANNEL)


class BatchingConsumer(EventConsumer):
    """The shared consumer, with a batch appended to the log in a few statements rather than
    record by record."""

    def __init__(self, audit_log: AuditLog, *arguments: Any) -> None:
        super().__init__(*arguments)
        self._audit_log = audit_log

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
        async with self._sessions() as session, session.begin():
            await store.act_as_writer(session)
            # One statement of constant text for the whole batch: SQLAlchemy compiles a
            # multi-row VALUES anew for every batch size, which costs more than the insert.
            claimed = await session.execute(
                CLAIM_BATCH,
                {
                    "sources": [event.source for event, _ in received],
                    "ids": [event.id for event, _ in received],
                    "types": [event.type for event, _ in received],
                    "consumer": self.name,
                    "topics": [position.topic for _, position in received],
                    "partitions": [position.partition for _, position in received],
                    "offsets": [position.offset for _, position in received],
                },
            )
            fresh_ids = {(source, event_id) for source, event_id in claimed}
            fresh = [item for item in received if (item[0].source, item[0].id) in fresh_ids]
            if fresh:
                await self._audit_log.append_all(session, fresh)
        for event, position in received:
            applied = (event.source, event.id) in fresh_ids
            self._count(position.topic, "applied" if applied else "redelivered")
