"""Event consumers of escalation: reports, actions, follow-ups and acknowledgements become
obligations and lifecycle changes. The rules decide (`rules.evaluate`, `rules.revise`); this
module only loads, stores and publishes (through `store.Store`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid5

from sqlalchemy import Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation.models import drills, incidents, obligations, subject_signs, timers
from services.escalation.rules import (
    OBLIGATION_NAMESPACE,
    Evidence,
    Trigger,
    change_words,
    changes_rules,
    evaluate,
    informing,
    is_met_by,
    is_waived_by,
    outlives_closure,
    report_evidence,
    revise,
    update_recipients,
)
from services.escalation.store import Proof, Store, brief, facts_of, standing_duty
from shared import lifecycle, ownership
from shared.domain import (
    ACTION_NAMES_ZH,
    ActionCode,
    LifecycleStatus,
    Phase,
    party_code,
    party_name_zh,
)
from shared.events import CloudEvent
from shared.events.models import (
    ActionRecorded,
    ActionRejected,
    IncidentFacts,
    IncidentLinked,
    IncidentMerged,
    IncidentReported,
    IncidentStatusChanged,
    IncidentUnlinked,
    IncidentUpdated,
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
                    IncidentLinked.ce_type,
                    IncidentMerged.ce_type,
                    IncidentUnlinked.ce_type,
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
                last_news_at=report.reported_at,
            )
            .on_conflict_do_nothing()
            .returning(incidents.c.id)
        )
        if stored.first() is None:
            raise RejectEvent(f"incident {report.incident_id} was already reported")
        await self._remember(session, report.incident_id, facts, report.reported_at)
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

    async def _remember(
        self, session: AsyncSession, incident_id: UUID, facts: IncidentFacts, at: datetime
    ) -> None:
        """History later rules look back on: signs per subject (R17), drills per year (R16)."""
        if facts.phase == Phase.SIGNS and facts.subjects:
            await session.execute(
                insert(subject_signs)
                .values(
                    [
                        {"subject_id": subject.id, "incident_id": incident_id, "reported_at": at}
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
                    incident_id=incident_id,
                    party=party_code(requirement.party, facts.township_code),
                    year=at.astimezone(self.store.policy.zone).year,
                    reported_at=at,
                )
                .on_conflict_do_nothing()
            )

    def _refusal(self, incident: Row, recorded: ActionRecorded) -> str | None:
        """Why the action is not its recorder's to record (RULES.md: every party acts for
        itself; closing), or None. Intake refuses the same at once; this is the last word."""
        recording = ownership.Recording(
            recorded.party, recorded.action, recorded.on_behalf_of, recorded.reason, recorded.to
        )
        refused = ownership.refusal(recording, incident.facts["township_code"])
        if refused is not None:
            return refused[1]
        return ownership.closing_refusal(
            recording, incident.facts["category"], incident.found_at is not None
        )

    async def _reject(
        self, session: AsyncSession, incident: Row, recorded: ActionRecorded, reason: str
    ) -> None:
        await self.store.publish(
            session,
            recorded.incident_id,
            ActionRejected(
                incident_id=recorded.incident_id,
                action_id=recorded.action_id,
                action=recorded.action,
                status=LifecycleStatus(incident.status),
                reason=reason,
                drill=incident.drill,
                party=recorded.party,
                recorded_at=recorded.recorded_at,
            ),
        )

    async def on_action(
        self, session: AsyncSession, event: CloudEvent, recorded: ActionRecorded
    ) -> None:
        incident = await self.store.locked_incident(session, recorded.incident_id)
        if incident is None:
            raise RejectEvent(f"action for unknown incident {recorded.incident_id}")
        current = LifecycleStatus(incident.status)
        refused = self._refusal(incident, recorded)
        transition = lifecycle.apply(current, recorded.action)
        if refused is not None or not transition.accepted:
            await self._reject(session, incident, recorded, refused or transition.reason)
            return
        # Told of the change before it happens: whoever this action newly alerts is told by
        # that alert, not by an update.
        informs = informing(self.store.policy, f"action:{recorded.action}") is not None
        told = await self.store.alerted_parties(session, incident.id) if informs else set()
        await self.store.change_status(session, incident, transition, recorded.recorded_at)
        await self._news(session, incident.id, recorded.recorded_at, recorded.action)
        incident = await self.store.locked_incident(session, recorded.incident_id)
        assert incident is not None
        acting = recorded.on_behalf_of or recorded.party
        evidence = Evidence("action", recorded.action, party=acting, to=recorded.to)
        proof = Proof(
            event.id,
            recorded.recorded_at,
            recorded.party,
            recorded.on_behalf_of,
            recorded.occurred_at,
        )
        township = incident.facts["township_code"]
        for obligation in await self.store.meetable(session, recorded.incident_id):
            if is_met_by(self.store.policy, obligation, evidence, township):
                await self.store.meet(session, incident, obligation, proof)
            elif obligation.status == "PENDING" and is_waived_by(
                self.store.policy, obligation.action, recorded.action
            ):
                await self.store.waive(
                    session,
                    incident,
                    obligation,
                    f"{party_name_zh(recorded.party, dict(self.store.party_names))}已记录"
                    f"「{ACTION_NAMES_ZH[recorded.action]}」，不再需要",
                    recorded.recorded_at,
                )
        if transition.changed and transition.status == LifecycleStatus.CLOSED:
            await self.store.close_out(session, incident, recorded.recorded_at)
        await self._cancel_timers(session, incident.id, recorded)
        await self._resume_follow_ups(session, incident, event.id, recorded.recorded_at)
        await self._tell_alerted(
            session,
            incident,
            f"action:{recorded.action}",
            recorded.action,
            f"{party_name_zh(recorded.party, dict(self.store.party_names))}记录"
            f"「{ACTION_NAMES_ZH[recorded.action]}」",
            told,
            recorded.party,
            recorded.recorded_at,
            recorded.action_id,
        )
        decision = evaluate(
            self.store.policy,
            await self.store.situation(session, incident),
            Trigger(f"action:{recorded.action}", recorded.recorded_at, event.id, recorded.party),
            self.store.party_names,
        )
        await self.store.apply(session, incident, decision, event.id)

    async def _news(
        self, session: AsyncSession, incident_id: UUID, at: datetime, action: str | None = None
    ) -> None:
        """Something new on the incident: R9's quiet spell, if any, is over."""
        values: dict[str, object] = {"last_news_at": at}
        if action == ActionCode.FOUND:
            values["found_at"] = at
        await session.execute(update(incidents).where(incidents.c.id == incident_id).values(values))

    async def _resume_follow_ups(
        self, session: AsyncSession, incident: Row, event_id: UUID, at: datetime
    ) -> None:
        """After a quiet spell (R9), the next news asks for daily follow-ups again."""
        if incident.quiet_since is None:
            return
        await session.execute(
            update(incidents).where(incidents.c.id == incident.id).values(quiet_since=None)
        )
        if not lifecycle.is_open(LifecycleStatus(incident.status)):
            return
        decision = evaluate(
            self.store.policy,
            await self.store.situation(session, incident),
            Trigger("reported", at, event_id, words="事件长期无新情况后又有新情况"),
            self.store.party_names,
        )
        recurring = [
            spec
            for spec in decision.obligations
            if self.store.policy.actions[spec.action].recurs is not None
        ]
        await self.store.add_obligations(session, incident, recurring, event_id)

    async def _tell_alerted(
        self,
        session: AsyncSession,
        incident: Row,
        trigger: str,
        about: str,
        summary: str,
        told: set[str],
        changed_by: str,
        at: datetime,
        change_id: UUID,
    ) -> None:
        """R19: everybody already alerted about the incident hears of the change. `incident`
        is the row as the change left it."""
        rule = informing(self.store.policy, trigger)
        recipients = update_recipients(
            self.store.policy,
            trigger,
            told,
            incident.reporter["party"],
            changed_by,
            incident.facts["township_code"],
        )
        if rule is None or not recipients:
            return
        await self.store.publish(
            session,
            incident.id,
            IncidentUpdated(
                incident_id=incident.id,
                rule_id=rule.id,
                about=about,
                summary=summary,
                recipients=recipients,
                changed_by=changed_by,
                changed_at=at,
                incident=brief(facts_of(incident)),
                status=LifecycleStatus(incident.status),
                update_id=uuid5(OBLIGATION_NAMESPACE, f"update:{change_id}"),
            ),
        )

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
        told = await self.store.alerted_parties(session, incident.id)
        facts = IncidentFacts.model_validate({**incident.facts, **report.changes})
        await session.execute(
            update(incidents)
            .where(incidents.c.id == report.incident_id)
            .values(facts=facts.model_dump(mode="json"), drill=facts.drill)
        )
        await self._news(session, incident.id, report.filed_at)
        incident = await self.store.locked_incident(session, report.incident_id)
        assert incident is not None
        # After a quiet spell this report is the first of the daily follow-ups asked again.
        await self._resume_follow_ups(session, incident, event.id, report.filed_at)
        evidence = report_evidence(
            self.store.policy, facts_of(incident), report.changes, report.reporter.party
        )
        proof = Proof(event.id, report.filed_at, report.reporter.party)
        township = incident.facts["township_code"]
        for obligation in await self.store.meetable(session, report.incident_id):
            if is_met_by(self.store.policy, obligation, evidence, township):
                await self.store.meet(session, incident, obligation, proof)
        words = change_words(report.kind, report.changes, report.previous)
        if changes_rules(report.changes) and lifecycle.is_open(LifecycleStatus(incident.status)):
            await self._remember(session, incident.id, facts, report.filed_at)
            if "drill" in report.changes and not facts.drill:
                # A drill corrected to real is no drill of its 司法所 (R16).
                await session.execute(delete(drills).where(drills.c.incident_id == incident.id))
            standing = await self.store.standing(session, incident.id)
            revision = revise(
                self.store.policy,
                await self.store.situation(session, incident),
                Trigger("changed", report.filed_at, event.id, report.reporter.party, words),
                [standing_duty(row) for row in standing],
                await self.store.timers_started(session, incident.id),
                self.store.party_names,
            )
            await self.store.revise(
                session, incident, revision, standing, report.filed_at, event.id
            )
        reporter = party_name_zh(report.reporter.party, dict(self.store.party_names))
        await self._tell_alerted(
            session,
            incident,
            "report_filed",
            report.kind,
            # 续报将事态阶段由…改为…, or, when no fact the rules read changed, 提交续报.
            f"{reporter}{words}" if changes_rules(report.changes) else f"{reporter}提交{words}",
            told,
            report.reporter.party,
            report.filed_at,
            report.report_id,
        )

    async def on_acknowledged(
        self, session: AsyncSession, event: CloudEvent, ack: NotificationAcknowledged
    ) -> None:
        """A duty to inform X is met when X acknowledges the alert; never a duty to act."""
        incident = await self.store.locked_incident(session, ack.incident_id)
        if incident is None:
            return  # an alert this service did not ask for
        proof = Proof(event.id, ack.acknowledged_at, ack.party)
        township = incident.facts["township_code"]
        for obligation in await self.store.meetable(session, ack.incident_id):
            if obligation.id == ack.obligation_id and is_met_by(
                self.store.policy, obligation, Evidence("ack", party=ack.party), township
            ):
                await self.store.meet(session, incident, obligation, proof)
                await self.store.meet_grouped(session, incident, obligation, proof)

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
