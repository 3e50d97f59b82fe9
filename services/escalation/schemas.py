"""Request and response bodies of the escalation API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from shared.domain.reports import IncidentIn, Input
from shared.domain.vocabulary import LifecycleStatus
from shared.paging import NEXT


class ObligationOut(BaseModel):
    id: UUID
    party: str
    party_name: str
    owner: str | None = Field(
        default=None, description="who must act: the party itself or the party that informs it"
    )
    action: str
    action_text: str
    rule_id: str
    plan_section: str
    plan_text: str
    deadline_name: str
    deadline_text: str = Field(description="the deadline as people read it, e.g. 立即（15分钟）")
    due_at: datetime
    status: str
    trigger: str
    notify: bool
    drill: bool
    escalated_from: UUID | None
    met_at: datetime | None
    met_by_event_id: UUID | None
    closed_reason: str | None = Field(description="why it was waived or missed")
    omitted_at: datetime | None = Field(
        default=None, description="R11: still undone a week past its deadline"
    )
    why: str
    moved_from: UUID | None = Field(
        default=None, description="R20: the same duty of another incident, moved here"
    )
    moved_to: UUID | None = Field(
        default=None, description="R20: waived here, it lives on as this obligation"
    )


ObligationStatus = Literal["PENDING", "MET", "MET_LATE", "MISSED", "WAIVED"]


class DutyOut(ObligationOut):
    """An obligation in a list across incidents: with its incident and where it is."""

    incident_id: UUID
    township_code: str = Field(description="the incident's township as its facts now say")


class DutyList(BaseModel):
    items: list[DutyOut] = Field(description="soonest due first (due_at, then id)")
    next: str | None = Field(default=None, description=NEXT)


class ObligationsOut(BaseModel):
    incident_id: UUID
    status: LifecycleStatus
    drill: bool
    policy_version: str
    merged_into: UUID | None = Field(
        default=None, description="R20: merged into this incident, its duties moved there"
    )
    obligations: list[ObligationOut]
    next: str | None = Field(default=None, description=NEXT)


class PriorSignsIn(Input):
    subject_id: str = Field(min_length=1, max_length=64)
    reported_at: AwareDatetime
    drill: bool = Field(default=False, description="the earlier signs were a drill's")


# A dry run evaluates reports of the past and the near future; deadlines counted from a time
# beyond these would not be times at all (year 10000).
EARLIEST_DRY_RUN = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_DRY_RUN_AHEAD = timedelta(days=366)


class EvaluateIn(IncidentIn):
    """An incident report as intake takes it, plus what a dry run should assume."""

    reported_at: AwareDatetime | None = Field(
        default=None, description="defaults to now; from 2000 to a year ahead"
    )

    @field_validator("reported_at")
    @classmethod
    def _a_time_deadlines_can_follow(cls, value: datetime | None) -> datetime | None:
        if value is not None and not (
            EARLIEST_DRY_RUN <= value <= datetime.now(UTC) + LATEST_DRY_RUN_AHEAD
        ):
            raise ValueError("must lie between 2000-01-01 and a year from now")
        return value

    prior_signs: list[PriorSignsIn] = Field(
        default_factory=list, description="earlier reports of signs about these subjects (R17)"
    )


class ProposedObligationOut(BaseModel):
    party: str
    party_name: str
    action: str
    action_text: str
    rule_id: str
    plan_section: str
    deadline_name: str
    due_at: datetime
    notify: bool
    drill: bool
    why: str


class ProposedTimerOut(BaseModel):
    name: str
    rule_id: str
    fire_at: datetime


class EvaluationOut(BaseModel):
    policy_version: str
    rules_fired: list[str]
    obligations: list[ProposedObligationOut]
    timers: list[ProposedTimerOut]


class DrillComplianceOut(BaseModel):
    party: str
    party_name: str
    year: int
    drills: int
    required: int
    compliant: bool
    rule_id: str
    plan_section: str
    incident_ids: list[UUID]


class DrillComplianceList(BaseModel):
    year: int
    items: list[DrillComplianceOut]
    next: str | None = Field(default=None, description=NEXT)
