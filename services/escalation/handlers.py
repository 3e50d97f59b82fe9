"""Event consumers of escalation: reports, actions, follow-ups and acknowledgements become
obligations and lifecycle changes. The rules decide (`rules.evaluate`); this module only
loads, stores and publishes (through `store.Store`)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation.models import drills, incidents, obligations, subject_signs, timers
from services.escalation.rules import (
    Evidence,
    Trigger,
    evaluate,
    is_met_by,
    is_waived_by,
    outlives_closure,
    report_evidence,
)
from services.escalation.store import Store, facts_of
from shared import lifecycle
from shared.domain import ACTION_NAMES_ZH, LifecycleStatus, Phase, party_code
from shared.events import CloudEvent
from shared.events.models import (
    ActionRecorded,
    ActionRejected,
    IncidentFacts,
    IncidentReported,
    IncidentStatusChanged,
    NoticeAttempted,
    NotificationAcknowledged,
    NotificationDelivered,
    NotificationFailed,
    NotificationUnacknowledged,
    NotificationWithdrawn,
    PersonalDataRead,
    ReportFiled,
)
from shared.kafka import HandlerTable, RejectEvent, on_data

LOCAL_TIME = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class EscalationHandlers:
    store: Store

    @property
    def table(self) -> HandlerTable:
        """What escalation does with each type of incidents.v1 and notifications.v1. Reads of
        personal data and delivery attempts are audit's to keep; they change no obligation."""
        return HandlerTable(
            {
                IncidentReported.ce_type: on_data(self.on_reported),
                ActionRecorded.ce_type: on_data(self.on_action),
                ReportFiled.ce_type: on_data(self.on_report_filed),
                NotificationAcknowledged.ce_type: on_data(self.on_acknowledged),
                NotificationUnacknowledged.ce_type: on_data(self.on_unacknowledged),
            },
            ignored=frozenset(
                {
                    PersonalDataRead.ce_type,
                    NotificationDelivered.ce_type,
                    NotificationFailed.ce_type,
                    # Escalation withdrew the alert's obligation itself.
                    NotificationWithdrawn.ce_type,
                    # A notice is about no obligation.
                    NoticeAttempted.ce_type,
                }
            ),
        )

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
                policy_version=self.store.policy.version,
                reported_at=report.reported_at,
            )
            .on_conflict_do_nothing()
            .returning(incidents.c.id)
        )
        if stored.first() is None:
            raise RejectEvent(f"incident {report.incident_id} was already reported")
        await self._remember(session, report)
        incident = await self.store.locked_incident(session, report.incident_id)
        assert incident is not None
        decision = evaluate(
            self.store.policy,
            await self.store.situation(session, incident),
            Trigger("reported", report.reported_at, event.id, report.reporter.party),
            self.store.party_names,
        )
        await self.store.publish(
            session,
            report.incident_id,
            IncidentStatusChanged(
                incident_id=report.incident_id,
                status=LifecycleStatus.REPORTED,
                previous_status=None,
                changed_at=report.reported_at,
                reason="incident.reported",
                drill=facts.drill,
            ),
        )
        await self.store.apply(session, incident, decision, event.id)

    async def _remember(self, session: AsyncSession, report: IncidentReported) -> None:
        """History later rules look back on: signs per subject (R17), drills per year (R16)."""
        facts = report.facts
        if facts.phase == Phase.SIGNS:
            await session.execute(
                insert(subject_signs)
                .values(
                    [
                        {
                            "subject_id": subject.id,
                            "incident_id": report.incident_id,
                            "reported_at": report.reported_at,
                        }
                        for subject in facts.subjects
                    ]
                )
                .on_conflict_do_nothing()
            )
        if facts.drill:
            requirement = self.store.policy.drill_requirement
            await session.execute(
                insert(drills)
                .values(
                    incident_id=report.incident_id,
                    party=party_code(requirement.party, facts.township_code),
                    year=report.reported_at.astimezone(LOCAL_TIME).year,
                    reported_at=report.reported_at,
                )
                .on_conflict_do_nothing()
            )

    async def on_action(
        self, session: AsyncSession, event: CloudEvent, recorded: ActionRecorded
    ) -> None:
        incident = await self.store.locked_incident(session, recorded.incident_id)
        if incident is None:
            raise RejectEvent(f"action for unknown incident {recorded.incident_id}")
        current = LifecycleStatus(incident.status)
        transition = lifecycle.apply(current, recorded.action)
        if not transition.accepted:
            await self.store.publish(
                session,
                recorded.incident_id,
                ActionRejected(
                    incident_id=recorded.incident_id,
                    action_id=recorded.action_id,
                    action=recorded.action,
                    status=current,
                    reason=transition.reason,
                    drill=incident.drill,
                    party=recorded.party,
                    recorded_at=recorded.recorded_at,
                ),
            )
            return
        await self.store.change_status(session, incident, transition, recorded.recorded_at)
        incident = await self.store.locked_incident(session, recorded.incident_id)
        assert incident is not None
        evidence = Evidence("action", recorded.action)
        for obligation in await self.store.meetable(session, recorded.incident_id):
            if is_met_by(self.store.policy, obligation.action, evidence):
                await self.store.meet(session, incident, obligation, recorded.occurred_at, event.id)
            elif obligation.status == "PENDING" and is_waived_by(
                self.store.policy, obligation.action, recorded.action
            ):
                await self.store.waive(
                    session,
                    incident,
                    obligation,
                    f"已记录「{ACTION_NAMES_ZH[recorded.action]}」，不再需要",
                    recorded.recorded_at,
                )
        if transition.changed and transition.status == LifecycleStatus.CLOSED:
            await self.store.close_out(session, incident, recorded.recorded_at)
        await self._cancel_timers(session, incident.id, recorded)
        decision = evaluate(
            self.store.policy,
            await self.store.situation(session, incident),
            Trigger(f"action:{recorded.action}", recorded.recorded_at, event.id, recorded.party),
            self.store.party_names,
        )
        await self.store.apply(session, incident, decision, event.id)

    async def _cancel_timers(
        self, session: AsyncSession, incident_id: UUID, recorded: ActionRecorded
    ) -> None:
        names = [
            timer.name
            for rule in self.store.policy.rules
            for timer in rule.timers
            if recorded.action in timer.cancelled_by
        ]
        if names:
            await session.execute(
                update(timers)
                .where(
                    timers.c.incident_id == incident_id,
                    timers.c.name.in_(names),
                    timers.c.fired_at.is_(None),
                    timers.c.cancelled_at.is_(None),
                )
                .values(cancelled_at=recorded.recorded_at)
            )

    async def on_report_filed(
        self, session: AsyncSession, event: CloudEvent, report: ReportFiled
    ) -> None:
        incident = await self.store.locked_incident(session, report.incident_id)
        if incident is None:
            raise RejectEvent(f"report for unknown incident {report.incident_id}")
        facts = IncidentFacts.model_validate({**incident.facts, **report.changes})
        await session.execute(
            update(incidents)
            .where(incidents.c.id == report.incident_id)
            .values(facts=facts.model_dump(mode="json"))
        )
        incident = await self.store.locked_incident(session, report.incident_id)
        assert incident is not None
        evidence = report_evidence(self.store.policy, facts_of(incident), report.changes)
        for obligation in await self.store.meetable(session, report.incident_id):
            if is_met_by(self.store.policy, obligation.action, evidence):
                await self.store.meet(session, incident, obligation, report.filed_at, event.id)

    async def on_acknowledged(
        self, session: AsyncSession, event: CloudEvent, ack: NotificationAcknowledged
    ) -> None:
        """A "report to X" obligation is met when X acknowledges the alert."""
        incident = await self.store.locked_incident(session, ack.incident_id)
        if incident is None:
            return  # an alert this service did not ask for
        for obligation in await self.store.meetable(session, ack.incident_id):
            if obligation.id == ack.obligation_id and is_met_by(
                self.store.policy, obligation.action, Evidence("ack")
            ):
                await self.store.meet(session, incident, obligation, ack.acknowledged_at, event.id)
                await self.store.meet_grouped(
                    session, incident, obligation, ack.acknowledged_at, event.id
                )

    async def on_unacknowledged(
        self, session: AsyncSession, event: CloudEvent, gave_up: NotificationUnacknowledged
    ) -> None:
        """Nobody confirmed the alert: the next level up is told and supervises it."""
        incident = await self.store.locked_incident(session, gave_up.incident_id)
        if incident is None:
            return
        obligation = (
            await session.execute(
                select(obligations)
                .where(obligations.c.id == gave_up.obligation_id)
                .with_for_update()
            )
        ).first()
        if obligation is None or obligation.status != "PENDING":
            return
        if not lifecycle.is_open(LifecycleStatus(incident.status)) and not outlives_closure(
            self.store.policy, obligation.rule_id
        ):
            return
        await self.store.escalate_unacknowledged(
            session, incident, obligation, gave_up.given_up_at, event.id
        )
