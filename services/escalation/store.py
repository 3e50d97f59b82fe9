"""The escalation service's writes: obligations, timers and status, each with its events.

Used by the event handlers and the deadline worker alike, always inside the caller's
transaction, so a decision and the events announcing it commit together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Row, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation.models import incidents, obligations, timers
from services.escalation.rules import (
    Decision,
    ObligationSpec,
    ObligationView,
    Policy,
    PriorSigns,
    Revision,
    Situation,
    StandingDuty,
    caused_by,
    deadline_text,
    gone_quiet,
    grouped_into_alert,
    ladder_step,
    may_still_be_met,
    met_status,
    outlives_closure,
    recurrence,
    recurring_actions,
)
from shared.domain import lifecycle
from shared.domain.vocabulary import LifecycleStatus, PartyKind, party_name_zh
from shared.driver import DriverRow, fetch
from shared.events import CloudEvent
from shared.events.models import (
    DeadlineMissed,
    EventData,
    IncidentBrief,
    IncidentFacts,
    IncidentStatusChanged,
    IncidentWentQuiet,
    ObligationCreated,
    ObligationMet,
    ObligationOmitted,
    ObligationWaived,
)
from shared.jsontext import json_text
from shared.messaging import Outbox
from shared.pgnotify import Nudge
from shared.staging import carry, of_transaction
from shared.telemetry import annotate, current_trace_headers

log = logging.getLogger(__name__)

SOURCE = "escalation"
DEADLINES_CHANNEL = "escalation_deadlines"


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


def facts_of(incident: Row) -> IncidentFacts:
    return IncidentFacts.read(incident.facts)


def view_of(obligation: Row, township_code: str) -> ObligationView:
    return ObligationView(
        id=obligation.id,
        incident_id=obligation.incident_id,
        rule_id=obligation.rule_id,
        plan_section=obligation.plan_section,
        party=obligation.party,
        action=obligation.action,
        action_text=obligation.action_text,
        deadline_name=obligation.deadline_name,
        due_at=obligation.due_at,
        drill=obligation.drill,
        township_code=township_code,
    )


def standing_duty(obligation: Row) -> StandingDuty:
    return StandingDuty(
        id=obligation.id,
        rule_id=obligation.rule_id,
        party=obligation.party,
        action=obligation.action,
        status=obligation.status,
        drill=obligation.drill,
        escalated_from=obligation.escalated_from,
    )


@dataclass(frozen=True)
class Proof:
    """What met a duty: the event, when the system received it (lateness is measured from
    this), whose record it was, and the time its recorder asserts (evidence only)."""

    event_id: UUID
    at: datetime
    party: str | None = None
    on_behalf_of: str | None = None
    asserted_at: datetime | None = None


@dataclass(frozen=True)
class Moving:
    """How a duty moves to another incident (R20): its new id, status, supervision and
    explanation there, and why the old one is waived."""

    new_id: UUID
    status: str
    escalated_from: UUID | None
    explanation: str
    waived_reason: str


STORE_OBLIGATIONS = insert(obligations).on_conflict_do_nothing().returning(obligations.c.id)
# The columns of obligations a decision's duties fill, as `obligation_row` names them.
DUTY_NAMES = (
    "id",
    "party",
    "action",
    "action_text",
    "rule_id",
    "plan_section",
    "deadline_name",
    "due_at",
    "explanation",
    "trigger",
    "notify",
    "drill",
    "escalated_from",
    "owner",
)
DUTY_COLUMNS = ", ".join(DUTY_NAMES)
DUTY_VALUES = ", ".join(f"duty.{name}" for name in DUTY_NAMES)
# A reported incident and its first duties, in one statement (a report's answer was two: the
# incident, then its duties): the incident unless it was reported already (then nothing), and
# the duties decided for it (one the same cause produced already is not stored again).
# The result: the incident as stored, and the ids of the duties stored (`duties`).
STORE_REPORTED = text(
    "WITH incident AS (INSERT INTO escalation.incidents (id, facts, reporter, status, drill,"
    " policy_version, reported_at, last_news_at, fired_rules)"
    " VALUES (:id, CAST(:facts AS jsonb), CAST(:reporter AS jsonb), :status, :drill,"
    " :policy_version, :reported_at, :reported_at, CAST(:fired_rules AS varchar(16)[]))"
    " ON CONFLICT DO NOTHING RETURNING *),"
    f" duties AS (INSERT INTO escalation.obligations (incident_id, source_event_id, status,"
    f" {DUTY_COLUMNS}) SELECT incident.id, :source_event_id, 'PENDING', {DUTY_VALUES}"
    " FROM incident, unnest(CAST(:duty_id AS uuid[]), CAST(:duty_party AS text[]),"
    " CAST(:duty_action AS text[]), CAST(:duty_action_text AS text[]),"
    " CAST(:duty_rule_id AS text[]), CAST(:duty_plan_section AS text[]),"
    " CAST(:duty_deadline_name AS text[]), CAST(:duty_due_at AS timestamptz[]),"
    " CAST(:duty_explanation AS text[]), CAST(:duty_trigger AS text[]),"
    " CAST(:duty_notify AS boolean[]), CAST(:duty_drill AS boolean[]),"
    " CAST(:duty_escalated_from AS uuid[]), CAST(:duty_owner AS text[]))"
    f" WITH ORDINALITY AS duty({DUTY_COLUMNS}, position) ORDER BY duty.position"
    " ON CONFLICT DO NOTHING RETURNING id)"
    " SELECT incident.*, ARRAY(SELECT id FROM duties) AS duties FROM incident"
)


# A batch's reports, stored with what they start by the batch's last statement (`carry`):
# each incident with its first duties, the rules it fired and their timers, its signs (R17) and
# its drill (R16), where each report was a statement of its own, then one for each of the
# timers, signs and drills. A report stored before (another event of the same incident) fails
# the statement, and the batch is applied again one event at a time, where the report is
# refused as before (`STORE_REPORTED`). Every array is one row per incident, or per duty,
# timer or sign; rule ids and subjects travel as text. The names are apart from the outbox's
# and the inbox claim's, whose statement this one rides.
REPORTED = "escalation.reported"
CARRIED_REPORTS = (
    "reported_incidents AS (INSERT INTO escalation.incidents (id, facts, reporter, status,"
    " drill, policy_version, reported_at, last_news_at, fired_rules)"
    " SELECT id, CAST(facts AS jsonb), CAST(reporter AS jsonb), status, drill, policy_version,"
    " reported_at, reported_at, CAST(string_to_array(fired_rules, ',') AS varchar(16)[])"
    " FROM unnest(CAST(:reported_id AS uuid[]), CAST(:reported_facts AS text[]),"
    " CAST(:reported_reporter AS text[]), CAST(:reported_status AS text[]),"
    " CAST(:reported_drill AS boolean[]), CAST(:reported_policy_version AS text[]),"
    " CAST(:reported_at AS timestamptz[]), CAST(:reported_fired_rules AS text[]))"
    " WITH ORDINALITY AS incident(id, facts, reporter, status, drill, policy_version,"
    " reported_at, fired_rules, position) ORDER BY position),"
    f" reported_duties AS (INSERT INTO escalation.obligations (incident_id, source_event_id,"
    f" status, {DUTY_COLUMNS}) SELECT duty.incident_id, duty.source_event_id, 'PENDING',"
    f" {DUTY_VALUES}"
    " FROM unnest(CAST(:reported_duty_incident_id AS uuid[]),"
    " CAST(:reported_duty_source_event_id AS uuid[]), CAST(:reported_duty_id AS uuid[]),"
    " CAST(:reported_duty_party AS text[]), CAST(:reported_duty_action AS text[]),"
    " CAST(:reported_duty_action_text AS text[]), CAST(:reported_duty_rule_id AS text[]),"
    " CAST(:reported_duty_plan_section AS text[]),"
    " CAST(:reported_duty_deadline_name AS text[]),"
    " CAST(:reported_duty_due_at AS timestamptz[]),"
    " CAST(:reported_duty_explanation AS text[]), CAST(:reported_duty_trigger AS text[]),"
    " CAST(:reported_duty_notify AS boolean[]), CAST(:reported_duty_drill AS boolean[]),"
    " CAST(:reported_duty_escalated_from AS uuid[]), CAST(:reported_duty_owner AS text[]))"
    f" WITH ORDINALITY AS duty(incident_id, source_event_id, {DUTY_COLUMNS}, position)"
    " ORDER BY duty.position),"
    " reported_timers AS (INSERT INTO escalation.timers (id, incident_id, name, rule_id,"
    " fire_at) SELECT * FROM unnest(CAST(:reported_timer_id AS uuid[]),"
    " CAST(:reported_timer_incident_id AS uuid[]), CAST(:reported_timer_name AS text[]),"
    " CAST(:reported_timer_rule_id AS text[]), CAST(:reported_timer_fire_at AS timestamptz[]))),"
    " reported_signs AS (INSERT INTO escalation.subject_signs (subject_id, incident_id,"
    " reported_at) SELECT * FROM unnest(CAST(:reported_sign_subject_id AS text[]),"
    " CAST(:reported_sign_incident_id AS uuid[]),"
    " CAST(:reported_sign_reported_at AS timestamptz[])) ON CONFLICT DO NOTHING),"
    " reported_drills AS (INSERT INTO escalation.drills (incident_id, party, year, reported_at)"
    " SELECT * FROM unnest(CAST(:reported_drill_incident_id AS uuid[]),"
    " CAST(:reported_drill_party AS text[]), CAST(:reported_drill_year AS int[]),"
    " CAST(:reported_drill_reported_at AS timestamptz[])) ON CONFLICT DO NOTHING)"
)
# What a batch's transaction keeps (`of_transaction`): whether its reports are carried.
REPORTS_CARRIED = "escalation.reports_carried"


@dataclass
class ReportsCarried:
    """Whether the transaction carries its reports (`CARRIED_REPORTS`): a consumer's batch,
    prepared (`EscalationHandlers.prepare_reports`); an event applied alone stores its report at
    once."""

    carried: bool = False


@dataclass(frozen=True)
class CarriedReport:
    """One report as the batch's last statement stores it (`CARRIED_REPORTS`)."""

    incident: Mapping[str, Any]
    duties: list[dict[str, Any]]
    timers: list[dict[str, Any]]
    signs: list[PriorSigns]
    drill: dict[str, Any] | None


def carried_reports(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`CARRIED_REPORTS` and its arrays, for the reports carried (`{"report": CarriedReport}`)."""
    reports: list[CarriedReport] = [row["report"] for row in rows]
    incidents = [report.incident for report in reports]
    duties = [duty for report in reports for duty in report.duties]
    timer_rows = [timer for report in reports for timer in report.timers]
    signs = [sign for report in reports for sign in report.signs]
    drill_rows = [report.drill for report in reports if report.drill is not None]
    return CARRIED_REPORTS, {
        "reported_id": [incident["id"] for incident in incidents],
        "reported_facts": [json_text(incident["facts"]) for incident in incidents],
        "reported_reporter": [json_text(incident["reporter"]) for incident in incidents],
        "reported_status": [incident["status"] for incident in incidents],
        "reported_drill": [incident["drill"] for incident in incidents],
        "reported_policy_version": [incident["policy_version"] for incident in incidents],
        "reported_at": [incident["reported_at"] for incident in incidents],
        "reported_fired_rules": [",".join(incident["fired_rules"]) for incident in incidents],
        "reported_duty_incident_id": [duty["incident_id"] for duty in duties],
        "reported_duty_source_event_id": [duty["source_event_id"] for duty in duties],
        **{f"reported_duty_{name}": [duty[name] for duty in duties] for name in DUTY_NAMES},
        **{
            f"reported_timer_{name}": [timer[name] for timer in timer_rows]
            for name in ("id", "incident_id", "name", "rule_id", "fire_at")
        },
        "reported_sign_subject_id": [sign.subject_id for sign in signs],
        "reported_sign_incident_id": [sign.incident_id for sign in signs],
        "reported_sign_reported_at": [sign.reported_at for sign in signs],
        **{
            f"reported_drill_{name}": [drill[name] for drill in drill_rows]
            for name in ("incident_id", "party", "year", "reported_at")
        },
    }


# R17: the signs of subjects, read once for a batch's reports (`Store.known_signs`); a constant
# text, prepared once, where the list of subjects made a statement of its own for each length.
SUBJECTS_SIGNS = text(
    "SELECT sign.incident_id, sign.subject_id, sign.reported_at, incident.drill"
    " FROM escalation.subject_signs AS sign"
    " JOIN escalation.incidents AS incident ON incident.id = sign.incident_id"
    " WHERE sign.subject_id = ANY(CAST(:subject_ids AS text[]))"
)
# What a transaction keeps (`of_transaction`): the signs it knows of (`KnownSigns`).
KNOWN_SIGNS = "escalation.known_signs"


@dataclass
class KnownSigns:
    """The signs (R17) of some subjects as one transaction sees them: those it read, with those
    its own reports stored since. Every report of a batch asks about its subjects; read once
    for all of them, each report then finds its answer here, the batch's earlier reports too."""

    subjects: set[str] = field(default_factory=set)
    signs: dict[tuple[str, UUID], PriorSigns] = field(default_factory=dict)

    def unread(self, subject_ids: Iterable[str]) -> list[str]:
        """The subjects whose signs are not all here yet."""
        return sorted(set(subject_ids) - self.subjects)

    def read(self, subject_ids: Iterable[str], signs: Iterable[PriorSigns]) -> None:
        """All the signs of `subject_ids`, as read."""
        self.subjects.update(subject_ids)
        self.stored(signs)

    def stored(self, signs: Iterable[PriorSigns]) -> None:
        """Signs the transaction stored (a subject's sign is stored once per incident)."""
        for sign in signs:
            self.signs.setdefault((sign.subject_id, sign.incident_id), sign)

    def of(self, subject_ids: Iterable[str]) -> tuple[PriorSigns, ...]:
        """The signs of the subjects, in the order they were reported."""
        wanted = set(subject_ids)
        return tuple(
            sorted(
                (sign for sign in self.signs.values() if sign.subject_id in wanted),
                key=lambda sign: (sign.reported_at, str(sign.incident_id), sign.subject_id),
            )
        )


def obligation_row(
    incident_id: UUID, spec: ObligationSpec, source_event_id: UUID, **moved: Any
) -> dict[str, Any]:
    """The obligation's columns; `moved`: status and the columns of a duty moved from another
    incident (R20)."""
    return {
        "id": spec.id,
        "incident_id": incident_id,
        "party": spec.party,
        "action": spec.action,
        "action_text": spec.action_text,
        "rule_id": spec.rule_id,
        "plan_section": spec.plan_section,
        "deadline_name": spec.deadline_name,
        "due_at": spec.due_at,
        "explanation": spec.explanation,
        "trigger": spec.trigger,
        "notify": spec.notify,
        "drill": spec.drill,
        "escalated_from": spec.escalated_from,
        "owner": spec.owner,
        "source_event_id": source_event_id,
        "status": "PENDING",
        **moved,
    }


@dataclass(frozen=True)
class Store:
    policy: Policy
    outbox: Outbox
    party_names: Mapping[str, str]
    # Wakes the deadline worker for new and returning deadlines: the process's own, while it
    # runs (`escalation.app`), else every replica's by NOTIFY.
    deadlines: Nudge = field(default_factory=lambda: Nudge(DEADLINES_CHANNEL))

    async def publish(self, session: AsyncSession, incident_id: UUID, *data: EventData) -> None:
        # One context for all of them: read once, where each event read it again (a decision's
        # seven duties, docs/performance.md, item 109).
        headers = current_trace_headers()
        await self.outbox.add(
            session,
            *(CloudEvent.new(SOURCE, item, incident_id, dict(headers)) for item in data),
        )

    async def locked_incident(
        self, session: AsyncSession, incident_id: UUID, *, skip_locked: bool = False
    ) -> Row | None:
        """The incident row, locked; with `skip_locked`, None while another holds it."""
        return (
            await session.execute(
                select(incidents)
                .where(incidents.c.id == incident_id)
                .with_for_update(skip_locked=skip_locked)
            )
        ).first()

    async def situation(self, session: AsyncSession, incident: Row) -> Situation:
        return await self.situation_of(
            session,
            incident.id,
            facts_of(incident),
            incident.reporter["party"],
            incident.reported_at,
            frozenset(incident.fired_rules),
        )

    async def situation_of(
        self,
        session: AsyncSession,
        incident_id: UUID,
        facts: IncidentFacts,
        reporter_party: str,
        reported_at: datetime,
        fired_rules: frozenset[str] = frozenset(),
    ) -> Situation:
        """What the rules see of an incident: its facts and the signs (R17) of its subjects (the
        rules look at those of other incidents). A report's situation is known before its row
        is stored."""
        subject_ids = [subject.id for subject in facts.subjects]
        known = await self.known_signs(session, subject_ids)
        return Situation(
            incident_id=incident_id,
            facts=facts,
            reporter_party=reporter_party,
            reported_at=reported_at,
            fired_rules=fired_rules,
            prior_signs=known.of(subject_ids),
        )

    async def known_signs(
        self, session: AsyncSession, subject_ids: Iterable[str], *, first: bool = False
    ) -> KnownSigns:
        """The signs the transaction knows of, with all those of `subject_ids` (read in one
        statement for those it has not read yet). `first`: nothing was sent in the
        transaction yet, and the read goes before it begins: it takes no lock, and each
        statement reads what was committed when it began whether in the transaction or not,
        so a batch that carries its reports and nothing else is this read and one statement
        (`shared.driver.fetch`, `alone`)."""
        known = of_transaction(session, KNOWN_SIGNS, KnownSigns)
        unread = known.unread(subject_ids)
        if unread:
            rows = await fetch(session, SUBJECTS_SIGNS, {"subject_ids": unread}, alone=first)
            known.read(
                unread,
                (
                    PriorSigns(row.incident_id, row.subject_id, row.reported_at, row.drill)
                    for row in rows
                ),
            )
        return known

    def carry_reports(self, session: AsyncSession) -> None:
        """The transaction's reports ride its last statement (`CARRIED_REPORTS`)."""
        of_transaction(session, REPORTS_CARRIED, ReportsCarried).carried = True

    def carries_reports(self, session: AsyncSession) -> bool:
        return of_transaction(session, REPORTS_CARRIED, ReportsCarried).carried

    async def carry_reported(
        self,
        session: AsyncSession,
        report: CarriedReport,
        facts: IncidentFacts,
        decision: Decision,
    ) -> None:
        """A report of a batch, stored by the batch's last statement with its first duties,
        timers, signs and drill; announced as `apply` announces a decision's new duties (a new
        incident's duties are all new)."""
        carry(session, REPORTED, carried_reports, {"report": report})
        incident_id = report.incident["id"]
        self.log_fired(decision)
        await self.announce(session, incident_id, brief(facts), decision.obligations)
        if decision.timers:
            await self.deadlines.notify(session)

    def signs_stored(self, session: AsyncSession, signs: Iterable[PriorSigns]) -> None:
        """Signs the transaction stored, for its later reports to see (`known_signs`)."""
        of_transaction(session, KNOWN_SIGNS, KnownSigns).stored(signs)

    async def store_reported(
        self,
        session: AsyncSession,
        incident: Mapping[str, Any],
        duties: Iterable[ObligationSpec],
        source_event_id: UUID,
    ) -> DriverRow | None:
        """Insert a reported incident (`incident`: its columns) and its first duties in one
        statement; None if it was reported already. The row's `duties`: the ids stored, for
        `apply`."""
        rows = [obligation_row(incident["id"], spec, source_event_id) for spec in duties]
        arrays = {f"duty_{name}": [row[name] for row in rows] for name in DUTY_NAMES}
        stored = await fetch(
            session,
            STORE_REPORTED,
            {
                **incident,
                "facts": json_text(incident["facts"]),
                "reporter": json_text(incident["reporter"]),
                "source_event_id": source_event_id,
                **arrays,
            },
        )
        return stored[0] if stored else None

    async def apply(
        self,
        session: AsyncSession,
        incident: Row,
        decision: Decision,
        source_event_id: UUID,
        stored_duties: Iterable[UUID] | None = None,
    ) -> None:
        """Store what the rules decided and announce every new obligation; `stored_duties`:
        the decision's duties are stored already, these of them new (`store_reported`)."""
        # A report's incident is stored with the rules its report fired already.
        if not set(decision.fired_rules) <= set(incident.fired_rules):
            fired = sorted(set(incident.fired_rules) | set(decision.fired_rules))
            await session.execute(
                update(incidents).where(incidents.c.id == incident.id).values(fired_rules=fired)
            )
        if decision.timers:
            await session.execute(
                timers.insert(),
                [
                    {
                        "id": uuid4(),
                        "incident_id": incident.id,
                        "name": timer.name,
                        "rule_id": timer.rule_id,
                        "fire_at": timer.fire_at,
                    }
                    for timer in decision.timers
                ],
            )
        await self.add_obligations(
            session, incident, decision.obligations, source_event_id, stored_duties
        )
        self.log_fired(decision)
        if decision.timers:
            await self.deadlines.notify(session)

    @staticmethod
    def log_fired(decision: Decision) -> None:
        if decision.fired_rules:
            annotate(rule_ids=",".join(decision.fired_rules))
            log.info(
                "rules %s fired: %d obligations, %d timers",
                ",".join(decision.fired_rules),
                len(decision.obligations),
                len(decision.timers),
            )

    async def add_obligations(
        self,
        session: AsyncSession,
        incident: Row,
        specs: Iterable[ObligationSpec],
        source_event_id: UUID,
        stored_duties: Iterable[UUID] | None = None,
    ) -> None:
        """Store the obligations (unless `stored_duties` says which of them were stored
        already) and announce each new one."""
        specs = list(specs)
        if not specs:
            return
        if stored_duties is not None:
            stored = set(stored_duties)
        else:
            # One statement for all of them (the rows passed as parameters, so SQLAlchemy
            # sends them as one multi-row INSERT and compiles it once, not once per decision);
            # one the same cause already produced is not stored again, nor announced.
            stored = set(
                (
                    await session.execute(
                        STORE_OBLIGATIONS,
                        [obligation_row(incident.id, s, source_event_id) for s in specs],
                    )
                ).scalars()
            )
        await self.announce(
            session,
            incident.id,
            brief(facts_of(incident)),
            [spec for spec in specs if spec.id in stored],
        )

    async def announce(
        self,
        session: AsyncSession,
        incident_id: UUID,
        incident_brief: IncidentBrief,
        specs: Iterable[ObligationSpec],
    ) -> None:
        """Publish each new obligation, and wake the deadline workers for them."""
        created: list[EventData] = [
            self._created(incident_id, incident_brief, spec) for spec in specs
        ]
        if created:
            await self.publish(session, incident_id, *created)
            await self.deadlines.notify(session)

    async def _insert(
        self,
        session: AsyncSession,
        incident_id: UUID,
        spec: ObligationSpec,
        source_event_id: UUID,
        **moved: Any,
    ) -> bool:
        """Store the obligation unless it exists; `moved`: status and the columns of a duty
        moved from another incident (R20)."""
        stored = await session.execute(
            insert(obligations)
            .values(obligation_row(incident_id, spec, source_event_id, **moved))
            .on_conflict_do_nothing()
            .returning(obligations.c.id)
        )
        return stored.first() is not None

    def _created(
        self,
        incident_id: UUID,
        incident_brief: IncidentBrief,
        spec: ObligationSpec,
        moved_from: UUID | None = None,
    ) -> ObligationCreated:
        return ObligationCreated(
            incident_id=incident_id,
            obligation_id=spec.id,
            party=spec.party,
            action=spec.action,
            action_text=spec.action_text,
            deadline_name=spec.deadline_name,
            deadline_text=deadline_text(self.policy, spec.deadline_name),
            due_at=spec.due_at,
            rule_id=spec.rule_id,
            plan_section=spec.plan_section,
            explanation=spec.explanation,
            notify=spec.notify,
            incident=incident_brief,
            trigger=spec.trigger,
            escalated_from=spec.escalated_from,
            policy_version=self.policy.version,
            owner=spec.owner,
            ack_seconds=self.policy.ack.total_seconds(),
            moved_from=moved_from,
        )

    async def move(
        self,
        session: AsyncSession,
        origin: Row,
        duty: Row,
        destination: Row,
        moved: Moving,
        at: datetime,
        source_event_id: UUID,
    ) -> None:
        """R20: `duty` of `origin` lives on as a new obligation of `destination`, the same in
        all but its id, status and explanation; the old one, if still open, is waived naming
        the new one (its alert carries on under the new id: nobody is alerted twice)."""
        spec = ObligationSpec(
            id=moved.new_id,
            rule_id=duty.rule_id,
            plan_section=duty.plan_section,
            party=duty.party,
            action=duty.action,
            action_text=duty.action_text,
            deadline_name=duty.deadline_name,
            due_at=duty.due_at,
            notify=duty.notify,
            drill=duty.drill,
            trigger=duty.trigger,
            explanation=moved.explanation,
            escalated_from=moved.escalated_from,
            owner=duty.owner,
        )
        # A missed duty stays missed (R10 when done late; R11 counts from its deadline).
        extra = {"status": moved.status, "moved_from": duty.id}
        if moved.status == "MISSED":
            reason = duty.closed_reason if duty.status == "MISSED" else "逾期"
            extra |= {"closed_reason": reason, "omitted_at": duty.omitted_at}
        if not await self._insert(session, destination.id, spec, source_event_id, **extra):
            return
        await self.publish(
            session,
            destination.id,
            self._created(destination.id, brief(facts_of(destination)), spec, duty.id),
        )
        if duty.status in ("PENDING", "MISSED"):
            await self.waive(session, origin, duty, moved.waived_reason, at, moved_to=spec.id)
        await self.deadlines.notify(session)

    async def change_status(
        self,
        session: AsyncSession,
        incident: Row,
        transition: lifecycle.Transition,
        at: datetime,
    ) -> None:
        if not transition.changed:
            return
        values: dict[str, Any] = {"status": transition.status, "updated_at": at}
        if transition.status == LifecycleStatus.CLOSED:
            values["closed_at"] = at
        await session.execute(
            update(incidents).where(incidents.c.id == incident.id).values(**values)
        )
        await self.publish(
            session,
            incident.id,
            IncidentStatusChanged(
                incident_id=incident.id,
                status=transition.status,
                previous_status=LifecycleStatus(incident.status),
                changed_at=at,
                reason=transition.reason,
                drill=incident.drill,
            ),
        )

    async def pending(self, session: AsyncSession, incident_id: UUID) -> list[Row]:
        return list(
            (
                await session.execute(
                    select(obligations)
                    .where(
                        obligations.c.incident_id == incident_id,
                        obligations.c.status == "PENDING",
                    )
                    .order_by(obligations.c.due_at)
                    .with_for_update()
                )
            ).all()
        )

    async def meetable(self, session: AsyncSession, incident_id: UUID) -> list[Row]:
        """Duties an action, report or acknowledgement may still meet: the pending ones, and
        the missed ones, which work done late turns into MET_LATE (R10)."""
        rows = (
            await session.execute(
                select(obligations)
                .where(
                    obligations.c.incident_id == incident_id,
                    obligations.c.status.in_(("PENDING", "MISSED")),
                )
                .order_by(obligations.c.due_at)
                .with_for_update()
            )
        ).all()
        return [row for row in rows if may_still_be_met(self.policy, row.action, row.status)]

    async def meet(
        self, session: AsyncSession, incident: Row, obligation: Row, proof: Proof
    ) -> None:
        """Mark an obligation met (late, if received after its due time or once missed); every
        supervision it caused stands down."""
        status = met_status(obligation.status, proof.at, obligation.due_at)
        await session.execute(
            update(obligations)
            .where(obligations.c.id == obligation.id)
            .values(status=status, met_at=proof.at, met_by_event_id=proof.event_id)
        )
        asserted = proof.asserted_at
        await self.publish(
            session,
            incident.id,
            ObligationMet(
                incident_id=incident.id,
                obligation_id=obligation.id,
                party=obligation.party,
                rule_id=obligation.rule_id,
                status=status,
                met_at=proof.at,
                met_by_event_id=proof.event_id,
                drill=obligation.drill,
                recorded_by=proof.party,
                on_behalf_of=proof.on_behalf_of,
                asserted_at=asserted if asserted is not None and asserted != proof.at else None,
            ),
        )
        await self.stand_down(session, incident, obligation.id, proof.at)
        if lifecycle.is_open(LifecycleStatus(incident.status)):
            follow_on = recurrence(
                self.policy,
                view_of(obligation, incident.facts["township_code"]),
                proof.at,
                self.party_names,
            )
            if follow_on is not None:
                await self.add_obligations(session, incident, [follow_on], proof.event_id)

    async def stand_down(
        self, session: AsyncSession, incident: Row, done_id: UUID, at: datetime
    ) -> None:
        """Waive every pending supervision caused by `done_id`, rung after rung: a supervision
        that was itself missed has its own supervisor, which stands down as well."""
        escalated = (
            await session.execute(
                select(obligations)
                .where(
                    obligations.c.incident_id == incident.id,
                    obligations.c.escalated_from.is_not(None),
                )
                .with_for_update()
            )
        ).all()
        caused = caused_by(done_id, ((row.id, row.escalated_from) for row in escalated))
        for row in escalated:
            if row.id in caused and row.status == "PENDING":
                await self.waive(session, incident, row, "原事项已办结", at)

    async def waive(
        self,
        session: AsyncSession,
        incident: Row,
        obligation: Row,
        reason: str,
        at: datetime,
        *,
        with_supervisions: bool = False,
        moved_to: UUID | None = None,
    ) -> None:
        """No longer required, with the reason; `with_supervisions`: the supervisions it
        caused stand down too (a duty that no longer applies needs no supervising);
        `moved_to`: the duty lives on as that obligation of another incident (R20)."""
        await session.execute(
            update(obligations)
            .where(obligations.c.id == obligation.id)
            .values(status="WAIVED", closed_reason=reason, moved_to=moved_to)
        )
        await self.publish(
            session,
            incident.id,
            ObligationWaived(
                incident_id=incident.id,
                obligation_id=obligation.id,
                party=obligation.party,
                rule_id=obligation.rule_id,
                reason=reason,
                waived_at=at,
                drill=obligation.drill,
                moved_to=moved_to,
            ),
        )
        if with_supervisions:
            await self.stand_down(session, incident, obligation.id, at)

    async def miss(
        self, session: AsyncSession, incident: Row, obligation: Row, at: datetime
    ) -> None:
        """Past due: MISSED, and while the incident is open the next level takes it up (after
        closure too, for a duty the closure itself calls for: R14's investigation report)."""
        still_open = lifecycle.is_open(LifecycleStatus(incident.status))
        if (
            still_open
            and obligation.action in recurring_actions(self.policy)
            and gone_quiet(self.policy, incident.last_news_at or incident.reported_at, at)
        ):
            await self.went_quiet(session, incident, obligation, at)
            return
        pursued = still_open or outlives_closure(self.policy, obligation.rule_id)
        view = view_of(obligation, incident.facts["township_code"])
        supervisor = (
            ladder_step(self.policy, view, "missed", at, self.party_names) if pursued else None
        )
        await self._missed(
            session,
            incident,
            obligation,
            at,
            (
                f"逾期，升级至{party_name_zh(supervisor.party, dict(self.party_names))}"
                if supervisor
                else "逾期"
            ),
            supervisor.party if supervisor else None,
        )
        if supervisor is not None:
            supervisor = await self._one_alert_per_rung(session, incident, supervisor)
        follow_on = recurrence(self.policy, view, at, self.party_names) if still_open else None
        await self.add_obligations(
            session, incident, [spec for spec in (supervisor, follow_on) if spec], obligation.id
        )

    async def went_quiet(
        self, session: AsyncSession, incident: Row, obligation: Row, at: datetime
    ) -> None:
        """R9: nothing new for `quiet_after`: the follow-up stops recurring and escalating, and
        the BLO is told once; the next report or action brings the daily follow-up back."""
        last_news = incident.last_news_at or incident.reported_at
        await self._missed(
            session, incident, obligation, at, "事件长期无新情况，不再每日督办", None
        )
        await session.execute(
            update(incidents).where(incidents.c.id == incident.id).values(quiet_since=at)
        )
        await self.publish(
            session,
            incident.id,
            IncidentWentQuiet(
                incident_id=incident.id,
                party=str(PartyKind.BLO),
                rule_id=obligation.rule_id,
                last_news_at=last_news,
                noticed_at=at,
                township_code=incident.facts["township_code"],
                drill=incident.drill,
            ),
        )

    async def omit(
        self, session: AsyncSession, incident: Row, obligation: Row, at: datetime
    ) -> None:
        """R11: a missed duty still undone `omitted_after` past its deadline is an omission."""
        await session.execute(
            update(obligations).where(obligations.c.id == obligation.id).values(omitted_at=at)
        )
        await self.publish(
            session,
            incident.id,
            ObligationOmitted(
                incident_id=incident.id,
                obligation_id=obligation.id,
                party=obligation.party,
                rule_id=obligation.rule_id,
                action=obligation.action,
                due_at=obligation.due_at,
                omitted_at=at,
                drill=obligation.drill,
            ),
        )

    async def standing(self, session: AsyncSession, incident_id: UUID) -> list[Row]:
        """Every obligation of the incident, locked: what a change of the facts revises."""
        return list(
            (
                await session.execute(
                    select(obligations)
                    .where(obligations.c.incident_id == incident_id)
                    .order_by(obligations.c.created_at, obligations.c.id)
                    .with_for_update()
                )
            ).all()
        )

    async def revise(
        self,
        session: AsyncSession,
        incident: Row,
        revision: Revision,
        standing: list[Row],
        at: datetime,
        source_event_id: UUID,
    ) -> None:
        """Apply what the rules say after a change of the facts: waive the duties that no
        longer apply (and their supervisions), cancel their timers, add the new ones."""
        by_id = {row.id: row for row in standing}
        for obligation_id, reason in revision.waive:
            await self.waive(
                session, incident, by_id[obligation_id], reason, at, with_supervisions=True
            )
        if revision.cancel_timers:
            await session.execute(
                update(timers)
                .where(
                    timers.c.incident_id == incident.id,
                    timers.c.name.in_(revision.cancel_timers),
                    timers.c.fired_at.is_(None),
                    timers.c.cancelled_at.is_(None),
                )
                .values(cancelled_at=at)
            )
        await self.apply(session, incident, revision.decision, source_event_id)

    async def alerted_parties(self, session: AsyncSession, incident_id: UUID) -> set[str]:
        """Everyone already alerted about the incident (R19 keeps them told)."""
        rows = await session.execute(
            select(obligations.c.party)
            .where(obligations.c.incident_id == incident_id, obligations.c.notify.is_(True))
            .distinct()
        )
        return {row.party for row in rows}

    async def timers_started(self, session: AsyncSession, incident_id: UUID) -> frozenset[str]:
        """Rule timers of the incident still running or already fired."""
        rows = await session.execute(
            select(timers.c.name)
            .where(timers.c.incident_id == incident_id, timers.c.cancelled_at.is_(None))
            .distinct()
        )
        return frozenset(row.name for row in rows)

    async def _one_alert_per_rung(
        self, session: AsyncSession, incident: Row, supervision: ObligationSpec
    ) -> ObligationSpec:
        alerted = (
            await session.execute(
                select(obligations.c.created_at)
                .where(
                    obligations.c.incident_id == incident.id,
                    obligations.c.party == supervision.party,
                    obligations.c.action == supervision.action,
                    obligations.c.status == "PENDING",
                    obligations.c.notify.is_(True),
                    obligations.c.id != supervision.id,
                )
                .order_by(obligations.c.created_at)
                .limit(1)
            )
        ).scalar()
        if alerted is None:
            return supervision
        return grouped_into_alert(self.policy, supervision, alerted)

    async def meet_grouped(
        self, session: AsyncSession, incident: Row, acknowledged: Row, proof: Proof
    ) -> None:
        """A supervision alert acknowledged: the supervisions grouped into it (same incident,
        same rung, not alerted on their own) are met with it."""
        if acknowledged.action != self.policy.ladder.action:
            return
        for row in await self.pending(session, incident.id):
            if row.action == acknowledged.action and row.party == acknowledged.party:
                if not row.notify:
                    await self.meet(session, incident, row, proof)

    async def close_out(self, session: AsyncSession, incident: Row, at: datetime) -> None:
        """The incident is closed: every duty still pending ends with it. Undone at closure is
        omitted (R11), so each is MISSED, with the closure as the reason; duties the policy
        waives on closure have been waived already."""
        for obligation in await self.pending(session, incident.id):
            await self._missed(session, incident, obligation, at, "事件已结束，仍未办理", None)

    async def _missed(
        self,
        session: AsyncSession,
        incident: Row,
        obligation: Row,
        at: datetime,
        reason: str,
        escalated_to: str | None,
    ) -> None:
        await session.execute(
            update(obligations)
            .where(obligations.c.id == obligation.id)
            .values(status="MISSED", closed_reason=reason)
        )
        await self.publish(
            session,
            incident.id,
            DeadlineMissed(
                incident_id=incident.id,
                obligation_id=obligation.id,
                party=obligation.party,
                action=obligation.action,
                rule_id=obligation.rule_id,
                due_at=obligation.due_at,
                missed_at=at,
                escalated_to=escalated_to,
                drill=obligation.drill,
            ),
        )

    async def escalate_unacknowledged(
        self, session: AsyncSession, incident: Row, obligation: Row, at: datetime, event_id: UUID
    ) -> None:
        supervisor = ladder_step(
            self.policy,
            view_of(obligation, incident.facts["township_code"]),
            "unacknowledged",
            at,
            self.party_names,
        )
        if supervisor is not None:
            supervisor = await self._one_alert_per_rung(session, incident, supervisor)
            await self.add_obligations(session, incident, [supervisor], event_id)
