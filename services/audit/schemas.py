"""Response bodies of the audit API, and what its routes share (`AuditContext`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.audit.datakeys import DataKeys
from services.audit.note import Verifier
from shared.domain.vocabulary import PARTY_PATTERN
from shared.events.models import AccountabilityFinding, AccountabilityRecorded, FindingReviewed
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
    # Opens the personal fields sealed in the leaves under each incident's data key.
    data_keys: DataKeys


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
    personal_data_erased: bool = Field(
        default=False,
        description="the incident's personal data was erased after the retention period: "
        "those fields read 已按保存期限删除; the leaf and its proofs are unchanged",
    )
    leaf: str | None = Field(
        default=None,
        description="base64 of the leaf's bytes, which its hash commits to (personal fields "
        "sealed); withheld without pii:read from a leaf of before sealing that holds them in "
        "clear. Only on GET /v1/log/entries/{index}",
    )


class TimelineOut(BaseModel):
    incident_id: str
    entries: list[LogEntryOut]
    next: str | None = Field(
        default=None, description="more follow: pass this as `after` for the next page"
    )


class LogHeadOut(BaseModel):
    size: int
    head_hash: str = Field(description="the Merkle root, hex")
    root_hash: str = Field(description="the Merkle root, base64")


class LogVerificationOut(LogHeadOut):
    checked: int = Field(description="leaves re-derived so far, this page's included")
    recomputed_root_hash: str = Field(
        description="root of the leaves checked so far as they are now, base64"
    )
    first_broken_index: int | None
    checkpoint_size: int | None = Field(description="the checkpoint the first page judged by")
    checkpoint_matches: bool | None = Field(
        description="None until the pages have reached the checkpoint's size"
    )
    next: str | None = Field(
        default=None, description="more leaves follow: pass this as `after` for the next page"
    )


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
    next: str | None = Field(
        default=None, description="more follow: pass this as `after` for the next page"
    )


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


# Text people write: surrounding blanks dropped, never blank.
Written = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ReviewIn(BaseModel):
    """A finding judged: confirmed or dismissed, always with the reason."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["CONFIRMED", "DISMISSED"]
    reason: Annotated[Written, StringConstraints(max_length=2000)]


ReviewOut = FindingReviewed

FindingState = Literal["OPEN", "CONFIRMED", "DISMISSED", "SUPERSEDED"]


class FindingOut(AccountabilityFinding):
    found_at: datetime
    checkpoint_size: int | None
    proofs: list[ProvenEntryOut]
    state: FindingState = Field(
        description="SUPERSEDED when an R11 omission was done later (R10 stands in its place); "
        "otherwise the latest review's decision, or OPEN while nobody has judged it"
    )
    superseded_by: UUID | None = Field(
        default=None, description="the R10 finding that replaces this R11 omission"
    )
    review: ReviewOut | None = Field(default=None, description="the latest review: it counts")
    reviews: list[ReviewOut] = Field(default_factory=list, description="every review, oldest first")


class FindingsOut(BaseModel):
    checkpoint: CheckpointOut | None
    findings: list[FindingOut]
    next: str | None = Field(
        default=None, description="more findings follow: pass this as `after` for the next page"
    )


class AccountabilityIn(BaseModel):
    """R15: a commendation or discipline decided after the investigation report was filed."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["COMMENDATION", "DISCIPLINE"]
    person: Annotated[Written, StringConstraints(max_length=64)]
    role: Annotated[Written, StringConstraints(max_length=64)] = Field(description="职务")
    party: str = Field(pattern=PARTY_PATTERN, description="the person's unit")
    decision: Annotated[Written, StringConstraints(max_length=2000)]
    document_number: Annotated[Written, StringConstraints(max_length=100)] = Field(
        description="文号"
    )
    finding_ids: list[UUID] = Field(
        default_factory=list,
        max_length=100,
        description="the findings it rests on; a discipline rests on at least one",
    )


AccountabilityOut = AccountabilityRecorded


class AccountabilityListOut(BaseModel):
    incident_id: UUID
    records: list[AccountabilityOut]
    next: str | None = Field(
        default=None, description="more follow: pass this as `after` for the next page"
    )
