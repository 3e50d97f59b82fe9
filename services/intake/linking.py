"""One event, several reports (R20), as intake stores it: which open incident a new report is
of, a report kept as a report of that incident, and the links and merges people decide. What
matches and which facts win is `shared.domain.correlation`'s to say; this module reads and
writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Row, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import (
    external_refs,
    incident_links,
    incident_subjects,
    incidents,
    reports,
)
from shared.domain import facts as incident_facts
from shared.domain import lifecycle
from shared.domain.correlation import (
    Candidate,
    Correlation,
    Match,
    OpenIncident,
    candidates,
    combined,
    match,
)
from shared.domain.vocabulary import LifecycleStatus
from shared.events.models import IncidentLinked, IncidentReported, LinkedReport
from shared.pii import PiiCipher, sealed_subjects

OPEN_STATUSES = tuple(str(status) for status in lifecycle.OPEN)


async def remember_subjects(
    session: AsyncSession, incident_id: UUID, subjects: list[dict[str, Any]]
) -> None:
    if subjects:
        await session.execute(
            insert(incident_subjects)
            .values([{"incident_id": incident_id, "subject_id": s["id"]} for s in subjects])
            .on_conflict_do_nothing()
        )


async def store_facts(
    session: AsyncSession, cipher: PiiCipher, incident_id: UUID, facts: dict[str, Any], at: datetime
) -> None:
    """The incident's facts as they now stand, sealed, with the columns read from them."""
    await session.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(
            facts=cipher.seal_subjects(facts),
            category=facts["category"],
            phase=facts["phase"],
            updated_at=at,
        )
    )


def fact_fields(
    cipher: PiiCipher,
    facts: dict[str, Any],
    changes: dict[str, Any],
    previous: dict[str, Any],
    names: tuple[str, ...],
) -> dict[str, Any]:
    """What an R20 event says of the facts it changed: masked, with the subjects sealed when
    they changed, and whether the incident is a drill."""
    return {
        "changes": incident_facts.masked(changes, names),
        "previous": incident_facts.masked(previous, names),
        "sealed_subjects": (
            sealed_subjects(cipher.seal_subjects(facts)) if "subjects" in changes else None
        ),
        "drill": bool(facts.get("drill")),
    }


async def open_incidents(
    session: AsyncSession,
    township_code: str,
    since: datetime,
    until: datetime | None = None,
    *,
    category: str | None = None,
) -> list[OpenIncident]:
    """Open incidents of the township reported in [since, until], as matching sees them;
    merged ones too (a report of one is a report of the incident it was merged into). Only
    those of `category` when given."""
    window = [
        incidents.c.township_code == township_code,
        incidents.c.status.in_(OPEN_STATUSES),
        incidents.c.reported_at >= since,
    ]
    if until is not None:
        window.append(incidents.c.reported_at <= until)
    if category is not None:
        window.append(incidents.c.category == category)
    rows = (
        await session.execute(
            select(
                incidents.c.id,
                incidents.c.category,
                incidents.c.reported_at,
                incidents.c.facts["drill"].as_boolean().label("drill"),
                incidents.c.merged_into,
            ).where(*window)
        )
    ).all()
    ids = [row.id for row in rows]
    subjects: dict[UUID, set[str]] = {incident_id: set() for incident_id in ids}
    refs: dict[UUID, set[str]] = {incident_id: set() for incident_id in ids}
    if ids:
        for incident_id, subject_id in await session.execute(
            select(incident_subjects.c.incident_id, incident_subjects.c.subject_id).where(
                incident_subjects.c.incident_id.in_(ids)
            )
        ):
            subjects[incident_id].add(subject_id)
        for incident_id, ref in await session.execute(
            select(external_refs.c.incident_id, external_refs.c.external_ref).where(
                external_refs.c.incident_id.in_(ids)
            )
        ):
            refs[incident_id].add(ref)
    return [
        OpenIncident(
            id=row.id,
            township_code=township_code,
            category=row.category,
            reported_at=row.reported_at,
            drill=bool(row.drill),
            subject_ids=frozenset(subjects[row.id]),
            external_refs=frozenset(refs[row.id]),
            merged_into=row.merged_into,
        )
        for row in rows
    ]


async def surviving(session: AsyncSession, incident_id: UUID) -> UUID:
    """The incident that carries the event: itself, or the one it was merged into."""
    seen = {incident_id}
    while True:
        merged_into = (
            await session.execute(
                select(incidents.c.merged_into).where(incidents.c.id == incident_id)
            )
        ).scalar_one_or_none()
        if merged_into is None or merged_into in seen:
            return incident_id
        seen.add(merged_into)
        incident_id = merged_into


async def matching(
    session: AsyncSession,
    policy: Correlation,
    township_code: str,
    open_incidents: list[OpenIncident],
    stated: dict[str, Any],
    external_ref: str | None,
    at: datetime,
) -> Match | None:
    """The open incident a new report is of (R20), if any, among the township's
    `open_incidents` naming its subjects or quoting its reference: the one it was merged into
    when the match is a merged incident."""
    subject_ids = [subject["id"] for subject in stated.get("subjects") or ()]
    found = match(
        policy,
        open_incidents,
        township_code,
        bool(stated.get("drill")),
        subject_ids,
        external_ref,
        at,
    )
    if found is None:
        return None
    return Match(await surviving(session, found.incident_id), found.linked_by)


@dataclass(frozen=True)
class Linked:
    """A report kept as a report of an open incident: the row written and its event."""

    report_id: UUID
    event: IncidentLinked


async def link_report(
    session: AsyncSession,
    cipher: PiiCipher,
    policy: Correlation,
    incident: Row,
    stated: dict[str, Any],
    reporter: dict[str, Any],
    external_ref: str | None,
    linked_by: str,
    at: datetime,
) -> Linked:
    """Keep another source's first report as a report of the locked `incident` (R20): its
    facts take the more severe of the two, and the report is kept as its source stated it."""
    current = cipher.open_subjects(incident.facts)
    changes = combined(policy, current, stated)
    facts = {**current, **changes}
    previous = {name: current.get(name) for name in changes}
    names = tuple(
        subject["name"] for subject in (*current["subjects"], *(stated.get("subjects") or ()))
    )
    report_id = uuid4()
    sealed_stated = cipher.seal_subjects(stated)
    await session.execute(
        reports.insert().values(
            id=report_id,
            incident_id=incident.id,
            kind="LINKED",
            changes=cipher.seal_subjects(changes),
            previous=cipher.seal_subjects(previous),
            reporter=cipher.seal_reporter(reporter),
            text=None,
            filed_at=at,
            stated=sealed_stated,
            external_ref=external_ref,
            linked_by=linked_by,
        )
    )
    await store_facts(session, cipher, incident.id, facts, at)
    await remember_subjects(session, incident.id, stated.get("subjects") or [])
    event = IncidentLinked(
        incident_id=incident.id,
        link_id=report_id,
        linked_by=linked_by,  # type: ignore[arg-type]
        linked_at=at,
        report=LinkedReport(
            report_id=report_id,
            reporter=incident_facts.event_reporter(reporter),
            reported_at=at,
            facts=incident_facts.event_facts(stated),
            external_ref=external_ref,
            sealed_subjects=sealed_subjects(sealed_stated),
        ),
        **fact_fields(cipher, facts, changes, previous, names),
    )
    return Linked(report_id, event)


def fact_changes(
    policy: Correlation, survivor: dict[str, Any], merged: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(changes, previous) of the survivor's facts when `merged` is merged into it."""
    changes = combined(policy, survivor, merged)
    return changes, {name: survivor.get(name) for name in changes}


def restored(
    current: dict[str, Any], merge_changes: dict[str, Any], merge_previous: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(changes, previous) that undo a merge on the survivor's facts: each fact the merge set
    goes back to what it was, unless a later report changed it since (that report stands)."""
    changes = {
        name: merge_previous.get(name)
        for name, value in merge_changes.items()
        if current.get(name) == value
    }
    return changes, {name: current.get(name) for name in changes}


async def active_link(session: AsyncSession, first: UUID, second: UUID) -> Row | None:
    """The link or merge between the two incidents not undone, the newest if several."""
    return (
        await session.execute(
            select(incident_links)
            .where(
                or_(
                    (incident_links.c.incident_id == first)
                    & (incident_links.c.linked_incident_id == second),
                    (incident_links.c.incident_id == second)
                    & (incident_links.c.linked_incident_id == first),
                ),
                incident_links.c.unlinked_at.is_(None),
            )
            .order_by(incident_links.c.linked_at.desc())
            .limit(1)
            .with_for_update()
        )
    ).first()


async def links_of(session: AsyncSession, incident_id: UUID) -> list[Row]:
    return list(
        (
            await session.execute(
                select(incident_links)
                .where(
                    or_(
                        incident_links.c.incident_id == incident_id,
                        incident_links.c.linked_incident_id == incident_id,
                    )
                )
                .order_by(incident_links.c.linked_at)
            )
        ).all()
    )


async def linked_ids(session: AsyncSession, incident_id: UUID) -> frozenset[UUID]:
    return frozenset(
        row.linked_incident_id if row.incident_id == incident_id else row.incident_id
        for row in await links_of(session, incident_id)
        if row.unlinked_at is None
    )


async def candidates_of(
    session: AsyncSession, policy: Correlation, incident: Row
) -> list[tuple[Candidate, Row]]:
    """Near matches of the incident (R20), with their rows, nearest first."""
    township = incident.township_code
    window = policy.candidate_window
    nearby = await open_incidents(
        session,
        township,
        incident.reported_at - window,
        incident.reported_at + window,
        category=incident.category,
    )
    this = next((other for other in nearby if other.id == incident.id), None)
    if this is None:
        this = OpenIncident(
            id=incident.id,
            township_code=township,
            category=incident.category,
            reported_at=incident.reported_at,
            drill=bool(incident.facts.get("drill")),
            subject_ids=frozenset(
                (
                    await session.execute(
                        select(incident_subjects.c.subject_id).where(
                            incident_subjects.c.incident_id == incident.id
                        )
                    )
                ).scalars()
            ),
            external_refs=frozenset(),
        )
    found = candidates(
        policy,
        this,
        (other for other in nearby if other.merged_into is None),
        await linked_ids(session, incident.id),
    )
    if not found:
        return []
    rows = {
        row.id: row
        for row in (
            await session.execute(
                select(incidents).where(incidents.c.id.in_([c.incident_id for c in found]))
            )
        ).all()
    }
    return [(candidate, rows[candidate.incident_id]) for candidate in found]


def is_open(incident: Row) -> bool:
    return lifecycle.is_open(LifecycleStatus(incident.status)) and incident.merged_into is None


@dataclass(frozen=True)
class Split:
    """A linked report made an incident of its own: its id, its first report, and the fact
    fields (`changes`, `previous`, `sealed_subjects`, `drill`) restoring the incident it left."""

    incident_id: UUID
    reported: IncidentReported
    restored: dict[str, Any]


async def split_report(
    session: AsyncSession, cipher: PiiCipher, incident: Row, report: Row
) -> Split:
    """Make the locked `report` (LINKED, of the locked `incident`) an incident of its own,
    reported when it was, under its source's reference; the incident gets back the facts the
    report had set, unless a later report changed them since."""
    stated = cipher.open_subjects(report.stated)
    new_id = uuid4()
    sealed_stated = cipher.seal_subjects(stated)
    await session.execute(
        incidents.insert().values(
            id=new_id,
            category=stated["category"],
            phase=stated["phase"],
            township_code=stated["township_code"],
            facts=sealed_stated,
            reporter=report.reporter,
            status=LifecycleStatus.REPORTED,
            reported_at=report.filed_at,
        )
    )
    await session.execute(
        reports.insert().values(
            id=uuid4(),
            incident_id=new_id,
            kind="INITIAL",
            changes=sealed_stated,
            previous={},
            reporter=report.reporter,
            filed_at=report.filed_at,
        )
    )
    await remember_subjects(session, new_id, stated.get("subjects") or [])
    if report.external_ref:
        await session.execute(
            update(external_refs)
            .where(
                external_refs.c.source_party == report.reporter["party"],
                external_refs.c.external_ref == report.external_ref,
            )
            .values(incident_id=new_id)
        )
    await session.execute(
        update(reports).where(reports.c.id == report.id).values(split_into=new_id)
    )
    current = cipher.open_subjects(incident.facts)
    changes, previous = restored(
        current, cipher.open_subjects(report.changes), cipher.open_subjects(report.previous)
    )
    facts = {**current, **changes}
    if changes:
        await store_facts(session, cipher, incident.id, facts, datetime.now(UTC))
    kept = [subject["id"] for subject in facts["subjects"]]
    await session.execute(
        delete(incident_subjects).where(
            incident_subjects.c.incident_id == incident.id,
            incident_subjects.c.subject_id.not_in(kept),
        )
    )
    names = tuple(s["name"] for s in (*current["subjects"], *(stated.get("subjects") or ())))
    reported = IncidentReported(
        incident_id=new_id,
        facts=incident_facts.event_facts(stated),
        reporter=incident_facts.event_reporter(cipher.open_subjects(report.reporter)),
        reported_at=report.filed_at,
        external_ref=report.external_ref,
        sealed_subjects=sealed_subjects(sealed_stated),
    )
    return Split(new_id, reported, fact_fields(cipher, facts, changes, previous, names))
