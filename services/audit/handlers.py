"""The consumer of audit: every event of every topic becomes one leaf; findings follow.

Records arrive in batches per partition; a batch is claimed in the inbox and appended to the
Merkle log in one transaction (one lock, one read of the tree's border, multi-row inserts), so
the log keeps up with thousands of events a second. A batch that fails for any reason is
retried one record at a time by the shared consumer, which dead-letters what it cannot apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import findings, store
from services.audit.leaves import canonical_json, leaf_document, leaf_hash
from services.audit.models import findings as findings_table
from services.audit.models import log_entries
from shared.events import EVENT_TYPES, CloudEvent, decode
from shared.events.models import AccountabilityFinding
from shared.kafka import EventConsumer, HandlerTable, RecordPosition, RejectEvent
from shared.messaging import Outbox

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
    )


@dataclass(frozen=True)
class AuditLog:
    outbox: Outbox
    rules: findings.FindingRules

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
        await store.append(session, [new_leaf(event, position) for event, position in received])
        for incident_id in _incidents_to_review(received):
            await self.review(session, incident_id)

    async def review(self, session: AsyncSession, incident_id: UUID) -> list[AccountabilityFinding]:
        """Compute the incident's findings from its log; store and publish the new ones."""
        rows = await session.execute(
            select(log_entries.c.index, log_entries.c.leaf)
            .where(log_entries.c.subject == str(incident_id))
            .order_by(log_entries.c.index)
        )
        events = [findings.LoggedEvent.from_leaf(row.index, bytes(row.leaf)) for row in rows]
        computed = findings.compute(incident_id, events, self.rules)
        if not computed:
            return []
        stored = await session.execute(
            insert(findings_table)
            .values(
                [
                    {
                        "finding_id": finding.finding_id,
                        "incident_id": incident_id,
                        "rule_id": finding.rule_id,
                        "party": finding.party,
                        "kind": finding.kind,
                        "evidence": list(finding.evidence_log_indexes),
                        "data": finding.model_dump(mode="json"),
                    }
                    for finding in computed
                ]
            )
            .on_conflict_do_nothing()
            .returning(findings_table.c.finding_id)
        )
        new = set(stored.scalars())
        fresh = [finding for finding in computed if finding.finding_id in new]
        await self.outbox.add(
            session, *(CloudEvent.new(SOURCE, finding, incident_id) for finding in fresh)
        )
        return fresh


def _incidents_to_review(received: Sequence[Received]) -> list[UUID]:
    incidents: dict[UUID, None] = {}
    for event, _ in received:
        if event.type in findings.RELEVANT_TYPES:
            try:
                incidents.setdefault(UUID(event.subject), None)
            except ValueError:
                continue
    return list(incidents)


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
