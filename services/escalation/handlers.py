"""Event consumers of escalation: reports, actions, follow-ups and acknowledgements become
obligations and lifecycle changes. The rules decide (`rules.evaluate`, `rules.revise`); this
module only loads, stores and publishes (through `store.Store`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

from sqlalchemy import Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation.merging import MoveMade, merge_plan, restorations
from services.escalation.models import (
    drills,
    incidents,
    merge_moves,
    obligations,
    subject_signs,
    timers,
)
from services.escalation.rules import (
    OBLIGATION_NAMESPACE,
    Decision,
    Evidence,
    FactChangeKind,
    PriorSigns,
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
from services.escalation.store import (
    REPORTED,
    CarriedReport,
    Moving,
    Proof,
    Store,
    brief,
    facts_of,
    obligation_row,
    standing_duty,
)
from shared.domain import lifecycle, ownership
from shared.domain.vocabulary import (
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
from shared.kafka import EventHandler, HandlerTable, RecordPosition, RejectEvent, on_data
from shared.staging import write_deferred


@dataclass(frozen=True)
class FactChange:
    """A change of an incident's facts: a follow-up or correction, or another report of the
    same event, a merge or its undoing (R20). `words` say what changed of the facts rules read,
    `summary` tells it to the parties already alerted (R19); `stated`: the facts the report
    itself states, when it is the report of the party `by` (it may meet that party's duties)."""

    kind: FactChangeKind
    changes: Mapping[str, Any]
    at: datetime
    by: str
    change_id: UUID
    words: str
    summary: str
    stated: Mapping[str, Any] | None = None


def linking_change(
    kind: FactChangeKind,
    changes: Mapping[str, Any],
    previous: Mapping[str, Any],
    at: datetime,
    by: str,
    change_id: UUID,
    lead: str,
    stated: Mapping[str, Any] | None = None,
) -> FactChange:
    """A link, merge or unlinking (R20) as a change of facts: told as `lead` (what happened),
    then what it changed of the facts the rules read, if anything."""
    words = change_words(kind, changes, previous)
    summary = f"{lead}；{words}" if changes_rules(changes) else lead
    return FactChange(kind, changes, at, by, change_id, words, summary, stated)


def after_reports(handler: EventHandler) -> EventHandler:
    """`handler`, run once the reports carried before it in the batch are stored."""

    async def handled(session: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
        await write_deferred(session, REPORTED)
        await handler(session, event, position)

    return handled


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
                # The others read what the reports before them in the batch store: stored first.
                ActionRecorded.ce_type: after_reports(on_data(self.on_action)),
                ReportFiled.ce_type: after_reports(on_data(self.on_report_filed)),
                NotificationAcknowledged.ce_type: after_reports(on_data(self.on_acknowledged)),
                NotificationUnacknowledged.ce_type: after_reports(on_data(self.on_unacknowledged)),
                IncidentLinked.ce_type: after_reports(on_data(self.on_linked)),
                IncidentMerged.ce_type: after_reports(on_data(self.on_merged)),
                IncidentUnlinked.ce_type: after_reports(on_data(self.on_unlinked)),
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
            prepare=self.prepare_reports,
        )

    async def prepare_reports(self, session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        """A batch's reports ride its last statement (`store.CARRIED_REPORTS`), and R17's signs
        of every subject they name are read in one statement before (each report asked for its
        own); the batch's reports add theirs as they are stored."""
        self.store.carry_reports(session)
        subject_ids = [
            subject.id
            for event in events
            if isinstance(event.data, IncidentReported)
            for subject in event.data.facts.subjects
        ]
        if subject_ids:
            await self.store.known_signs(session, subject_ids, first=True)

    async def on_reported(
        self, session: AsyncSession, event: CloudEvent, report: IncidentReported
    ) -> None:
        facts = report.facts
        # Decided before the incident is stored, so its row carries the rules fired: one
        # statement, not an insert and an update.
        decision = evaluate(
            self.store.policy,
            await self.store.situation_of(
                session, report.incident_id, facts, report.reporter.party, report.reported_at
            ),
            Trigger("reported", report.reported_at, event.id, report.reporter.party),
            self.store.party_names,
        )
        incident_row = {
            "id": report.incident_id,
            "facts": facts.model_dump(mode="json"),
            # The reporting party is all the rules ask of a reporter: the name and phone
            # stay with intake, which seals the phone (least personal data here).
            "reporter": {"party": report.reporter.party},
            "status": LifecycleStatus.REPORTED.value,
            "drill": facts.drill,
            "policy_version": self.store.policy.version,
            "reported_at": report.reported_at,
            "fired_rules": sorted(set(decision.fired_rules)),
        }
        reported = IncidentStatusChanged(
            incident_id=report.incident_id,
            status=LifecycleStatus.REPORTED,
            previous_status=None,
            changed_at=report.reported_at,
            reason="incident.reported",
            drill=facts.drill,
        )
        if self.store.carries_reports(session):
            await self._carry_reported(session, event, report, decision, incident_row, reported)
            return
        incident = await self.store.store_reported(
            session, incident_row, decision.obligations, event.id
        )
        if incident is None:
            raise RejectEvent(f"incident {report.incident_id} was already reported")
        await self._remember(session, report.incident_id, facts, report.reported_at)
        await self.store.publish(session, report.incident_id, reported)
        await self.store.apply(session, incident, decision, event.id, incident.duties)

    async def _carry_reported(
        self,
        session: AsyncSession,
        event: CloudEvent,
        report: IncidentReported,
        decision: Decision,
        incident_row: dict[str, Any],
        reported: IncidentStatusChanged,
    ) -> None:
        """`on_reported` in a batch: the report rides the batch's last statement with what it
        starts (`store.CARRIED_REPORTS`), announced as the report alone announces it. An
        incident stored before fails that statement, and the batch is applied again one event
        at a time, where the report is refused."""
        facts, incident_id = report.facts, report.incident_id
        signs, drill = self._history(incident_id, facts, report.reported_at)
        carried = CarriedReport(
            incident=incident_row,
            duties=[obligation_row(incident_id, spec, event.id) for spec in decision.obligations],
            timers=[
                {
                    "id": uuid4(),
                    "incident_id": incident_id,
                    "name": timer.name,
                    "rule_id": timer.rule_id,
                    "fire_at": timer.fire_at,
                }
                for timer in decision.timers
            ],
            signs=signs,
            drill=drill,
        )
        self.store.signs_stored(session, signs)
        await self.store.publish(session, incident_id, reported)
        await self.store.carry_reported(session, carried, facts, decision)

    def _history(
        self, incident_id: UUID, facts: IncidentFacts, at: datetime
    ) -> tuple[list[PriorSigns], dict[str, Any] | None]:
        """What a report leaves for later rules to look back on: its signs per subject (R17)
        and its drill's row for the year (R16)."""
        signs = (
            [PriorSigns(incident_id, subject.id, at, facts.drill) for subject in facts.subjects]
            if facts.phase == Phase.SIGNS
            else []
        )
        if not facts.drill:
            return signs, None
        requirement = self.store.policy.drill_requirement
        return signs, {
            "incident_id": incident_id,
            "party": party_code(requirement.party, facts.township_code),
            "year": at.astimezone(self.store.policy.zone).year,
            "reported_at": at,
        }

    async def _remember(
        self, session: AsyncSession, incident_id: UUID, facts: IncidentFacts, at: datetime
    ) -> None:
        """The report's history (`_history`), stored at once."""
        signs, drill = self._history(incident_id, facts, at)
        if signs:
            await session.execute(
                insert(subject_signs)
                .values(
                    [
                        {
                            "subject_id": sign.subject_id,
                            "incident_id": sign.incident_id,
                            "reported_at": sign.reported_at,
                        }
                        for sign in signs
                    ]
                )
                .on_conflict_do_nothing()
            )
            self.store.signs_stored(session, signs)
        if drill is not None:
            await session.execute(insert(drills).values(**drill).on_conflict_do_nothing())

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
        reporter = party_name_zh(report.reporter.party, dict(self.store.party_names))
        words = change_words(report.kind, report.changes, report.previous)
        await self._change_facts(
            session,
            event,
            incident,
            FactChange(
                report.kind,
                report.changes,
                report.filed_at,
                report.reporter.party,
                report.report_id,
                words,
                # 续报将事态阶段由…改为…, or, when no fact the rules read changed, 提交续报.
                f"{reporter}{words}" if changes_rules(report.changes) else f"{reporter}提交{words}",
                stated=report.changes,
            ),
        )

    async def _change_facts(
        self, session: AsyncSession, event: CloudEvent, incident: Row, change: FactChange
    ) -> Row:
        """The facts change: news on the incident, the duties a report of its owner evidences
        are met, the rules run again when a fact they read changed (RULES.md: current facts),
        and everybody already alerted hears of it (R19). The incident row as it is after."""
        told = await self.store.alerted_parties(session, incident.id)
        facts = IncidentFacts.read({**incident.facts, **change.changes})
        await session.execute(
            update(incidents)
            .where(incidents.c.id == incident.id)
            .values(facts=facts.model_dump(mode="json"), drill=facts.drill)
        )
        await self._news(session, incident.id, change.at)
        incident = await self.store.locked_incident(session, incident.id)
        assert incident is not None
        # After a quiet spell this news is the first of the daily follow-ups asked again.
        await self._resume_follow_ups(session, incident, event.id, change.at)
        if change.stated is not None:
            evidence = report_evidence(
                self.store.policy, facts_of(incident), change.stated, change.by
            )
            proof = Proof(event.id, change.at, change.by)
            township = incident.facts["township_code"]
            for obligation in await self.store.meetable(session, incident.id):
                if is_met_by(self.store.policy, obligation, evidence, township):
                    await self.store.meet(session, incident, obligation, proof)
        if changes_rules(change.changes) and lifecycle.is_open(LifecycleStatus(incident.status)):
            await self._remember(session, incident.id, facts, change.at)
            if "drill" in change.changes and not facts.drill:
                # A drill corrected to real is no drill of its 司法所 (R16).
                await session.execute(delete(drills).where(drills.c.incident_id == incident.id))
            standing = await self.store.standing(session, incident.id)
            revision = revise(
                self.store.policy,
                await self.store.situation(session, incident),
                Trigger("changed", change.at, event.id, change.by, change.words),
                [standing_duty(row) for row in standing],
                await self.store.timers_started(session, incident.id),
                self.store.party_names,
            )
            await self.store.revise(session, incident, revision, standing, change.at, event.id)
        await self._tell_alerted(
            session,
            incident,
            "report_filed",
            change.kind,
            change.summary,
            told,
            change.by,
            change.at,
            change.change_id,
        )
        return incident

    async def on_linked(
        self, session: AsyncSession, event: CloudEvent, linked: IncidentLinked
    ) -> None:
        """R20: another source's first report of an open incident's event is a report of that
        incident, not a new one: it creates no duty of its own, meets its reporter's duties as
        that party's report would, and what it makes more severe revises the duties. Incidents
        people link stay two, each with its own duties."""
        incident = await self.store.locked_incident(session, linked.incident_id)
        if incident is None:
            if linked.report is None and not linked.changes:
                return  # a link that changes nothing of an incident this service never saw
            raise RejectEvent(f"link to unknown incident {linked.incident_id}")
        names = dict(self.store.party_names)
        stated = None
        if linked.report is not None:
            by = linked.report.reporter.party
            lead = f"{party_name_zh(by, names)}另行报告了同一事件，按R20作为本事件的报告"
            stated = linked.report.facts.model_dump(mode="json", exclude_none=True)
        elif linked.changes:
            by = linked.party or self.store.policy.correlation.rule_id
            lead = (
                f"{party_name_zh(by, names)}将事件{linked.linked_incident_id}"
                "与本事件关联为同一事件（R20）"
            )
        else:
            return  # two incidents, each with its own duties: nothing of either changes
        change = linking_change(
            "LINKED",
            linked.changes,
            linked.previous,
            linked.linked_at,
            by,
            linked.link_id,
            lead,
            stated,
        )
        await self._change_facts(session, event, incident, change)

    async def _both(
        self, session: AsyncSession, surviving_id: UUID, merged_id: UUID
    ) -> tuple[Row, Row]:
        """The two incidents of a merge, locked in the order of their ids (two merges never
        wait on each other), or the event is refused."""
        if surviving_id == merged_id:
            raise RejectEvent(f"incident {merged_id} cannot be merged into itself")
        locked = {}
        for incident_id in sorted((surviving_id, merged_id)):
            row = await self.store.locked_incident(session, incident_id)
            if row is None:
                raise RejectEvent(f"merge of unknown incident {incident_id}")
            locked[incident_id] = row
        return locked[surviving_id], locked[merged_id]

    async def on_merged(
        self, session: AsyncSession, event: CloudEvent, merged: IncidentMerged
    ) -> None:
        """R20: the merged incident's open duties move to the surviving one, or are waived
        when it has the same duty already; the merged incident rests (no deadline, timer,
        quiet spell or omission of its own) until the merge is undone."""
        surviving, absorbed = await self._both(
            session, merged.incident_id, merged.merged_incident_id
        )
        if absorbed.merged_into is not None:
            raise RejectEvent(
                f"incident {absorbed.id} is merged into {absorbed.merged_into} already"
            )
        names = dict(self.store.party_names)
        change = linking_change(
            "MERGED",
            merged.changes,
            merged.previous,
            merged.merged_at,
            merged.party,
            event.id,
            f"{party_name_zh(merged.party, names)}将事件{absorbed.id}并入本事件（R20）",
        )
        surviving = await self._change_facts(session, event, surviving, change)
        absorbed_duties = await self.store.standing(session, absorbed.id)
        moves = merge_plan(
            merged.link_id,
            [standing_duty(row) for row in absorbed_duties],
            [standing_duty(row) for row in await self.store.standing(session, surviving.id)],
        )
        by_id = {row.id: row for row in absorbed_duties}
        for move in moves:
            duty = by_id[move.obligation_id]
            if move.outcome == "DOUBLED":
                await self.store.waive(
                    session,
                    absorbed,
                    duty,
                    f"与并入的事件{surviving.id}同一职责重复（R20）",
                    merged.merged_at,
                )
            else:
                await self.store.move(
                    session,
                    absorbed,
                    duty,
                    surviving,
                    Moving(
                        move.counterpart,
                        move.status,
                        move.escalated_from,
                        f"{duty.explanation}（R20：事件{absorbed.id}并入本事件，本项随之转来）",
                        f"事件已并入{surviving.id}，本项转由该事件办理（R20）",
                    ),
                    merged.merged_at,
                    event.id,
                )
            await session.execute(
                insert(merge_moves)
                .values(
                    link_id=merged.link_id,
                    obligation_id=duty.id,
                    merged_incident_id=absorbed.id,
                    surviving_incident_id=surviving.id,
                    outcome=move.outcome,
                    counterpart_id=move.counterpart,
                    status=move.status,
                )
                .on_conflict_do_nothing()
            )
        await session.execute(
            update(incidents).where(incidents.c.id == absorbed.id).values(merged_into=surviving.id)
        )

    async def on_unlinked(
        self, session: AsyncSession, event: CloudEvent, unlinked: IncidentUnlinked
    ) -> None:
        """R20 undone: a merged incident gets back what the merge moved or waived (duties met
        meanwhile stay met: history is not rewritten) and runs again on its own; the surviving
        incident's facts are as they were before (`changes`), its duties revised."""
        names = dict(self.store.party_names)
        change = linking_change(
            "UNLINKED",
            unlinked.changes,
            unlinked.previous,
            unlinked.unlinked_at,
            unlinked.party,
            event.id,
            f"{party_name_zh(unlinked.party, names)}撤销了事件{unlinked.linked_incident_id}"
            f"与本事件的{'合并' if unlinked.was == 'MERGE' else '关联'}（R20）",
        )
        if unlinked.was == "LINK":
            if not unlinked.changes:
                return
            incident = await self.store.locked_incident(session, unlinked.incident_id)
            if incident is None:
                raise RejectEvent(f"unlink of unknown incident {unlinked.incident_id}")
            await self._change_facts(session, event, incident, change)
            return
        surviving, absorbed = await self._both(
            session, unlinked.incident_id, unlinked.linked_incident_id
        )
        await self._restore(session, event, surviving, absorbed, unlinked)
        await session.execute(
            update(incidents).where(incidents.c.id == absorbed.id).values(merged_into=None)
        )
        # Its deadlines run again: the deadline worker looks at them now, not at its next one.
        await self.store.deadlines.notify(session)
        # On its own again from now: R9's quiet spell counts from here, not from before.
        await self._news(session, absorbed.id, unlinked.unlinked_at)
        await self._change_facts(session, event, surviving, change)

    async def _restore(
        self,
        session: AsyncSession,
        event: CloudEvent,
        surviving: Row,
        absorbed: Row,
        unlinked: IncidentUnlinked,
    ) -> None:
        made = (
            await session.execute(
                select(merge_moves).where(
                    merge_moves.c.link_id == unlinked.link_id, merge_moves.c.restored_at.is_(None)
                )
            )
        ).all()
        duties = {
            row.id: row
            for incident in (surviving, absorbed)
            for row in await self.store.standing(session, incident.id)
        }
        given_back = restorations(
            unlinked.link_id,
            [
                MoveMade(
                    row.obligation_id,
                    row.outcome,
                    row.counterpart_id,
                    row.status,
                    duties[row.counterpart_id].status,
                    duties[row.obligation_id].escalated_from,
                )
                for row in sorted(made, key=lambda row: duties[row.obligation_id].created_at)
            ],
        )
        originals = {row.counterpart_id: row.obligation_id for row in made}
        for restoration in given_back:
            source = duties[restoration.copy_of]
            original = duties[originals.get(restoration.copy_of, restoration.copy_of)]
            await self.store.move(
                session,
                surviving if restoration.withdraw else absorbed,
                source,
                absorbed,
                Moving(
                    restoration.new_id,
                    restoration.status,
                    restoration.escalated_from,
                    f"{original.explanation}（R20：撤销与事件{surviving.id}的合并，本项恢复）",
                    f"撤销合并，本项转回事件{absorbed.id}办理（R20）",
                ),
                unlinked.unlinked_at,
                event.id,
            )
        await session.execute(
            update(merge_moves)
            .where(merge_moves.c.link_id == unlinked.link_id, merge_moves.c.restored_at.is_(None))
            .values(restored_at=unlinked.unlinked_at)
        )

    async def _live(self, session: AsyncSession, obligation_id: UUID) -> tuple[Row, Row] | None:
        """The obligation with this id where it lives now, and its incident, both locked: a duty
        a merge moved (R20) is followed to the obligation it became, so an acknowledgement of
        its alert under the old id still reaches it."""
        seen: set[UUID] = set()
        wanted = obligation_id
        while wanted not in seen:
            seen.add(wanted)
            row = (
                await session.execute(select(obligations).where(obligations.c.id == wanted))
            ).first()
            if row is None:
                return None
            if row.moved_to is not None:
                wanted = row.moved_to
                continue
            # The incident is locked before its obligations (as everywhere); then the duty is
            # read again, for a merge may have moved it in between.
            incident = await self.store.locked_incident(session, row.incident_id)
            if incident is None:
                return None
            locked = (
                await session.execute(
                    select(obligations).where(obligations.c.id == wanted).with_for_update()
                )
            ).one()
            if locked.moved_to is None:
                return incident, locked
            seen.discard(wanted)
            wanted = locked.moved_to
        return None

    async def on_acknowledged(
        self, session: AsyncSession, event: CloudEvent, ack: NotificationAcknowledged
    ) -> None:
        """A duty to inform X is met when X acknowledges the alert; never a duty to act."""
        live = await self._live(session, ack.obligation_id)
        if live is None:
            return  # an alert this service did not ask for
        incident, acknowledged = live
        proof = Proof(event.id, ack.acknowledged_at, ack.party)
        township = incident.facts["township_code"]
        for obligation in await self.store.meetable(session, incident.id):
            if obligation.id == acknowledged.id and is_met_by(
                self.store.policy, obligation, Evidence("ack", party=ack.party), township
            ):
                await self.store.meet(session, incident, obligation, proof)
                await self.store.meet_grouped(session, incident, obligation, proof)

    async def on_unacknowledged(
        self, session: AsyncSession, event: CloudEvent, gave_up: NotificationUnacknowledged
    ) -> None:
        """Nobody confirmed the alert: the next level up is told and supervises it."""
        live = await self._live(session, gave_up.obligation_id)
        if live is None:
            return
        incident, obligation = live
        if obligation.status != "PENDING":
            return
        if not lifecycle.is_open(LifecycleStatus(incident.status)) and not outlives_closure(
            self.store.policy, obligation.rule_id
        ):
            return
        await self.store.escalate_unacknowledged(
            session, incident, obligation, gave_up.given_up_at, event.id
        )
