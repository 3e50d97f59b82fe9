"""REST routes of audit: an incident's timeline and the state of the log."""

from __future__ import annotations

import json
from uuid import UUID

from fastapi import APIRouter
from sqlalchemy import select

from services.audit.chain import first_broken_link
from services.audit.models import log_entries, log_head
from services.audit.schemas import LogEntryOut, LogHeadOut, LogVerificationOut, TimelineOut
from shared.problems import not_found
from shared.runtime import DatabaseSession

router = APIRouter(tags=["audit"])


def entry_out(row) -> LogEntryOut:
    return LogEntryOut(
        index=row.index,
        ce_id=row.ce_id,
        ce_source=row.ce_source,
        ce_type=row.ce_type,
        ce_time=row.ce_time,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        leaf_hash=row.leaf_hash.hex(),
        chain_hash=row.chain_hash.hex(),
        event=json.loads(row.leaf),
    )


@router.get(
    "/v1/incidents/{incident_id}/timeline",
    summary="Every event of an incident, in the order it happened",
)
async def timeline(incident_id: UUID, session: DatabaseSession) -> TimelineOut:
    rows = (
        await session.execute(
            select(log_entries)
            .where(log_entries.c.subject == str(incident_id))
            .order_by(log_entries.c.ce_time, log_entries.c.index)
        )
    ).all()
    if not rows:
        raise not_found("Incident", incident_id)
    return TimelineOut(incident_id=str(incident_id), entries=[entry_out(row) for row in rows])


@router.get("/v1/log/entries/{index}", summary="One log entry")
async def log_entry(index: int, session: DatabaseSession) -> LogEntryOut:
    row = (await session.execute(select(log_entries).where(log_entries.c.index == index))).first()
    if row is None:
        raise not_found("Log entry", index)
    return entry_out(row)


@router.get("/v1/log/head", summary="Size and head hash of the log")
async def head(session: DatabaseSession) -> LogHeadOut:
    current = (await session.execute(select(log_head).where(log_head.c.id == 1))).one()
    return LogHeadOut(size=current.size, head_hash=current.head_hash.hex())


@router.get("/v1/log/verify", summary="Re-derive the whole chain and name the first broken entry")
async def verify(session: DatabaseSession) -> LogVerificationOut:
    current = (await session.execute(select(log_head).where(log_head.c.id == 1))).one()
    links = await session.execute(
        select(log_entries.c.index, log_entries.c.leaf, log_entries.c.chain_hash).order_by(
            log_entries.c.index
        )
    )
    broken = first_broken_link([(row.index, row.leaf, row.chain_hash) for row in links])
    return LogVerificationOut(
        size=current.size, head_hash=current.head_hash.hex(), first_broken_index=broken
    )
