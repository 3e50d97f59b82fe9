"""REST routes of intake: reports, actions and follow-ups, and the incident as projected."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import AwareDatetime
from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    cast,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import first_report, linking
from services.intake.models import (
    actions,
    external_refs,
    idempotency_keys,
    incident_links,
    incident_subjects,
    incidents,
    reports,
)
from services.intake.schemas import (
    ActionIn,
    ActionList,
    ActionOut,
    CandidateList,
    CandidateOut,
    CreatedOut,
    IncidentItemOut,
    IncidentList,
    IncidentOut,
    LinkIn,
    LinkOut,
    ReportIn,
    ReportList,
    ReportOut,
    new_incident_json,
)
from shared.auth import Caller, authorize, speaks_for
from shared.db import transaction
from shared.domain import facts as incident_facts
from shared.domain import lifecycle
from shared.domain.access import Permission, Principal
from shared.domain.correlation import Correlation, Match
from shared.domain.directory import Directory, Township
from shared.domain.ownership import Recording, closing_refusal, refusal
from shared.domain.privacy import masked_name, masked_phone, masked_text
from shared.domain.reports import CLOCK_SKEW, FactsUpdate, IncidentIn, ReporterIn
from shared.domain.vocabulary import ActionCode, Category, LifecycleStatus, PartyKind, party_kind_of
from shared.events import CloudEvent
from shared.events.models import (
    ActionRecorded,
    IncidentLinked,
    IncidentMerged,
    IncidentReported,
    IncidentUnlinked,
    ReportFiled,
)
from shared.observability import IncidentRoute
from shared.paging import PAGE, After, Limit, Page, items_page, rows_page
from shared.pii import SUBJECT_FIELDS, PiiCipher, record_read, sealed_subjects
from shared.problems import Problem, invalid_field, not_found
from shared.runtime import DatabaseSession, runtime_of

SOURCE = "intake"
router = APIRouter(prefix="/v1/incidents", tags=["incidents"], route_class=IncidentRoute)


def directory_of(request: Request) -> Directory:
    return request.app.state.directory


def check_party(directory: Directory, party: str, field: str) -> None:
    if party != "PLATFORM" and not party.startswith("DEPT:") and directory.party(party) is None:
        raise invalid_field(field, f"unknown party {party!r}")


def known_township(directory: Directory, stated: str, field: str) -> Township:
    """The directory's township for a code or name as a report states it; 422 if unknown."""
    township = directory.township(stated)
    if township is None:
        raise invalid_field(field, f"unknown township {stated!r} of {directory.county.name}")
    return township


def cipher_of(request: Request) -> PiiCipher:
    return request.app.state.pii


def first_reports_of(request: Request) -> first_report.FirstReports:
    return request.app.state.first_reports


def correlation_of(request: Request) -> Correlation:
    return request.app.state.correlation


def incident_location(incident_id: UUID) -> str:
    return f"/v1/incidents/{incident_id}"


@router.post(
    "",
    status_code=201,
    response_model=CreatedOut,
    summary="Report an emergency (首报)",
    responses={409: {"description": "Idempotency-Key reused with another body"}},
)
async def report_incident(
    body: IncidentIn,
    request: Request,
    response: Response,
    caller: Caller,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> CreatedOut | Response:
    directory = directory_of(request)
    township = known_township(directory, body.township, "township")
    check_party(directory, body.reporter.party, "reporter.party")
    authorize(caller, Permission.REPORT_INCIDENT, township.code)
    speaks_for(caller, body.reporter.party, "reporter.party")
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    # A key is its caller's own: another caller's same key neither replays nor conflicts. A
    # key seen before is found when it is claimed (the replay's path is rare, the first
    # report's is not).
    key = (caller.party, idempotency_key) if idempotency_key else None
    now = datetime.now(UTC)
    facts = incident_facts.initial_facts(body, township)
    incident_id = uuid4()
    cipher = cipher_of(request)
    sealed = cipher.seal_subjects(facts)
    reporter = body.reporter.model_dump(mode="json")
    event = IncidentReported(
        incident_id=incident_id,
        facts=incident_facts.event_facts(facts),
        reporter=incident_facts.event_reporter(reporter),
        reported_at=now,
        external_ref=body.external_ref,
        # The same ciphertext as at rest: audit opens it for a reader holding pii:read.
        sealed_subjects=sealed_subjects(sealed),
    )
    policy = correlation_of(request)
    report = first_report.first_report(
        incident_id=incident_id,
        report_id=uuid4(),
        key=key,
        request_hash=request_hash,
        reporter_party=body.reporter.party,
        external_ref=body.external_ref,
        category=body.category,
        phase=body.phase,
        township_code=township.code,
        drill=body.drill,
        subject_ids=[subject["id"] for subject in facts["subjects"]],
        sealed_facts=sealed,
        incident_reporter=cipher.seal_reporter(reporter),
        report_reporter=cipher.seal_reporter(reporter),
        now=now,
        policy=policy,
        event=CloudEvent.new(SOURCE, event, incident_id),
    )
    sessions = runtime_of(request).sessions
    # Most reports open an incident: one call, its own transaction (with the reports that came
    # meanwhile), committed before the 201.
    written = await first_reports_of(request).write(report)
    if not written.written:
        # Nothing was written: the rest is decided in a transaction holding the township,
        # on what the call reads again there.
        async with transaction(sessions) as session:
            written = await first_report.write_incident(session, report)
            if not written.written:
                return await _reported_before(
                    session,
                    request,
                    response,
                    caller,
                    body,
                    township,
                    facts,
                    key,
                    request_hash,
                    written,
                    now,
                )
    location = incident_location(incident_id)
    # Told at once when an open incident nearby may be the same event: people decide (R20).
    # Encoded here, once: the route built what it answers, nothing to validate again.
    return Response(
        new_incident_json(incident_id, location, written.candidates),
        status_code=201,
        media_type="application/json",
        headers={"Location": location},
    )


async def _reported_before(
    session: AsyncSession,
    request: Request,
    response: Response,
    caller: Principal,
    body: IncidentIn,
    township: Township,
    facts: dict[str, Any],
    key: tuple[str, str] | None,
    request_hash: str,
    written: first_report.Written,
    now: datetime,
) -> CreatedOut:
    """A first report the call wrote nothing for: the source's reference used before, an open
    incident of the same event (R20), or the caller's key used before."""
    if written.known_ref:
        return await _reported_again(
            session, request, response, caller, body, township, request_hash
        )
    if written.open_incidents is not None:
        policy = correlation_of(request)
        match = await linking.matching(
            session, policy, township.code, written.open_incidents, facts, body.external_ref, now
        )
        # The call wrote nothing because an open incident of the township is eligible, and
        # matching decides among the very same rows.
        assert match is not None
        if key and not await _claim_key(session, key, request_hash, match.incident_id):
            return await _replay(session, key, request_hash, response)
        if body.external_ref and not await _claim_external_ref(
            session, body, match.incident_id, request_hash
        ):  # the same reference from another township, just now
            return await _reported_again(
                session, request, response, caller, body, township, request_hash
            )
        return await _link_report(session, request, response, body, facts, match, now)
    if key and not written.key_claimed:
        return await _replay(session, key, request_hash, response)
    # The same reference from another township, just now.
    return await _reported_again(session, request, response, caller, body, township, request_hash)


async def _claim_key(
    session: AsyncSession, key: tuple[str, str], request_hash: str, incident_id: UUID
) -> bool:
    """Take the caller's idempotency key for the incident; False when it was taken before."""
    claimed = await session.execute(
        insert(idempotency_keys)
        .values(caller=key[0], key=key[1], request_hash=request_hash, incident_id=incident_id)
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.key)
    )
    return claimed.first() is not None


async def _claim_external_ref(
    session: AsyncSession, body: IncidentIn, incident_id: UUID, request_hash: str
) -> bool:
    """Take the source's reference for the incident; False when it was taken before."""
    claimed = await session.execute(
        insert(external_refs)
        .values(
            source_party=body.reporter.party,
            external_ref=body.external_ref,
            incident_id=incident_id,
            request_hash=request_hash,
        )
        .on_conflict_do_nothing()
        .returning(external_refs.c.incident_id)
    )
    return claimed.first() is not None


async def _link_report(
    session: AsyncSession,
    request: Request,
    response: Response,
    body: IncidentIn,
    stated: dict[str, Any],
    match: Match,
    now: datetime,
) -> CreatedOut:
    """Another source's first report of an open incident (R20): kept as a report of it, no
    second incident, no duty or alert twice."""
    incident = await _locked_incident(session, match.incident_id)
    linked = await linking.link_report(
        session,
        cipher_of(request),
        correlation_of(request),
        incident,
        stated,
        body.reporter.model_dump(mode="json"),
        body.external_ref,
        match.linked_by,
        now,
    )
    await runtime_of(request).outbox.add(session, CloudEvent.new(SOURCE, linked.event, incident.id))
    response.headers["Location"] = incident_location(incident.id)
    response.headers["Report-Filed-As"] = "LINKED"
    response.status_code = 200  # no incident was created: a report was added to one
    return CreatedOut(
        id=incident.id,
        status=incident.status,
        location=incident_location(incident.id),
        filed_as="LINKED",
        linked_by=match.linked_by,
    )


async def _reported_again(
    session: AsyncSession,
    request: Request,
    response: Response,
    caller: Principal,
    body: IncidentIn,
    township: Township,
    request_hash: str,
) -> CreatedOut:
    """A report whose source already reported under the same reference (its 警情编号): the same
    incident. The same body again is a replay; another body is a follow-up (续报) stating the
    facts as the source now gives them."""
    known = (
        await session.execute(
            select(external_refs)
            .where(
                external_refs.c.source_party == body.reporter.party,
                external_refs.c.external_ref == body.external_ref,
            )
            .with_for_update()
        )
    ).one()
    incident = await _locked_incident(session, await linking.surviving(session, known.incident_id))
    response.headers["Location"] = incident_location(incident.id)
    created = CreatedOut(
        id=incident.id, status=incident.status, location=incident_location(incident.id)
    )
    if known.request_hash == request_hash:
        response.headers["Idempotent-Replayed"] = "true"
        return created
    if incident.township_code != township.code:
        raise Problem(
            409,
            "Reference names an incident of another township",
            f"{body.reporter.party} reported {body.external_ref!r} as incident {incident.id} "
            f"of township {incident.township_code}; a township is corrected by a CORRECTION.",
            kind="external-ref-conflict",
            incident_id=str(incident.id),
        )
    authorize(caller, Permission.FILE_REPORT, incident.township_code)
    # A replay under the same reference neither moves the incident nor turns it real or drill.
    stated = body.model_dump(include=set(FactsUpdate.model_fields) - {"township", "drill"})
    follow_up = ReportIn(
        kind="FOLLOW_UP",
        reporter=body.reporter,
        changes=FactsUpdate.model_validate(stated),
        text=f"同一来源以同一编号（{body.external_ref}）再次报告",
    )
    await _file(session, request, incident, follow_up)
    await session.execute(
        update(external_refs)
        .where(
            external_refs.c.source_party == known.source_party,
            external_refs.c.external_ref == known.external_ref,
        )
        .values(request_hash=request_hash)
    )
    response.headers["Report-Filed-As"] = "FOLLOW_UP"
    response.status_code = 200  # no incident was created: a report was added to one
    return created.model_copy(update={"filed_as": "FOLLOW_UP"})


async def _stored_key(session: AsyncSession, key: tuple[str, str]) -> Row | None:
    caller, value = key
    return (
        await session.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.caller == caller, idempotency_keys.c.key == value
            )
        )
    ).first()


async def _replay(
    session: AsyncSession, key: tuple[str, str], request_hash: str, response: Response
) -> CreatedOut:
    stored = await _stored_key(session, key)
    assert stored is not None
    if stored.request_hash != request_hash:
        raise Problem(
            409,
            "Idempotency-Key reused",
            "This Idempotency-Key was used with a different request body.",
            kind="idempotency-conflict",
            incident_id=str(stored.incident_id),
        )
    status = (
        await session.execute(
            select(incidents.c.status).where(incidents.c.id == stored.incident_id)
        )
    ).scalar_one()
    response.headers["Location"] = incident_location(stored.incident_id)
    response.headers["Idempotent-Replayed"] = "true"
    return CreatedOut(
        id=stored.incident_id, status=status, location=incident_location(stored.incident_id)
    )


def status_conflict(status: LifecycleStatus, detail: str) -> Problem:
    return Problem(
        409,
        "Not possible in the incident's current status",
        detail,
        kind="status-conflict",
        incident_status=str(status),
    )


async def _locked_incident(session: AsyncSession, incident_id: UUID) -> Row:
    row = (
        await session.execute(
            select(incidents).where(incidents.c.id == incident_id).with_for_update()
        )
    ).first()
    if row is None:
        raise not_found("Incident", incident_id)
    return row


async def _readable_incident(session: AsyncSession, incident_id: UUID, caller: Principal) -> Row:
    """The incident, if the caller may read it: 404 when there is none, 403 when not its."""
    incident = (
        await session.execute(select(incidents).where(incidents.c.id == incident_id))
    ).first()
    if incident is None:
        raise not_found("Incident", incident_id)
    authorize(caller, Permission.READ_INCIDENT, incident.township_code)
    return incident


def refuse_merged(incident: Row) -> None:
    """409 for work on a merged incident: it goes on in the incident it was merged into."""
    if incident.merged_into is not None:
        raise Problem(
            409,
            "Incident merged into another",
            f"Incident {incident.id} was merged into {incident.merged_into} (R20): report and "
            f"record there, at {incident_location(incident.merged_into)}.",
            kind="incident-merged",
            merged_into=str(incident.merged_into),
        )


async def _found_on_record(session: AsyncSession, incident_id: UUID) -> bool:
    """Whether the subject's being found is on record: a FOUND escalation did not refuse."""
    found = await session.execute(
        select(actions.c.id)
        .where(
            actions.c.incident_id == incident_id,
            actions.c.action == ActionCode.FOUND,
            actions.c.rejected_reason.is_(None),
        )
        .limit(1)
    )
    return found.first() is not None


def subject_names(facts: dict[str, Any]) -> tuple[str, ...]:
    return tuple(subject["name"] for subject in facts.get("subjects") or ())


def masked_or_none(text: str | None, names: tuple[str, ...]) -> str | None:
    return masked_text(text, names) if text else text


def action_out(row: Any) -> ActionOut:
    """An action as shown: on whose behalf, why and to whom, with the addressee's column
    (`actor_name` and `note` as given: a stored row's are sealed, `get_incident` opens them)."""
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    values["to"] = values.pop("to_party", None)
    return ActionOut.model_validate(values)


# Columns of an action, and of a link, sealed at rest, each under its own name.
SEALED_ACTION_COLUMNS = ("actor_name", "note")
SEALED_LINK_COLUMNS = ("actor_name", "unlinked_actor_name")


def sealed_columns(
    cipher: PiiCipher, row: dict[str, Any], columns: tuple[str, ...]
) -> dict[str, Any]:
    """`row` as stored: its `columns` (those it has) sealed."""
    return {
        **row,
        **{name: cipher.seal_value(row[name], name) for name in columns if name in row},
    }


def masked_reporter(reporter: dict[str, Any]) -> dict[str, Any]:
    """A reporter as anyone without pii:read sees it: the phone masked."""
    phone = reporter.get("phone")
    return {**reporter, "phone": masked_phone(phone)} if phone else reporter


STATUS_CONFLICT = {
    409: {"description": "Not possible in the incident's current status (named in the problem)"}
}


@router.post(
    "/{incident_id}/actions",
    status_code=201,
    summary="Record an action taken",
    responses=STATUS_CONFLICT,
)
async def record_action(
    incident_id: UUID,
    body: ActionIn,
    request: Request,
    response: Response,
    session: DatabaseSession,
    caller: Caller,
) -> ActionOut:
    incident = await _locked_incident(session, incident_id)
    authorize(caller, Permission.RECORD_ACTION, incident.township_code)
    refuse_merged(incident)
    directory = directory_of(request)
    check_party(directory, body.party, "party")
    for field in ("on_behalf_of", "to"):
        if (named := getattr(body, field)) is not None:
            check_party(directory, named, field)
    # The caller speaks for the recorder; whom it records for is the ownership table's to judge.
    speaks_for(caller, body.party, "party")
    recording = Recording(
        party=body.party,
        action=body.action,
        on_behalf_of=body.on_behalf_of,
        reason=body.reason,
        to=body.to,
    )
    if (refused := refusal(recording, incident.township_code)) is not None:
        raise invalid_field(*refused)
    if body.action == ActionCode.CLOSED:
        found = await _found_on_record(session, incident_id)
        if (why := closing_refusal(recording, incident.category, found)) is not None:
            if party_kind_of(recording.acting_party) == PartyKind.BLO:
                raise invalid_field("reason", why)
            # The township's command group may close once the subject is found: not yet.
            raise status_conflict(LifecycleStatus(incident.status), why)
    # The lifecycle as this service knows it: what it refuses now is refused to the caller now,
    # not later out of sight. Escalation applies the same table and has the last word.
    current = LifecycleStatus(incident.status)
    transition = lifecycle.apply(current, body.action)
    if not transition.accepted:
        raise status_conflict(
            current,
            f"{body.action} is not possible while the incident is {current}: {transition.reason}",
        )
    now = datetime.now(UTC)
    if body.occurred_at is not None:
        earliest = incident_facts.earliest_known_time(incident.facts, incident.reported_at)
        if body.occurred_at < earliest - CLOCK_SKEW:
            raise invalid_field(
                "occurred_at",
                f"lies before the incident itself (known since {earliest.isoformat()})",
            )
    action_id = uuid4()
    row = {
        "id": action_id,
        "incident_id": incident_id,
        "action": body.action,
        "party": body.party,
        "actor_name": body.actor_name,
        "occurred_at": body.occurred_at or now,
        "recorded_at": now,
        "note": body.note,
        "on_behalf_of": body.on_behalf_of,
        "reason": body.reason,
        "to_party": body.to,
    }
    cipher = cipher_of(request)
    await session.execute(
        # Personal data at rest is sealed: the actor's name and what the note says.
        actions.insert().values(sealed_columns(cipher, row, SEALED_ACTION_COLUMNS))
    )
    if transition.changed:
        # Moved at once, so the caller's next action is judged against where this one led;
        # escalation's status change for this action carries the same time and confirms it.
        await session.execute(
            update(incidents)
            .where(incidents.c.id == incident_id)
            .values(
                status=transition.status, status_reason=transition.reason, status_changed_at=now
            )
        )
    names = subject_names(cipher.open_subjects(incident.facts))
    event = ActionRecorded(
        incident_id=incident_id,
        action_id=action_id,
        action=body.action,
        party=body.party,
        actor_name=body.actor_name,
        occurred_at=row["occurred_at"],
        recorded_at=now,
        note=masked_or_none(body.note, names),
        on_behalf_of=body.on_behalf_of,
        reason=masked_or_none(body.reason, names),
        to=body.to,
    )
    await runtime_of(request).outbox.add(session, CloudEvent.new(SOURCE, event, incident_id))
    response.headers["Location"] = incident_location(incident_id)
    return action_out(row)


@router.post(
    "/{incident_id}/reports",
    status_code=201,
    summary="File a follow-up (续报) or correction",
    responses=STATUS_CONFLICT,
)
async def file_report(
    incident_id: UUID,
    body: ReportIn,
    request: Request,
    response: Response,
    session: DatabaseSession,
    caller: Caller,
) -> ReportOut:
    incident = await _locked_incident(session, incident_id)
    authorize(caller, Permission.FILE_REPORT, incident.township_code)
    refuse_merged(incident)
    check_party(directory_of(request), body.reporter.party, "reporter.party")
    speaks_for(caller, body.reporter.party, "reporter.party")
    response.headers["Location"] = incident_location(incident_id)
    return await _file(session, request, incident, body)


async def _file(
    session: AsyncSession, request: Request, incident: Row, body: ReportIn
) -> ReportOut:
    """File a follow-up or correction on the locked `incident`, with its event."""
    incident_id = incident.id
    directory = directory_of(request)
    if not lifecycle.is_open(LifecycleStatus(incident.status)):
        raise status_conflict(
            incident.status,
            f"A {body.kind} cannot be filed while the incident is {incident.status}.",
        )
    cipher = cipher_of(request)
    stored = cipher.open_subjects(incident.facts)
    township = (
        known_township(directory, body.changes.township, "changes.township")
        if body.changes.township is not None
        else None
    )
    facts, changes, previous = incident_facts.apply_changes(stored, body.changes, township)
    refuse_unfounded_move(changes, body)
    names = subject_names(stored)
    now = datetime.now(UTC)
    report_id = uuid4()
    reporter = ReporterIn.model_validate(body.reporter).model_dump(mode="json")
    await session.execute(
        reports.insert().values(
            id=report_id,
            incident_id=incident_id,
            kind=body.kind,
            changes=cipher.seal_subjects(changes),
            previous=cipher.seal_subjects(previous),
            reporter=cipher.seal_reporter(reporter),
            text=cipher.seal_value(body.text, "text"),
            reason=body.reason,
            filed_at=now,
        )
    )
    sealed = cipher.seal_subjects(facts)
    await session.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(
            facts=sealed,
            category=facts["category"],
            phase=facts["phase"],
            # Access follows the township: its 司法所 reads the incident, the old one no longer.
            township_code=facts["township_code"],
            updated_at=now,
        )
    )
    event = ReportFiled(
        incident_id=incident_id,
        report_id=report_id,
        kind=body.kind,
        reporter=incident_facts.event_reporter(reporter),
        filed_at=now,
        changes=incident_facts.masked(changes, names),
        previous=incident_facts.masked(previous, names),
        # Free text leaves intake masked: the subjects', old and new, and numbers people typed.
        text=masked_or_none(body.text, (*names, *subject_names(facts))),
        sealed_subjects=sealed_subjects(sealed) if "subjects" in changes else None,
        reason=masked_or_none(body.reason, (*names, *subject_names(facts))),
    )
    await runtime_of(request).outbox.add(session, CloudEvent.new(SOURCE, event, incident_id))
    return ReportOut(
        id=report_id,
        kind=body.kind,
        changes=incident_facts.masked(changes, names),
        previous=incident_facts.masked(previous, names),
        reporter=reporter,
        text=body.text,
        reason=body.reason,
        filed_at=now,
    )


# Who may say a drill was in fact real (docs/rules.md "How rules apply").
DRILL_TO_REAL_PARTIES = frozenset({PartyKind.SFS, PartyKind.BLO})


def refuse_unfounded_move(changes: dict[str, Any], body: ReportIn) -> None:
    """422 for a correction that may not change what it changes: a township moved without a
    reason, a real incident called a drill, a drill called real by a party not entitled to."""
    if "township_code" in changes and not (body.reason or "").strip():
        raise invalid_field(
            "reason", "moving the incident to another township needs a reason (why it moved)"
        )
    if "drill" in changes:
        if changes["drill"]:
            raise invalid_field(
                "changes.drill", "real → drill is refused: a real incident stays real"
            )
        if party_kind_of(body.reporter.party) not in DRILL_TO_REAL_PARTIES:
            raise invalid_field(
                "changes.drill",
                "only a 司法所 (SFS) or the BLO may correct a drill to real",
            )


@dataclass(frozen=True)
class Shown:
    """An incident's personal data as one reader may see it: in clear with pii:read, else
    masked, with the names of its current and former subjects (a name corrected away is still
    a name in the old texts)."""

    cipher: PiiCipher
    unmasked: bool
    names: tuple[str, ...]

    @property
    def personal_data(self) -> Literal["masked", "shown"]:
        return "shown" if self.unmasked else "masked"

    def facts(self, values: dict) -> dict:
        opened = self.cipher.open_subjects(values)
        return opened if self.unmasked else incident_facts.masked(opened, self.names)

    def text(self, text: str | None) -> str | None:
        return text if self.unmasked else masked_or_none(text, self.names)

    def reporter(self, stored: dict) -> dict:
        reporter = self.cipher.open_subjects(stored)
        return reporter if self.unmasked else masked_reporter(reporter)

    def action(self, row: Row) -> ActionOut:
        actor_name = self.cipher.open_value(row.actor_name, "actor_name")
        return action_out(
            {
                **row._mapping,
                "actor_name": actor_name if self.unmasked else masked_name(actor_name),
                "note": self.text(self.cipher.open_value(row.note, "note")),
                "reason": self.text(row.reason),
            }
        )

    def link(self, row: Row) -> LinkOut:
        return link_out(row, self.cipher, masked=not self.unmasked)

    def report(self, row: Row) -> ReportOut:
        return ReportOut(
            id=row.id,
            kind=row.kind,
            changes=self.facts(row.changes),
            previous=self.facts(row.previous),
            reporter=self.reporter(row.reporter),
            text=self.text(self.cipher.open_value(row.text, "text")),
            reason=self.text(row.reason),
            filed_at=row.filed_at,
            stated=self.facts(row.stated) if row.stated is not None else None,
            external_ref=row.external_ref,
            linked_by=row.linked_by,
            split_into=row.split_into,
        )


def names_ever_stated(cipher: PiiCipher, facts: dict, stated: list[Row]) -> tuple[str, ...]:
    """The names of an incident's current and former subjects: of its `facts` and of what its
    reports (`stated`: rows with `changes`, `previous`, `stated`) said."""
    return tuple(
        {
            *subject_names(cipher.open_subjects(facts)),
            *(
                name
                for row in stated
                for values in (row.changes, row.previous, row.stated or {})
                for name in subject_names(cipher.open_subjects(values))
            ),
        }
    )


async def _shown_to(
    session: AsyncSession, request: Request, incident: Row, caller: Principal
) -> Shown:
    """How `caller` sees the incident's personal data; a read in clear is published
    (incident.personal_data_read) in the transaction that serves it."""
    cipher = cipher_of(request)
    stated = await session.execute(
        select(reports.c.changes, reports.c.previous, reports.c.stated).where(
            reports.c.incident_id == incident.id
        )
    )
    names = names_ever_stated(cipher, incident.facts, list(stated))
    unmasked = caller.may_read_personal_data
    if unmasked:
        await record_read(
            runtime_of(request).outbox,
            session,
            SOURCE,
            incident.id,
            caller,
            (*SUBJECT_FIELDS, "free text"),
        )
    return Shown(cipher, unmasked, names)


def _reports_of(incident_id: UUID) -> tuple[Select, tuple[Column, ...]]:
    """An incident's reports and their order: as filed."""
    query = select(reports).where(reports.c.incident_id == incident_id)
    return query, (reports.c.filed_at, reports.c.id)


def _actions_of(incident_id: UUID) -> tuple[Select, tuple[Column, ...]]:
    """An incident's actions and their order: as they happened, then as recorded."""
    query = select(actions).where(actions.c.incident_id == incident_id)
    return query, (actions.c.occurred_at, actions.c.recorded_at, actions.c.id)


@router.get(
    "",
    summary="Incidents the caller may read, newest report first (`reported_at`, then `id`), "
    "filtered; paged (`limit`, `after`; `next` names the following page). A 司法所, 指挥小组 "
    "or 派出所 sees only its own township's (asking for another township is refused, 403); "
    "the banner offices and the platform see all. Personal data is always masked here",
)
async def list_incidents(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    status: Annotated[
        list[LifecycleStatus] | None,
        Query(description="lifecycle status as intake projects it; repeat for any of several"),
    ] = None,
    township: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="township code or name (e.g. 150626102)",
        ),
    ] = None,
    category: Annotated[
        list[Category] | None, Query(description="repeat for any of several")
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="reported at or after this time (with its zone)")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="reported before this time (with its zone)")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="text searched where it is stored in clear, case-insensitively: part of "
            "a subject's 社区矫正对象编号, of a source's reference (警情编号), or the start of "
            "the incident id. Summaries, locations, names and ID numbers are sealed at rest "
            "and never searched",
        ),
    ] = None,
    limit: Limit = PAGE,
    after: After = None,
) -> IncidentList:
    authorize(caller, Permission.READ_INCIDENT, caller.township)
    chosen = []
    if township is not None:
        asked = known_township(directory_of(request), township, "township")
        authorize(caller, Permission.READ_INCIDENT, asked.code)
        chosen.append(incidents.c.township_code == asked.code)
    if caller.township is not None:  # a local party: its own township's, whatever it asks
        chosen.append(incidents.c.township_code == caller.township)
    if status:
        chosen.append(incidents.c.status.in_([str(value) for value in status]))
    if category:
        chosen.append(incidents.c.category.in_([str(value) for value in category]))
    if since is not None and until is not None and until <= since:
        raise invalid_field("until", "must lie after `since`", "query")
    if since is not None:
        chosen.append(incidents.c.reported_at >= since)
    if until is not None:
        chosen.append(incidents.c.reported_at < until)
    if q is not None:
        chosen.append(searched(q))
    page = await rows_page(
        session,
        select(incidents).where(*chosen),
        (incidents.c.reported_at, incidents.c.id),
        limit,
        after,
        newest_first=True,
    )
    return IncidentList(
        items=await incident_items(session, cipher_of(request), directory_of(request), page.items),
        next=page.next,
    )


def searched(text: str) -> ColumnElement[bool]:
    """Incidents `text` names in what is stored in clear: a subject id, a source's reference,
    the start of the incident id. Nothing sealed is searched, so a match tells nobody what a
    sealed field holds."""
    literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    anywhere = f"%{literal}%"
    return or_(
        cast(incidents.c.id, String).ilike(f"{literal}%", escape="\\"),
        exists().where(
            incident_subjects.c.incident_id == incidents.c.id,
            incident_subjects.c.subject_id.ilike(anywhere, escape="\\"),
        ),
        exists().where(
            external_refs.c.incident_id == incidents.c.id,
            external_refs.c.external_ref.ilike(anywhere, escape="\\"),
        ),
        exists().where(
            reports.c.incident_id == incidents.c.id,
            reports.c.external_ref.ilike(anywhere, escape="\\"),
        ),
    )


async def _counts(session: AsyncSession, table: Table, ids: list[UUID]) -> dict[UUID, int]:
    rows = await session.execute(
        select(table.c.incident_id, func.count())
        .where(table.c.incident_id.in_(ids))
        .group_by(table.c.incident_id)
    )
    return {incident_id: count for incident_id, count in rows.tuples()}


async def incident_items(
    session: AsyncSession, cipher: PiiCipher, directory: Directory, rows: list[Row]
) -> list[IncidentItemOut]:
    """Incidents as a list shows them: the summary masked with every name their reports ever
    gave the subjects, as the incident itself masks it."""
    ids = [row.id for row in rows]
    stated: dict[UUID, list[Row]] = defaultdict(list)
    for report in await session.execute(
        select(
            reports.c.incident_id, reports.c.changes, reports.c.previous, reports.c.stated
        ).where(reports.c.incident_id.in_(ids))
    ):
        stated[report.incident_id].append(report)
    filed, recorded = await _counts(session, reports, ids), await _counts(session, actions, ids)
    items = []
    for row in rows:
        facts = cipher.open_subjects(row.facts)
        shown = incident_facts.masked(facts, names_ever_stated(cipher, row.facts, stated[row.id]))
        place = directory.township(row.township_code)
        items.append(
            IncidentItemOut(
                id=row.id,
                category=row.category,
                phase=row.phase,
                township_code=row.township_code,
                township_name=place.name if place is not None else facts["township_name"],
                status=row.status,
                status_changed_at=row.status_changed_at,
                reported_at=row.reported_at,
                occurred_at=facts.get("occurred_at"),
                drill=bool(facts.get("drill")),
                summary=shown.get("summary"),
                reporter_party=row.reporter["party"],
                subjects=len(facts.get("subjects") or ()),
                reports=filed.get(row.id, 0),
                actions=recorded.get(row.id, 0),
                merged_into=row.merged_into,
            )
        )
    return items


@router.get(
    "/{incident_id}",
    summary="The incident: facts as reported and lifecycle status, with its first 100 reports "
    "and actions (`reports_next`, `actions_next` lead to the rest); personal data masked "
    "unless the caller holds pii:read, and then every read is audited",
)
async def get_incident(
    incident_id: UUID, request: Request, session: DatabaseSession, caller: Caller
) -> IncidentOut:
    incident = await _readable_incident(session, incident_id, caller)
    shown = await _shown_to(session, request, incident, caller)
    action_page = await rows_page(session, *_actions_of(incident_id), PAGE, None)
    report_page = await rows_page(session, *_reports_of(incident_id), PAGE, None)
    return IncidentOut(
        id=incident.id,
        status=incident.status,
        status_reason=incident.status_reason,
        status_changed_at=incident.status_changed_at,
        reported_at=incident.reported_at,
        reporter=shown.reporter(incident.reporter),
        facts=shown.facts(incident.facts),
        personal_data=shown.personal_data,
        actions=[shown.action(row) for row in action_page.items],
        actions_next=action_page.next,
        reports=[shown.report(row) for row in report_page.items],
        reports_next=report_page.next,
        merged_into=incident.merged_into,
        links=[shown.link(row) for row in await linking.links_of(session, incident_id)],
    )


async def _shown_page(
    session: AsyncSession,
    request: Request,
    caller: Principal,
    incident_id: UUID,
    listing: tuple[Select, tuple[Column, ...]],
    limit: int,
    after: str | None,
) -> tuple[Shown, Page[Row]]:
    """A page of one of the incident's lists, and how the caller sees its personal data."""
    incident = await _readable_incident(session, incident_id, caller)
    page = await rows_page(session, *listing, limit, after)
    return await _shown_to(session, request, incident, caller), page


@router.get(
    "/{incident_id}/reports",
    summary="The incident's reports (首报, 续报, corrections, linked reports) as filed; paged "
    "(`limit`, `after`; `next` names the following page); personal data as in the incident",
)
async def list_reports(
    incident_id: UUID,
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    limit: Limit = PAGE,
    after: After = None,
) -> ReportList:
    shown, page = await _shown_page(
        session, request, caller, incident_id, _reports_of(incident_id), limit, after
    )
    return ReportList(
        incident_id=incident_id,
        personal_data=shown.personal_data,
        items=[shown.report(row) for row in page.items],
        next=page.next,
    )


@router.get(
    "/{incident_id}/actions",
    summary="The actions recorded against the incident as they happened; paged (`limit`, "
    "`after`; `next` names the following page); personal data as in the incident",
)
async def list_actions(
    incident_id: UUID,
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    limit: Limit = PAGE,
    after: After = None,
) -> ActionList:
    shown, page = await _shown_page(
        session, request, caller, incident_id, _actions_of(incident_id), limit, after
    )
    return ActionList(
        incident_id=incident_id,
        personal_data=shown.personal_data,
        items=[shown.action(row) for row in page.items],
        next=page.next,
    )


# --- one event, several reports (R20) ---------------------------------------------------------

LINKING_PARTIES = frozenset({PartyKind.TCG, PartyKind.BLO})


def link_out(row: Row, cipher: PiiCipher, *, masked: bool = False) -> LinkOut:
    """A link as stored, its decider's name opened (and masked for a reader without
    pii:read)."""
    actor_name = cipher.open_value(row.actor_name, "actor_name")
    return LinkOut.model_validate(
        {**row._mapping, "actor_name": masked_name(actor_name) if masked else actor_name}
    )


@router.get(
    "/{incident_id}/candidates",
    summary="Open incidents that may be of the same event (R20): the same township and "
    "category within the policy's candidate window, with another or no subject id; for "
    "people to link, never linked by themselves; nearest first, paged (`limit`, `after`)",
)
async def list_candidates(
    incident_id: UUID,
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    limit: Limit = PAGE,
    after: After = None,
) -> CandidateList:
    incident = await _readable_incident(session, incident_id, caller)
    # Few by nature (one township, one category, the candidate window), so found in memory
    # and paged there, nearest first.
    page = items_page(
        await linking.candidates_of(session, correlation_of(request), incident),
        lambda found: (abs(found[0].apart.total_seconds()), found[1].id),
        (float, UUID),
        limit,
        after,
    )
    return CandidateList(
        items=[
            CandidateOut(
                id=row.id,
                category=row.category,
                phase=row.phase,
                status=row.status,
                reported_at=row.reported_at,
                reporter_party=row.reporter["party"],
                minutes_apart=int(candidate.apart.total_seconds() // 60),
                why=candidate.why,
            )
            for candidate, row in page.items
        ],
        next=page.next,
    )


@router.post(
    "/{incident_id}/links",
    status_code=201,
    summary="Link, merge or unlink two incidents of one event (R20), by the township's "
    "command group (TCG) or the banner office (BLO), with a reason",
    responses={
        409: {"description": "Already linked, not linked, merged, closed, or drill and real"}
    },
)
async def link_incidents(
    incident_id: UUID,
    body: LinkIn,
    request: Request,
    response: Response,
    session: DatabaseSession,
    caller: Caller,
) -> LinkOut:
    if body.report_id is not None:
        incident = await _locked_incident(session, incident_id)
        authorize(caller, Permission.LINK_INCIDENTS, incident.township_code)
        speaks_for(caller, body.party, "party")
        if party_kind_of(body.party) not in LINKING_PARTIES:
            raise invalid_field("party", "incidents are linked by a TCG or the BLO (R20)")
        response.status_code = 200
        response.headers["Location"] = incident_location(incident_id)
        return await _split(session, request, incident, body, body.report_id)
    assert body.incident_id is not None
    if body.incident_id == incident_id:
        raise invalid_field("incident_id", "an incident is not linked to itself")
    locked = {
        key: await _locked_incident(session, key)
        for key in sorted((incident_id, body.incident_id))  # one order: no deadlock
    }
    this, other = locked[incident_id], locked[body.incident_id]
    for row in (this, other):
        authorize(caller, Permission.LINK_INCIDENTS, row.township_code)
    check_party(directory_of(request), body.party, "party")
    speaks_for(caller, body.party, "party")
    if party_kind_of(body.party) not in LINKING_PARTIES:
        raise invalid_field("party", "incidents are linked by a TCG or the BLO (R20)")
    now = datetime.now(UTC)
    response.headers["Location"] = incident_location(incident_id)
    existing = await linking.active_link(session, incident_id, body.incident_id)
    if body.action == "UNLINK":
        if existing is None:
            raise Problem(
                409,
                "Not linked",
                f"Incidents {incident_id} and {body.incident_id} are not linked or merged.",
                kind="not-linked",
            )
        response.status_code = 200
        return await _unlink(session, request, existing, body, now)
    if existing is not None:
        raise Problem(
            409,
            "Already linked",
            f"Incidents {incident_id} and {body.incident_id} are already one event "
            f"({existing.kind} {existing.id}); unlink first to change it.",
            kind="already-linked",
            link_id=str(existing.id),
        )
    for row in (this, other):
        refuse_merged(row)
    if bool(this.facts.get("drill")) != bool(other.facts.get("drill")):
        raise Problem(
            409,
            "A drill and a real incident",
            "A drill and a real incident are never one event (R16).",
            kind="drill-and-real",
        )
    if body.action == "MERGE":
        for row in (this, other):
            if not lifecycle.is_open(LifecycleStatus(row.status)):
                raise status_conflict(
                    row.status, f"Incident {row.id} is {row.status}: only open ones merge."
                )
    return await _link(session, request, this, other, body, now)


async def _link(
    session: AsyncSession,
    request: Request,
    this: Row,
    other: Row,
    body: LinkIn,
    now: datetime,
) -> LinkOut:
    cipher = cipher_of(request)
    changes: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    names: tuple[str, ...] = ()
    facts = cipher.open_subjects(this.facts)
    if body.action == "MERGE":
        merged = cipher.open_subjects(other.facts)
        changes, previous = linking.fact_changes(correlation_of(request), facts, merged)
        facts = {**facts, **changes}
        names = tuple(s["name"] for s in (*facts["subjects"], *merged["subjects"]))
        await linking.store_facts(session, cipher, this.id, facts, now)
        await session.execute(
            update(incidents).where(incidents.c.id == other.id).values(merged_into=this.id)
        )
    row = {
        "id": uuid4(),
        "incident_id": this.id,
        "linked_incident_id": other.id,
        "kind": body.action,
        "party": body.party,
        "actor_name": body.actor_name,
        "reason": body.reason,
        "changes": cipher.seal_subjects(changes),
        "previous": cipher.seal_subjects(previous),
        "linked_at": now,
    }
    await session.execute(
        incident_links.insert().values(sealed_columns(cipher, row, SEALED_LINK_COLUMNS))
    )
    fact_fields = linking.fact_fields(cipher, facts, changes, previous, names)
    event: IncidentLinked | IncidentMerged
    if body.action == "MERGE":
        event = IncidentMerged(
            incident_id=this.id,
            merged_incident_id=other.id,
            link_id=row["id"],
            party=body.party,
            actor_name=body.actor_name,
            reason=body.reason,
            merged_at=now,
            **fact_fields,
        )
    else:
        event = IncidentLinked(
            incident_id=this.id,
            link_id=row["id"],
            linked_by="PEOPLE",
            linked_at=now,
            linked_incident_id=other.id,
            party=body.party,
            actor_name=body.actor_name,
            reason=body.reason,
            **fact_fields,
        )
    await runtime_of(request).outbox.add(session, CloudEvent.new(SOURCE, event, this.id))
    return LinkOut(**{name: value for name, value in row.items() if name in LinkOut.model_fields})


async def _unlink(
    session: AsyncSession, request: Request, link: Row, body: LinkIn, now: datetime
) -> LinkOut:
    """Undo a link or merge: the incidents are separate events again; a merged incident is
    open for work again, and the survivor's facts the merge set go back (R20)."""
    cipher = cipher_of(request)
    survivor = await _locked_incident(session, link.incident_id)
    facts = cipher.open_subjects(survivor.facts)
    changes: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    if link.kind == "MERGE":
        changes, previous = linking.restored(
            facts, cipher.open_subjects(link.changes), cipher.open_subjects(link.previous)
        )
        if changes:
            facts = {**facts, **changes}
            await linking.store_facts(session, cipher, survivor.id, facts, now)
        await session.execute(
            update(incidents)
            .where(incidents.c.id == link.linked_incident_id)
            .values(merged_into=None)
        )
    undone = {
        "unlinked_at": now,
        "unlinked_by": body.party,
        "unlinked_actor_name": body.actor_name,
        "unlink_reason": body.reason,
    }
    await session.execute(
        update(incident_links)
        .where(incident_links.c.id == link.id)
        .values(sealed_columns(cipher, undone, SEALED_LINK_COLUMNS))
    )
    names = subject_names(facts)
    event = IncidentUnlinked(
        incident_id=link.incident_id,
        linked_incident_id=link.linked_incident_id,
        link_id=link.id,
        was=link.kind,
        party=body.party,
        actor_name=body.actor_name,
        reason=body.reason,
        unlinked_at=now,
        **linking.fact_fields(cipher, facts, changes, previous, names),
    )
    await runtime_of(request).outbox.add(session, CloudEvent.new(SOURCE, event, link.incident_id))
    return link_out(link, cipher).model_copy(
        update={"unlinked_at": now, "unlinked_by": body.party, "unlink_reason": body.reason}
    )


async def _split(
    session: AsyncSession, request: Request, incident: Row, body: LinkIn, report_id: UUID
) -> LinkOut:
    """A report linked on arrival that is not of this event (a mistyped subject id, a reused
    reference) becomes an incident of its own, reported when it was; the facts it brought to
    this incident go back (R20)."""
    report = (
        await session.execute(
            select(reports)
            .where(
                reports.c.id == report_id,
                reports.c.incident_id == incident.id,
                reports.c.kind == "LINKED",
            )
            .with_for_update()
        )
    ).first()
    if report is None:
        raise not_found("Linked report", report_id)
    if report.split_into is not None:
        raise Problem(
            409,
            "Not linked",
            f"Report {report_id} was unlinked already: it is incident {report.split_into}.",
            kind="not-linked",
        )
    cipher = cipher_of(request)
    split = await linking.split_report(session, cipher, incident, report)
    outbox = runtime_of(request).outbox
    now = datetime.now(UTC)
    row = {
        "id": uuid4(),
        "incident_id": incident.id,
        "linked_incident_id": split.incident_id,
        "kind": "LINK",
        "party": "R20",  # linked by the rule on arrival, not by a party
        "actor_name": "系统（R20）",
        "reason": f"报告到达时按{report.linked_by}自动关联",
        "changes": {},
        "previous": {},
        "linked_at": report.filed_at,
        "unlinked_at": now,
        "unlinked_by": body.party,
        "unlinked_actor_name": body.actor_name,
        "unlink_reason": body.reason,
    }
    await session.execute(
        incident_links.insert().values(sealed_columns(cipher, row, SEALED_LINK_COLUMNS))
    )
    await outbox.add(session, CloudEvent.new(SOURCE, split.reported, split.incident_id))
    event = IncidentUnlinked(
        incident_id=incident.id,
        linked_incident_id=split.incident_id,
        link_id=report.id,
        was="LINK",
        party=body.party,
        actor_name=body.actor_name,
        reason=body.reason,
        unlinked_at=now,
        **split.restored,
    )
    await outbox.add(session, CloudEvent.new(SOURCE, event, incident.id))
    return LinkOut(**{name: value for name, value in row.items() if name in LinkOut.model_fields})
