"""One event, several reports (R20): which open incident a new report is of, which incidents
people may want to link, and the facts of the event when its reports differ. Pure: intake
brings the incidents and stores what this decides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator

from shared.domain.policyfile import policy_data
from shared.domain.vocabulary import Category, Phase

# Free-text facts: the incident keeps what it says; another report fills only what is missing.
TEXT_FACTS = ("location", "summary", "measures_taken", "persons_involved")
EARLIEST_FACTS = ("occurred_at", "discovered_at")


class Correlation(BaseModel):
    """The policy's `correlation` section (R20, 五(四))."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: str = "R20"
    plan_section: str = "五(四)"
    link_window: timedelta = timedelta(hours=24)
    candidate_window: timedelta = timedelta(hours=1)
    category_severity: tuple[Category, ...]
    phase_severity: tuple[Phase, ...]

    @model_validator(mode="after")
    def _every_value_ranked(self) -> Correlation:
        for name, ranked, values in (
            ("category_severity", self.category_severity, Category),
            ("phase_severity", self.phase_severity, Phase),
        ):
            if sorted(ranked) != sorted(values):
                raise ValueError(f"{name} must rank each of {[str(v) for v in values]} once")
        return self

    @classmethod
    def load(cls, path: Path, overrides: Path | None = None) -> Correlation:
        return cls.model_validate(policy_data(path, overrides)["correlation"])

    def more_severe(self, ranked: Sequence[str], first: str, second: str) -> str:
        return first if ranked.index(first) <= ranked.index(second) else second


@dataclass(frozen=True)
class OpenIncident:
    """An open incident as matching sees it."""

    id: UUID
    township_code: str
    category: str
    reported_at: datetime
    drill: bool
    subject_ids: frozenset[str]
    external_refs: frozenset[str]
    merged_into: UUID | None = None


@dataclass(frozen=True)
class Match:
    incident_id: UUID
    linked_by: str  # SUBJECT_ID or EXTERNAL_REF


def match(
    policy: Correlation,
    open_incidents: Iterable[OpenIncident],
    township_code: str,
    drill: bool,
    subject_ids: Iterable[str],
    external_ref: str | None,
    at: datetime,
) -> Match | None:
    """The open incident of the same township, reported within the link window, that a new
    report is of: the same external reference first, else the same subject id; the earliest
    reported when several match. A drill matches only drills, a real report only real ones."""
    subjects = frozenset(subject_ids)
    eligible = sorted(
        (
            incident
            for incident in open_incidents
            if incident.township_code == township_code
            and incident.drill == drill
            and at - incident.reported_at <= policy.link_window
        ),
        key=lambda incident: incident.reported_at,
    )
    if external_ref:
        for incident in eligible:
            if external_ref in incident.external_refs:
                return Match(incident.id, "EXTERNAL_REF")
    for incident in eligible:
        if subjects & incident.subject_ids:
            return Match(incident.id, "SUBJECT_ID")
    return None


@dataclass(frozen=True)
class Candidate:
    incident_id: UUID
    apart: timedelta
    why: str


def candidates(
    policy: Correlation,
    incident: OpenIncident,
    others: Iterable[OpenIncident],
    linked: frozenset[UUID] = frozenset(),
) -> list[Candidate]:
    """Near matches people may link (R20): open incidents of the same township and category
    reported within the candidate window of this one, with another or no subject id. Not
    linked automatically: the same category nearby may still be two events."""
    found = []
    for other in others:
        apart = abs(other.reported_at - incident.reported_at)
        if (
            other.id == incident.id
            or other.id in linked
            or other.township_code != incident.township_code
            or other.category != incident.category
            or other.drill != incident.drill
            or apart > policy.candidate_window
            or (incident.subject_ids & other.subject_ids)
        ):
            continue
        found.append(
            Candidate(
                other.id,
                apart,
                f"同一乡镇、同一类别（{other.category}），报告时间相隔 "
                f"{int(apart.total_seconds() // 60)} 分钟，对象编号不同或未报",
            )
        )
    return sorted(found, key=lambda candidate: candidate.apart)


def combined(
    policy: Correlation, facts: Mapping[str, Any], other: Mapping[str, Any]
) -> dict[str, Any]:
    """The facts of one event from two reports of it: the more severe category and phase, an
    offence if either says so, every subject of either, the earliest times, and the first
    report's words where it has them. Returns only what differs from `facts`."""
    result: dict[str, Any] = {
        "category": policy.more_severe(
            policy.category_severity, facts["category"], other["category"]
        ),
        "phase": policy.more_severe(policy.phase_severity, facts["phase"], other["phase"]),
        "offence": bool(facts.get("offence")) or bool(other.get("offence")),
    }
    known = {subject["id"] for subject in facts.get("subjects") or ()}
    added = [s for s in other.get("subjects") or () if s["id"] not in known]
    if added:
        result["subjects"] = [*(facts.get("subjects") or ()), *added]
    for name in EARLIEST_FACTS:
        times = [value for value in (facts.get(name), other.get(name)) if value]
        if times:
            result[name] = min(times, key=lambda value: datetime.fromisoformat(str(value)))
    for name in TEXT_FACTS:
        if not facts.get(name) and other.get(name):
            result[name] = other[name]
    return {name: value for name, value in result.items() if facts.get(name) != value}
