"""What people decide about findings: reviews (RULES.md "Findings are suspicions") and R15's
commendations and disciplines.

A finding is a suspicion until the BJO or the CEO confirms or dismisses it with a reason; every
review is kept and the latest counts, and a dismissed finding stays listed, shown as dismissed.
R15 records rest on findings of their incident and are made only once its investigation report
is filed. Each review and record is a row of an append-only table and an event published through
the outbox in the same transaction, so it reaches the log like every other event.

The rules (`state_of`, `investigation_report_filed`, `refusal_of_record`) are pure; the rest
reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.datakeys import DataKeys
from services.audit.findings import LoggedEvent, superseded_by
from services.audit.models import accountability_records, finding_reviews, findings
from shared.domain.vocabulary import ActionCode, LifecycleStatus
from shared.events import CloudEvent
from shared.events.models import AccountabilityFinding, AccountabilityRecorded, FindingReviewed
from shared.messaging import Outbox

SOURCE = "audit"


def state_of(reviews: Sequence[FindingReviewed], superseded: bool) -> str:
    """SUPERSEDED for an omission done later (R10 stands in its place), else the latest
    review's decision, else OPEN."""
    if superseded:
        return "SUPERSEDED"
    return reviews[-1].decision if reviews else "OPEN"


def investigation_report_filed(events: Iterable[LoggedEvent]) -> bool:
    """R15 follows R14: the incident was reviewed, or the report was recorded filed and the
    record not refused (filing before closure is)."""
    events = list(events)
    refused = {str(e.data.get("action_id")) for e in events if e.type == "action.rejected"}
    return any(
        (
            event.type == "incident.action_recorded"
            and event.data.get("action") == ActionCode.INVESTIGATION_REPORT_FILED
            and str(event.data.get("action_id")) not in refused
        )
        or (
            event.type == "incident.status_changed"
            and event.data.get("status") == LifecycleStatus.REVIEWED
        )
        for event in events
    )


def refusal_of_record(
    kind: str, finding_ids: Sequence[UUID], states: Mapping[UUID, str]
) -> str | None:
    """Why an R15 record cannot rest on these findings (`states`: the incident's findings and
    their states), or None. A discipline rests on at least one finding that still stands: not
    dismissed by a review, nor superseded."""
    unknown = [str(finding_id) for finding_id in finding_ids if finding_id not in states]
    if unknown:
        return f"not findings of this incident: {', '.join(unknown)}"
    if kind != "DISCIPLINE":
        return None
    if not finding_ids:
        return "a discipline rests on at least one finding"
    fallen = [str(f) for f in finding_ids if states[f] in ("DISMISSED", "SUPERSEDED")]
    if fallen:
        return f"a discipline cannot rest on dismissed or superseded findings: {', '.join(fallen)}"
    return None


async def reviews_of(
    session: AsyncSession, keys: DataKeys, finding_ids: Iterable[UUID]
) -> dict[UUID, list[FindingReviewed]]:
    """Every review of each finding, oldest first (its reason opened, or erased)."""
    wanted = list(finding_ids)
    reviews: dict[UUID, list[FindingReviewed]] = {finding_id: [] for finding_id in wanted}
    if not wanted:
        return reviews
    rows = (
        await session.execute(
            select(
                finding_reviews.c.finding_id, finding_reviews.c.incident_id, finding_reviews.c.data
            )
            .where(finding_reviews.c.finding_id.in_(wanted))
            .order_by(finding_reviews.c.reviewed_at, finding_reviews.c.review_id)
        )
    ).all()
    opened = await keys.opened_data(session, [(str(row.incident_id), row.data) for row in rows])
    for row, data in zip(rows, opened, strict=True):
        reviews[row.finding_id].append(FindingReviewed.read(data))
    return reviews


async def findings_in(
    session: AsyncSession, keys: DataKeys, rows: Sequence[Any]
) -> list[AccountabilityFinding]:
    """Rows of the findings table (with `incident_id` and `data`) as findings, opened."""
    opened = await keys.opened_data(session, [(str(row.incident_id), row.data) for row in rows])
    return [AccountabilityFinding.read(data) for data in opened]


async def supersessions(
    session: AsyncSession, keys: DataKeys, listed: Sequence[AccountabilityFinding]
) -> dict[UUID, UUID]:
    """Which of the listed findings a later finding of their incident supersedes (an R10 an
    R11, R12's late report its "not reported yet"), and by which; the later one may not be
    among those listed (a list filtered by rule or party)."""
    omissions = [finding for finding in listed if finding.rule_id in ("R11", "R12")]
    if not omissions:
        return {}
    late = await session.execute(
        select(findings.c.incident_id, findings.c.data).where(
            findings.c.incident_id.in_({finding.incident_id for finding in omissions}),
            findings.c.rule_id.in_(("R10", "R12")),
        )
    )
    return superseded_by([*omissions, *await findings_in(session, keys, late.all())])


async def states_of(
    session: AsyncSession, keys: DataKeys, listed: Sequence[AccountabilityFinding]
) -> dict[UUID, str]:
    """The state of each listed finding (`state_of`), without the proofs a listing carries."""
    reviews = await reviews_of(session, keys, [finding.finding_id for finding in listed])
    superseded = await supersessions(session, keys, listed)
    return {
        finding.finding_id: state_of(reviews[finding.finding_id], finding.finding_id in superseded)
        for finding in listed
    }


async def add_review(
    session: AsyncSession, keys: DataKeys, outbox: Outbox, review: FindingReviewed
) -> None:
    await _keep(
        session,
        keys,
        outbox,
        finding_reviews,
        review,
        review_id=review.review_id,
        finding_id=review.finding_id,
        decision=review.decision,
        reviewed_at=review.reviewed_at,
    )


async def add_record(
    session: AsyncSession, keys: DataKeys, outbox: Outbox, record: AccountabilityRecorded
) -> None:
    await _keep(
        session,
        keys,
        outbox,
        accountability_records,
        record,
        record_id=record.record_id,
        kind=record.kind,
        recorded_at=record.recorded_at,
    )


async def _keep(
    session: AsyncSession,
    keys: DataKeys,
    outbox: Outbox,
    table: Table,
    judgement: FindingReviewed | AccountabilityRecorded,
    **columns: Any,
) -> None:
    """A judgement of people, kept (append-only, its personal fields sealed under the
    incident's data key) and published, so the log holds it too."""
    data = await keys.sealed(session, str(judgement.incident_id), judgement.model_dump(mode="json"))
    await session.execute(
        table.insert().values(incident_id=judgement.incident_id, data=data, **columns)
    )
    await outbox.add(session, CloudEvent.new(SOURCE, judgement, judgement.incident_id))


async def records_of(
    session: AsyncSession,
    keys: DataKeys,
    incident_id: UUID,
    limit: int | None = None,
    after: tuple[datetime, UUID] | None = None,
) -> list[AccountabilityRecorded]:
    """The incident's records in the order recorded: all, or `limit` after the position
    (recorded_at, record_id) `after`."""
    query = (
        select(accountability_records.c.data)
        .where(accountability_records.c.incident_id == incident_id)
        .order_by(accountability_records.c.recorded_at, accountability_records.c.record_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(accountability_records.c.recorded_at, accountability_records.c.record_id)
            > tuple_(*after)
        )
    rows = (await session.execute(query)).all()
    opened = await keys.opened_data(session, [(str(incident_id), row.data) for row in rows])
    return [AccountabilityRecorded.read(data) for data in opened]
