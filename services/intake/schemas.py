"""Request and response bodies of the intake API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from shared.domain import PARTY_PATTERN, ActionCode, Category, LifecycleStatus, Phase
from shared.reports import FactsUpdate, Input, PastTime, ReporterIn


class ReportIn(Input):
    kind: Literal["FOLLOW_UP", "CORRECTION"]
    reporter: ReporterIn
    changes: FactsUpdate = Field(default_factory=FactsUpdate)
    text: str | None = Field(default=None, max_length=5000, description="续报内容")


class ActionIn(Input):
    action: ActionCode
    party: str = Field(pattern=PARTY_PATTERN)
    actor_name: str = Field(min_length=1, max_length=64)
    occurred_at: PastTime | None = Field(default=None, description="defaults to now")
    note: str | None = Field(default=None, max_length=2000)


class SubjectOut(BaseModel):
    id: str
    name: str
    id_number_masked: str | None = None


class SubjectFullOut(BaseModel):
    id: str
    name: str
    id_number: str | None = None


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


class ActionOut(BaseModel):
    id: UUID
    action: ActionCode
    party: str
    actor_name: str
    occurred_at: datetime
    recorded_at: datetime
    note: str | None
    rejected_reason: str | None = None


class ReportOut(BaseModel):
    id: UUID
    kind: str
    changes: dict
    previous: dict
    reporter: dict
    text: str | None
    filed_at: datetime


class IncidentOut(BaseModel):
    id: UUID
    status: LifecycleStatus
    status_reason: str | None
    status_changed_at: datetime | None
    reported_at: datetime
    reporter: dict
    facts: FactsOut
    personal_data: Literal["masked", "shown"] = "masked"
    actions: list[ActionOut] = []
    reports: list[ReportOut] = []


class CreatedOut(BaseModel):
    id: UUID
    status: LifecycleStatus
    location: str
