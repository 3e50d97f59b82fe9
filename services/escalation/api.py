"""REST routes of escalation: obligations and why, a dry run of the policy, drill compliance."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from sqlalchemy import Row, and_, func, not_, or_, select, text

from services.escalation.models import INCIDENT_TOWNSHIP, drills, incidents, obligations
from services.escalation.rules import (
    Policy,
    PriorSigns,
    Situation,
    Trigger,
    deadline_text,
    evaluate,
)
from services.escalation.schemas import (
    DrillComplianceList,
    DrillComplianceOut,
    DutyList,
    DutyOut,
    EvaluateIn,
    EvaluationOut,
    ObligationOut,
    ObligationsOut,
    ObligationStatus,
    ProposedObligationOut,
    ProposedTimerOut,
)
from shared.auth import Caller, authorize
from shared.domain import facts as incident_facts
from shared.domain.access import Permission
from shared.domain.directory import Directory
from shared.domain.vocabulary import PARTY_PATTERN
from shared.observability import IncidentRoute
from shared.paging import PAGE, After, Limit, items_page, rows_page
from shared.problems import invalid_field, not_found
from shared.runtime import DatabaseSession

router = APIRouter(tags=["escalation"], route_class=IncidentRoute)


def directory_of(request: Request) -> Directory:
    return request.app.state.directory


def policy_of(request: Request) -> Policy:
    return request.app.state.policy


def party_name(directory: Directory, code: str) -> str:
    party = directory.party(code)
    return party.name if party is not None else code


@router.get(
    "/v1/incidents/{incident_id}/obligations",
    summary="Who must do what, by when, under which rule of the plan, and what happened; "
    "paged (`limit`, `after`; `next` names the following page)",
)
async def list_obligations(
    incident_id: UUID,
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    limit: Limit = PAGE,
    after: After = None,
) -> ObligationsOut:
    # One snapshot for the incident and its obligations: a deadline or timer firing between
    # the two reads would show its obligations beside the status they changed, not the new one.
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    incident = (
        await session.execute(select(incidents).where(incidents.c.id == incident_id))
    ).first()
    if incident is None:
        raise not_found("Incident", incident_id)
    authorize(caller, Permission.READ_OBLIGATIONS, incident.facts["township_code"])
    page = await rows_page(
        session,
        select(obligations).where(obligations.c.incident_id == incident_id),
        # As they arose, then by deadline; the id makes each position one obligation's.
        (obligations.c.created_at, obligations.c.due_at, obligations.c.rule_id, obligations.c.id),
        limit,
        after,
    )
    obligation_out = ObligationShown.of(request)
    return ObligationsOut(
        incident_id=incident_id,
        status=incident.status,
        drill=incident.drill,
        policy_version=incident.policy_version,
        merged_into=incident.merged_into,
        obligations=[obligation_out(row) for row in page.items],
        next=page.next,
    )


@dataclass(frozen=True)
class ObligationShown:
    """An obligation as the API shows it: its party named, its rule's and deadline's texts."""

    directory: Directory
    policy: Policy
    plan_texts: dict[str, str]

    @classmethod
    def of(cls, request: Request) -> ObligationShown:
        policy = policy_of(request)
        return cls(
            directory_of(request), policy, {rule.id: rule.plan_text for rule in policy.rules}
        )

    def __call__(self, row: Row) -> ObligationOut:
        return ObligationOut(
            id=row.id,
            party=row.party,
            party_name=party_name(self.directory, row.party),
            owner=row.owner,
            action=row.action,
            action_text=row.action_text,
            rule_id=row.rule_id,
            plan_section=row.plan_section,
            plan_text=self.plan_texts.get(row.rule_id, ""),
            deadline_name=row.deadline_name,
            deadline_text=deadline_text(self.policy, row.deadline_name),
            due_at=row.due_at,
            status=row.status,
            trigger=row.trigger,
            notify=row.notify,
            drill=row.drill,
            escalated_from=row.escalated_from,
            met_at=row.met_at,
            met_by_event_id=row.met_by_event_id,
            closed_reason=row.closed_reason,
            omitted_at=row.omitted_at,
            why=row.explanation,
            moved_from=row.moved_from,
            moved_to=row.moved_to,
        )


@router.get(
    "/v1/obligations",
    summary='Duties across incidents ("my duties"), soonest due first (`due_at`, then `id`), '
    "filtered; paged (`limit`, `after`; `next` names the following page). A 司法所, 指挥小组 "
    "or 派出所 sees only the duties of its own township's incidents; the banner offices and "
    "the platform see all",
)
async def list_duties(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    party: Annotated[
        str | None,
        Query(
            pattern=PARTY_PATTERN,
            description="who must act: the obligation's owner (its party where none is named)",
        ),
    ] = None,
    status: Annotated[
        list[ObligationStatus] | None, Query(description="repeat for any of several")
    ] = None,
    due_before: Annotated[
        AwareDatetime | None, Query(description="due before this time (with its zone)")
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(
            description="true: undone and past due now: PENDING past its deadline, or MISSED "
            "(the deadline marks it so within moments; work done late still meets it, R10); "
            "false: every other"
        ),
    ] = None,
    limit: Limit = PAGE,
    after: After = None,
) -> DutyList:
    authorize(caller, Permission.READ_OBLIGATIONS, caller.township)
    chosen = []
    if caller.township is not None:
        chosen.append(INCIDENT_TOWNSHIP == caller.township)
    if party is not None:
        chosen.append(func.coalesce(obligations.c.owner, obligations.c.party) == party)
    if status:
        chosen.append(obligations.c.status.in_(status))
    if due_before is not None:
        chosen.append(obligations.c.due_at < due_before)
    if overdue is not None:
        late = or_(
            obligations.c.status == "MISSED",
            and_(obligations.c.status == "PENDING", obligations.c.due_at < func.now()),
        )
        chosen.append(late if overdue else not_(late))
    page = await rows_page(
        session,
        select(obligations, INCIDENT_TOWNSHIP.label("township_code"))
        .join(incidents, incidents.c.id == obligations.c.incident_id)
        .where(*chosen),
        (obligations.c.due_at, obligations.c.id),
        limit,
        after,
    )
    obligation_out = ObligationShown.of(request)
    return DutyList(
        items=[
            DutyOut(
                **obligation_out(row).model_dump(),
                incident_id=row.incident_id,
                township_code=row.township_code,
            )
            for row in page.items
        ],
        next=page.next,
    )


@router.post(
    "/v1/policy/evaluate",
    summary="Dry run: the obligations a report would create, storing nothing",
)
async def evaluate_report(body: EvaluateIn, request: Request, caller: Caller) -> EvaluationOut:
    directory, policy = directory_of(request), policy_of(request)
    township = directory.township(body.township)
    if township is None:
        raise invalid_field("township", "unknown township")
    authorize(caller, Permission.EVALUATE_POLICY, township.code)
    reported_at = body.reported_at or datetime.now(UTC)
    incident_id = uuid4()
    situation = Situation(
        incident_id=incident_id,
        facts=incident_facts.event_facts(incident_facts.initial_facts(body, township)),
        reporter_party=body.reporter.party,
        reported_at=reported_at,
        prior_signs=tuple(
            PriorSigns(uuid4(), prior.subject_id, prior.reported_at, prior.drill)
            for prior in body.prior_signs
        ),
    )
    names = {party.code: party.name for party in directory.parties}
    decision = evaluate(
        policy, situation, Trigger("reported", reported_at, uuid4(), body.reporter.party), names
    )
    return EvaluationOut(
        policy_version=policy.version,
        rules_fired=list(decision.fired_rules),
        obligations=[
            ProposedObligationOut(
                party=spec.party,
                party_name=names.get(spec.party, spec.party),
                action=spec.action,
                action_text=spec.action_text,
                rule_id=spec.rule_id,
                plan_section=spec.plan_section,
                deadline_name=spec.deadline_name,
                due_at=spec.due_at,
                notify=spec.notify,
                drill=spec.drill,
                why=spec.explanation,
            )
            for spec in decision.obligations
        ],
        timers=[
            ProposedTimerOut(name=timer.name, rule_id=timer.rule_id, fire_at=timer.fire_at)
            for timer in decision.timers
        ],
    )


@router.get(
    "/v1/drills/compliance",
    summary="R16: drills per 司法所 in a calendar year against the plan's minimum",
)
async def drill_compliance(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    limit: Limit = PAGE,
    after: After = None,
) -> DrillComplianceList:
    authorize(caller, Permission.READ_DRILLS)
    directory, policy = directory_of(request), policy_of(request)
    requirement = policy.drill_requirement
    year = year or datetime.now(UTC).year
    held: dict[str, list[UUID]] = defaultdict(list)
    # One item per 司法所 of the directory, in the order of their codes.
    page = items_page(
        (party for party in directory.parties if party.kind == requirement.party),
        lambda party: (party.code,),
        (str,),
        limit,
        after,
    )
    shown = [party.code for party in page.items]
    for row in await session.execute(
        select(drills).where(drills.c.year == year, drills.c.party.in_(shown))
    ):
        held[row.party].append(row.incident_id)
    return DrillComplianceList(
        year=year,
        next=page.next,
        items=[
            DrillComplianceOut(
                party=party.code,
                party_name=party.name,
                year=year,
                drills=len(held[party.code]),
                required=requirement.per_year,
                compliant=len(held[party.code]) >= requirement.per_year,
                rule_id=requirement.rule_id,
                plan_section=requirement.plan_section,
                incident_ids=held[party.code],
            )
            for party in page.items
        ],
    )
