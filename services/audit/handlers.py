"""Event consumer of audit: every event of every topic becomes one log entry."""

from __future__ import annotations

import json

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.chain import canonical_json, chain_hash, leaf_document, leaf_hash
from services.audit.models import log_entries, log_head
from shared.events import CloudEvent
from shared.kafka import RecordPosition


async def append(session: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
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
    head = (
        await session.execute(select(log_head).where(log_head.c.id == 1).with_for_update())
    ).one()
    digest = leaf_hash(leaf)
    chained = chain_hash(head.head_hash, digest)
    await session.execute(
        log_entries.insert().values(
            index=head.size,
            ce_source=event.source,
            ce_id=event.id,
            ce_type=event.type,
            subject=event.subject,
            ce_time=event.time,
            topic=position.topic,
            partition=position.partition,
            offset=position.offset,
            leaf=leaf,
            leaf_hash=digest,
            chain_hash=chained,
        )
    )
    await session.execute(
        update(log_head).where(log_head.c.id == 1).values(size=head.size + 1, head_hash=chained)
    )
