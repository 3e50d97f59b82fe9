"""Routing decisions as the escalation service would publish them, for notification to act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from shared.domain import Category, Phase
from shared.events import CloudEvent
from shared.events.models import IncidentBrief, ObligationCreated, ObligationMet, ObligationWaived

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
    data = obligation(party, **details)
    return CloudEvent.new("escalation", data, data.incident_id)


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
