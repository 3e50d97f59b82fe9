"""Response bodies of the audit API, and what its routes share (`AuditContext`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from services.audit.note import Verifier
from shared.events.models import AccountabilityFinding
from shared.pii import PiiCipher


@dataclass(frozen=True)
class AuditContext:
    log_key: Verifier
    witnesses: tuple[Verifier, ...]
    party_names: Mapping[str, str]
    # Opens the subjects sealed on the log's events, for a report read with pii:read.
    personal_data: PiiCipher
    # The county's clock (COUNTY_TIME_ZONE): every time written for people.
    zone: ZoneInfo


class LogEntryOut(BaseModel):
    index: int
    ce_id: UUID
    ce_source: str
    ce_type: str
    ce_time: datetime
    topic: str
    partition: int
    offset: int
    leaf_hash: str = Field(description="hex")
    event: dict[str, Any]


class TimelineOut(BaseModel):
    incident_id: str
    entries: list[LogEntryOut]


class LogHeadOut(BaseModel):
    size: int
    head_hash: str = Field(description="the Merkle root, hex")
    root_hash: str = Field(description="the Merkle root, base64")


class LogVerificationOut(LogHeadOut):
    recomputed_root_hash: str = Field(description="root of the leaves as they are now, base64")
    first_broken_index: int | None
    checkpoint_size: int | None
    checkpoint_matches: bool | None


class CheckpointOut(BaseModel):
    size: int
    root_hash: str
    note: str = Field(description="C2SP signed note")


class ProvenEntryOut(BaseModel):
    index: int
    ce_type: str
    ce_time: datetime
    leaf_hash: str = Field(description="base64")
    covered: bool = Field(description="the checkpoint includes this leaf")
    proof: list[str] = Field(description="RFC 9162 inclusion proof, base64, leaf first")


class IncidentProofsOut(BaseModel):
    incident_id: str
    checkpoint: CheckpointOut
    entries: list[ProvenEntryOut]


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str
    root_hash: str
    proof: list[str]


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    old_root_hash: str
    new_root_hash: str
    proof: list[str]


class FindingOut(AccountabilityFinding):
    found_at: datetime
    checkpoint_size: int | None
    proofs: list[ProvenEntryOut]


class FindingsOut(BaseModel):
    checkpoint: CheckpointOut | None
    findings: list[FindingOut]
