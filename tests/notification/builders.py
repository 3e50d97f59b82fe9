"""Routing decisions and changes as the escalation service would publish them, and records as
the audit would, for notification to act on. Free text names the subject and carries an ID
number, so that every test sees both masked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from shared.domain.vocabulary import Category, LifecycleStatus, Phase
from shared.events import CloudEvent
from shared.events.models import (
    AccountabilityRecorded,
    IncidentBrief,
    IncidentUpdated,
    IncidentWentQuiet,
    ObligationCreated,
    ObligationMet,
    ObligationWaived,
)

ID_NUMBER = "150626199001011234"


def obligation(
    party: str,
    *,
    category: Category = Category.VIOLENCE,
    phase: Phase = Phase.IN_PROGRESS,
    drill: bool = False,
    incident_id: UUID | None = None,
    obligation_id: UUID | None = None,
    summary: str = f"对象王某某（身份证{ID_NUMBER}）持刀与人冲突",
    location: str = "图克镇中心街",
    subject_names: tuple[str, ...] = ("王某某",),
    ack_seconds: float | None = None,
) -> ObligationCreated:
    now = datetime.now(UTC)
    return ObligationCreated(
        incident_id=incident_id or uuid4(),
        obligation_id=obligation_id or uuid4(),
        party=party,
        action="REPORT",
        action_text="报告：社区矫正对象突发事件",
        deadline_name="IMMEDIATE",
        due_at=now + timedelta(minutes=15),
        rule_id="R6",
        plan_section="四(三)",
        explanation="依据 R6（预案四(三)）",
        notify=True,
        ack_seconds=ack_seconds,
        incident=IncidentBrief(
            category=category,
            phase=phase,
            township_code="150626102",
            township_name="图克镇",
            location=location,
            occurred_at=now - timedelta(minutes=3),
            summary=summary,
            subject_names=subject_names,
            drill=drill,
        ),
    )


def obligation_created(party: str, **details: Any) -> CloudEvent:
    return created(obligation(party, **details))


def created(data: ObligationCreated) -> CloudEvent:
    """The duty's `obligation.created`, as escalation publishes it."""
    return CloudEvent.new("escalation", data, data.incident_id)


def moved(old: ObligationCreated) -> ObligationCreated:
    """The same duty, moved to another incident by a merge (R20)."""
    return old.model_copy(
        update={"incident_id": uuid4(), "obligation_id": uuid4(), "moved_from": old.obligation_id}
    )


def obligation_waived(created: ObligationCreated, reason: str = "原事项已办结") -> CloudEvent:
    """Escalation's word that `created` is no longer required."""
    data = ObligationWaived(
        incident_id=created.incident_id,
        obligation_id=created.obligation_id,
        party=created.party,
        rule_id=created.rule_id,
        reason=reason,
        waived_at=datetime.now(UTC),
        drill=created.incident.drill,
    )
    return CloudEvent.new("escalation", data, data.incident_id)


def obligation_met(created: ObligationCreated, *, late: bool = False) -> CloudEvent:
    """Escalation's word that `created` was met, on time or late."""
    data = ObligationMet(
        incident_id=created.incident_id,
        obligation_id=created.obligation_id,
        party=created.party,
        rule_id=created.rule_id,
        status="MET_LATE" if late else "MET",
        met_at=datetime.now(UTC),
        met_by_event_id=uuid4(),
        drill=created.incident.drill,
    )
    return CloudEvent.new("escalation", data, data.incident_id)


def incident_updated(
    recipients: tuple[str, ...] = ("PPS:150626102", "SFS:150626102"),
    *,
    incident_id: UUID | None = None,
    about: str = "FOLLOW_UP",
    drill: bool = False,
    changed_at: datetime | None = None,
) -> IncidentUpdated:
    """R19: a change escalation tells the parties already alerted about the incident."""
    return IncidentUpdated(
        incident_id=incident_id or uuid4(),
        rule_id="R19",
        about=about,
        summary=f"王某某（身份证{ID_NUMBER}）由扬言报复转为持刀伤人，王某某仍在图克镇某村",
        recipients=recipients,
        changed_by="SFS:150626102",
        changed_at=changed_at or datetime.now(UTC),
        incident=IncidentBrief(
            category=Category.VIOLENCE,
            phase=Phase.IN_PROGRESS,
            township_code="150626102",
            township_name="图克镇",
            location="图克镇某村王某某家",
            summary="王某某持刀",
            subject_names=("王某某",),
            drill=drill,
        ),
        status=LifecycleStatus.RESPONDING,
        update_id=uuid4(),
    )


def incident_went_quiet(
    last_news_at: datetime, *, incident_id: UUID | None = None, drill: bool = False
) -> IncidentWentQuiet:
    """R9: an open incident seen quiet a week and a minute after its last news."""
    return IncidentWentQuiet(
        incident_id=incident_id or uuid4(),
        party="BLO",
        rule_id="R9",
        last_news_at=last_news_at,
        noticed_at=last_news_at + timedelta(days=7, minutes=1),
        township_code="150626102",
        drill=drill,
    )


def accountability_recorded(
    *,
    incident_id: UUID | None = None,
    kind: str = "DISCIPLINE",
    document_number: str = "乌司发〔2026〕5号",
    drill: bool = False,
    recorded_at: datetime | None = None,
) -> AccountabilityRecorded:
    """R15: a record of the BJO against the investigation report, resting on two findings."""
    return AccountabilityRecorded(
        record_id=uuid4(),
        incident_id=incident_id or uuid4(),
        rule_id="R15",
        kind=kind,
        person="张三丰",
        role="图克镇司法所所长",
        party="SFS:150626102",
        decision=f"张三丰迟报，给予警告处分（身份证{ID_NUMBER}）",
        document_number=document_number,
        finding_ids=(uuid4(), uuid4()),
        recorded_by="BJO",
        recorded_at=recorded_at or datetime.now(UTC),
        drill=drill,
    )
