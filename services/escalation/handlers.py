"""Event consumers of escalation: reports become obligations, actions move the lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation import lifecycle
from services.escalation.models import incidents, obligations
from services.escalation.rules import Policy, is_met_by, obligations_for_report
from shared.directory import Directory
from shared.domain import LifecycleStatus
from shared.events import CloudEvent
from shared.events.models import (
    ActionRecorded,
    ActionRejected,
    IncidentBrief,
    IncidentFacts,
    IncidentReported,
    IncidentStatusChanged,
    ObligationCreated,
    ObligationMet,
    ReportFiled,
)
from shared.kafka import RecordPosition, RejectEvent
from shared.messaging import Outbox

SOURCE = "escalation"


def brief(facts: IncidentFacts) -> IncidentBrief:
    return IncidentBrief(
        category=facts.category,
        phase=facts.phase,
        township_code=facts.township_code,
        township_name=facts.township_name,
        location=facts.location,
        occurred_at=facts.occurred_at,
        summary=facts.summary,
        subject_names=tuple(subject.name for subject in facts.subjects),
        drill=facts.drill,
    )


@dataclass(frozen=True)
class EscalationHandlers:
    policy: Policy
    directory: Directory
    outbox: Outbox

    def party_names(self) -> dict[str, str]:
        return {party.code: party.name for party in self.directory.parties}

    async def handle(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        match event.data:
            case IncidentReported():
                await self.on_reported(session, event, event.data)
            case ActionRecorded():
                await self.on_action(session, event, event.data)
            case ReportFiled():
                await self.on_report_filed(session, event.data)

    async def on_reported(
        self, session: AsyncSession, event: CloudEvent, report: IncidentReported
    ) -> None:
        facts = report.facts
        stored = await session.execute(
            insert(incidents)
            .values(
                id=report.incident_id,
                facts=facts.model_dump(mode="json"),
                reporter=report.reporter.model_dump(mode="json"),
                status=LifecycleStatus.REPORTED,
                drill=facts.drill,
                policy_version=self.policy.version,
                reported_at=report.reported_at,
            )
            .on_conflict_do_nothing()
            .returning(incidents.c.id)
        )
        if stored.first() is None:
            raise RejectEvent(f"incident {report.incident_id} was already reported")
        specs = obligations_for_report(self.policy, facts, report.reported_at, self.party_names())
        rows = [
            {
                "id": uuid4(),
                "incident_id": report.incident_id,
                "party": spec.party,
                "action": spec.action,
                "action_text": spec.action_text,
                "rule_id": spec.rule_id,
                "plan_section": spec.plan_section,
                "deadline_name": spec.deadline_name,
                "due_at": spec.due_at,
                "explanation": spec.explanation,
                "status": "PENDING",
                "source_event_id": event.id,
            }
            for spec in specs
        ]
        if rows:
            await session.execute(obligations.insert(), rows)
        incident_brief = brief(facts)
        created = [
            CloudEvent.new(
                SOURCE,
                ObligationCreated(
                    incident_id=report.incident_id,
                    obligation_id=row["id"],
                    party=spec.party,
                    action=spec.action,
                    action_text=spec.action_text,
                    deadline_name=spec.deadline_name,
                    due_at=spec.due_at,
                    rule_id=spec.rule_id,
                    plan_section=spec.plan_section,
                    explanation=spec.explanation,
                    # The reporter already knows; everyone else with a duty is told.
                    notify=spec.notify or spec.party != report.reporter.party,
                    incident=incident_brief,
                ),
                report.incident_id,
            )
            for row, spec in zip(rows, specs, strict=True)
        ]
        status = CloudEvent.new(
            SOURCE,
            IncidentStatusChanged(
                incident_id=report.incident_id,
                status=LifecycleStatus.REPORTED,
                previous_status=None,
                changed_at=event.time,
                reason="incident.reported",
            ),
            report.incident_id,
        )
        await self.outbox.add(session, status, *created)

    async def on_action(
        self, session: AsyncSession, event: CloudEvent, recorded: ActionRecorded
    ) -> None:
        incident = (
            await session.execute(
                select(incidents).where(incidents.c.id == recorded.incident_id).with_for_update()
            )
        ).first()
        if incident is None:
            raise RejectEvent(f"action for unknown incident {recorded.incident_id}")
        current = LifecycleStatus(incident.status)
        transition = lifecycle.apply(current, recorded.action)
        if not transition.accepted:
            rejected = ActionRejected(
                incident_id=recorded.incident_id,
                action_id=recorded.action_id,
                action=recorded.action,
                status=current,
                reason=transition.reason,
            )
            await self.outbox.add(session, CloudEvent.new(SOURCE, rejected, recorded.incident_id))
            return
        published = []
        if transition.changed:
            await session.execute(
                update(incidents)
                .where(incidents.c.id == recorded.incident_id)
                .values(status=transition.status, updated_at=event.time)
            )
            published.append(
                IncidentStatusChanged(
                    incident_id=recorded.incident_id,
                    status=transition.status,
                    previous_status=current,
                    changed_at=recorded.recorded_at,
                    reason=transition.reason,
                )
            )
        pending = (
            await session.execute(
                select(obligations)
                .where(
                    obligations.c.incident_id == recorded.incident_id,
                    obligations.c.status == "PENDING",
                )
                .with_for_update()
            )
        ).all()
        for obligation in pending:
            if not is_met_by(self.policy, obligation.action, recorded.action):
                continue
            status = "MET" if recorded.occurred_at <= obligation.due_at else "MET_LATE"
            await session.execute(
                update(obligations)
                .where(obligations.c.id == obligation.id)
                .values(status=status, met_at=recorded.occurred_at, met_by_event_id=event.id)
            )
            published.append(
                ObligationMet(
                    incident_id=recorded.incident_id,
                    obligation_id=obligation.id,
                    party=obligation.party,
                    rule_id=obligation.rule_id,
                    status=status,
                    met_at=recorded.occurred_at,
                    met_by_event_id=event.id,
                )
            )
        await self.outbox.add(
            session, *(CloudEvent.new(SOURCE, data, recorded.incident_id) for data in published)
        )

    async def on_report_filed(self, session: AsyncSession, report: ReportFiled) -> None:
        incident = (
            await session.execute(
                select(incidents).where(incidents.c.id == report.incident_id).with_for_update()
            )
        ).first()
        if incident is None:
            raise RejectEvent(f"report for unknown incident {report.incident_id}")
        if report.changes:
            await session.execute(
                update(incidents)
                .where(incidents.c.id == report.incident_id)
                .values(facts={**incident.facts, **report.changes})
            )
