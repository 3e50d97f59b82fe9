"""Response bodies of the audit API."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class LogEntryOut(BaseModel):
    index: int
    ce_id: UUID
    ce_source: str
    ce_type: str
    ce_time: datetime
    topic: str
    partition: int
    offset: int
    leaf_hash: str
    chain_hash: str
    event: dict[str, Any]


class TimelineOut(BaseModel):
    incident_id: str
    entries: list[LogEntryOut]


class LogHeadOut(BaseModel):
    size: int
    head_hash: str


class LogVerificationOut(LogHeadOut):
    first_broken_index: int | None
