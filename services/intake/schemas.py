"""Request and response bodies of the intake API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from shared.domain.reports import CORRECTION_ONLY_FACTS, FactsUpdate, Input, PastTime, ReporterIn
from shared.domain.vocabulary import PARTY_PATTERN, ActionCode, Category, LifecycleStatus, Phase
from shared.jsontext import json_bytes
from shared.paging import NEXT


class ReportIn(Input):
    kind: Literal["FOLLOW_UP", "CORRECTION"]
    reporter: ReporterIn
    changes: FactsUpdate = Field(default_factory=FactsUpdate)
    text: str | None = Field(default=None, max_length=5000, description="续报内容")
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="why the facts are corrected; required when the township changes",
    )

    @model_validator(mode="after")
    def _corrections_only(self) -> ReportIn:
        # Where an incident belongs and whether it is real are not news a follow-up adds:
        # changing them says an earlier report was wrong.
        stated = [name for name in CORRECTION_ONLY_FACTS if name in self.changes.model_fields_set]
        if stated and self.kind != "CORRECTION":
            raise ValueError(f"{', '.join(stated)} can be changed only by a CORRECTION")
        return self


class ActionIn(Input):
    action: ActionCode
    party: str = Field(pattern=PARTY_PATTERN)
    actor_name: str = Field(min_length=1, max_length=64)
    occurred_at: PastTime | None = Field(default=None, description="defaults to now")
    note: str | None = Field(default=None, max_length=2000)
    on_behalf_of: str | None = Field(
        default=None,
        pattern=PARTY_PATTERN,
        description="the owner this action is recorded for, one rung down the ladder "
        "(TCG for SFS, BLO for TCG or BJO); needs a reason",
    )
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="why it is recorded on the owner's behalf, or why the BLO closes an "
        "absconding before the subject is found",
    )
    to: str | None = Field(
        default=None,
        pattern=PARTY_PATTERN,
        description="REPORTED only: the party reported to (TCG of the township, or BLO)",
    )


class SubjectOut(BaseModel):
    id: str
    name: str
    id_number_masked: str | None = None
    deciding_authority: str | None = None


class SubjectFullOut(BaseModel):
    id: str
    name: str
    id_number: str | None = None
    deciding_authority: str | None = None


class FactsOut(BaseModel):
    category: Category
    phase: Phase
    township_code: str
    township_name: str
    subjects: list[SubjectOut | SubjectFullOut]
    occurred_at: datetime | None
    discovered_at: datetime | None
    location: str | None
    summary: str | None
    measures_taken: str | None
    persons_involved: str | None
    drill: bool
    offence: bool = False


class ActionOut(BaseModel):
    id: UUID
    action: ActionCode
    party: str
    actor_name: str
    occurred_at: datetime
    recorded_at: datetime
    note: str | None
    on_behalf_of: str | None = Field(
        default=None, description="set when recorded by the party one rung up, for this owner"
    )
    reason: str | None = None
    to: str | None = None
    rejected_reason: str | None = None


class ReportOut(BaseModel):
    id: UUID
    kind: str = Field(description="INITIAL, FOLLOW_UP, CORRECTION, or LINKED (R20)")
    changes: dict[str, Any]
    previous: dict[str, Any]
    reporter: dict[str, Any]
    text: str | None
    reason: str | None = None
    filed_at: datetime
    stated: dict[str, Any] | None = Field(
        default=None, description="LINKED: the facts as its source stated them"
    )
    external_ref: str | None = Field(default=None, description="LINKED: the source's reference")
    linked_by: str | None = Field(
        default=None, description="LINKED: what matched, SUBJECT_ID or EXTERNAL_REF"
    )
    split_into: UUID | None = Field(
        default=None, description="LINKED, then unlinked: the incident of its own it became"
    )


class LinkIn(Input):
    """What people decide about two incidents of one event (R20)."""

    action: Literal["LINK", "MERGE", "UNLINK"] = Field(
        description="LINK: one event, both incidents kept; MERGE: the other incident is merged "
        "into this one (its open duties move here, doubled ones are waived); UNLINK: undo a "
        "link or merge between the two, or take a report linked on arrival out of the "
        "incident as an incident of its own (`report_id`)"
    )
    incident_id: UUID | None = Field(default=None, description="the other incident")
    report_id: UUID | None = Field(
        default=None,
        description="UNLINK only: a report linked on arrival (kind LINKED) that is not of this "
        "event; it becomes an incident of its own, reported when it was",
    )
    party: str = Field(pattern=PARTY_PATTERN, description="TCG of the township, or BLO")
    actor_name: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_other(self) -> LinkIn:
        if (self.incident_id is None) == (self.report_id is None):
            raise ValueError("name either incident_id or report_id")
        if self.report_id is not None and self.action != "UNLINK":
            raise ValueError("a report linked on arrival can only be unlinked")
        return self


class LinkOut(BaseModel):
    id: UUID
    kind: Literal["LINK", "MERGE"]
    incident_id: UUID
    linked_incident_id: UUID = Field(description="the other incident; for MERGE, the merged one")
    party: str
    actor_name: str
    reason: str
    linked_at: datetime
    unlinked_at: datetime | None = None
    unlinked_by: str | None = None
    unlink_reason: str | None = None


class CandidateOut(BaseModel):
    """An open incident that may be of the same event (R20): for people to link or not."""

    id: UUID
    category: Category
    phase: Phase
    status: LifecycleStatus
    reported_at: datetime
    reporter_party: str
    minutes_apart: int
    why: str


class CandidateList(BaseModel):
    items: list[CandidateOut]
    next: str | None = Field(default=None, description=NEXT)


class ReportList(BaseModel):
    incident_id: UUID
    personal_data: Literal["masked", "shown"] = "masked"
    items: list[ReportOut]
    next: str | None = Field(default=None, description=NEXT)


class ActionList(BaseModel):
    incident_id: UUID
    personal_data: Literal["masked", "shown"] = "masked"
    items: list[ActionOut]
    next: str | None = Field(default=None, description=NEXT)


class IncidentOut(BaseModel):
    id: UUID
    status: LifecycleStatus
    status_reason: str | None
    status_changed_at: datetime | None
    reported_at: datetime
    reporter: dict[str, Any]
    facts: FactsOut
    personal_data: Literal["masked", "shown"] = "masked"
    actions: list[ActionOut] = Field(default=[], description="the first 100, as they happened")
    actions_next: str | None = Field(
        default=None,
        description="more actions follow: GET /v1/incidents/{id}/actions?after=<this>",
    )
    reports: list[ReportOut] = Field(default=[], description="the first 100, as filed")
    reports_next: str | None = Field(
        default=None,
        description="more reports follow: GET /v1/incidents/{id}/reports?after=<this>",
    )
    merged_into: UUID | None = Field(
        default=None, description="the incident this one was merged into (R20)"
    )
    links: list[LinkOut] = Field(default=[], description="links and merges, undone ones too")


class CreatedOut(BaseModel):
    id: UUID
    status: LifecycleStatus
    location: str
    filed_as: Literal["INCIDENT", "FOLLOW_UP", "LINKED"] = Field(
        default="INCIDENT",
        description="INCIDENT: a new incident; FOLLOW_UP: the source's own reference again "
        "with other facts; LINKED: another source's report of an open incident (R20)",
    )
    linked_by: str | None = Field(default=None, description="LINKED: SUBJECT_ID or EXTERNAL_REF")
    candidates: list[UUID] = Field(
        default=[],
        description="INCIDENT: open incidents that may be the same event (R20), for the TCG or "
        "the BLO to link, nearest first: the first page of GET /v1/incidents/{id}/candidates",
    )


def new_incident_json(incident_id: UUID, location: str, candidates: list[UUID]) -> bytes:
    """A new incident's answer, `CreatedOut` as its model writes it, written from the values
    at once: in a disaster it carries a page of candidates, which the model would take apart
    and build again id by id (a twentieth of intake's work flat out, docs/performance.md)."""
    return json_bytes(
        {
            "id": str(incident_id),
            "status": LifecycleStatus.REPORTED.value,
            "location": location,
            "filed_as": "INCIDENT",
            "linked_by": None,
            "candidates": [str(candidate) for candidate in candidates],
        }
    )


class IncidentItemOut(BaseModel):
    """An incident as a list screen shows it; personal data always masked (the incident itself,
    GET /v1/incidents/{id}, shows it in clear to a reader holding pii:read, audited)."""

    id: UUID
    category: Category
    phase: Phase
    township_code: str
    township_name: str
    status: LifecycleStatus
    status_changed_at: datetime | None
    reported_at: datetime
    occurred_at: datetime | None
    drill: bool
    summary: str | None = Field(description="masked as in the incident: names and ID numbers")
    reporter_party: str
    subjects: int = Field(description="how many subjects the facts name")
    reports: int = Field(description="reports filed: 首报, 续报, corrections, linked reports")
    actions: int = Field(description="actions recorded")
    merged_into: UUID | None = Field(
        default=None, description="the incident this one was merged into (R20)"
    )


class IncidentList(BaseModel):
    personal_data: Literal["masked"] = "masked"
    items: list[IncidentItemOut] = Field(description="newest report first (reported_at, id)")
    next: str | None = Field(default=None, description=NEXT)
