"""REST routes of audit: timelines, the Merkle log and its proofs, checkpoints, findings with
their reviews, R15's commendations and disciplines, and the investigation report. Every query
runs as the writer role, which can only read and append.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, Select, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import judgements, report, store
from services.audit.checkpoints import SOURCE
from services.audit.findings import LoggedEvent
from services.audit.findings import fact_now as findings_fact_now
from services.audit.linking import LINK_TYPES
from services.audit.merkle import ProofError
from services.audit.models import (
    checkpoints,
    cosignatures,
    finding_reviews,
    findings,
    incident_leaves,
    log_entries,
)
from services.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    open_checkpoint,
    verify_cosignature,
)
from services.audit.personal import about_incident
from services.audit.schemas import (
    AccountabilityIn,
    AccountabilityListOut,
    AccountabilityOut,
    AuditContext,
    CheckpointOut,
    ConsistencyProofOut,
    FindingOut,
    FindingsOut,
    IncidentProofsOut,
    InclusionProofOut,
    LogEntryOut,
    LogHeadOut,
    LogVerificationOut,
    ProvenEntryOut,
    ReviewIn,
    ReviewOut,
    TimelineOut,
)
from services.audit.shown import LOG_FIELDS, holds_personal_data, masked_event
from services.audit.verification import LeafChecker, judge
from shared import paging
from shared.auth import Caller, authorize
from shared.domain.access import Permission, Principal
from shared.domain.vocabulary import PARTY_PATTERN
from shared.events.models import AccountabilityRecorded, FindingReviewed
from shared.observability import IncidentRoute
from shared.pii import SUBJECT_FIELDS, SUBJECTS, PersonalDataKeyError, record_read
from shared.problems import Problem, invalid_field, not_found
from shared.runtime import runtime_of

logger = logging.getLogger(__name__)
router = APIRouter(tags=["audit"], route_class=IncidentRoute)
# Checkpoints, the verifier key and proofs are hashes only and exist to be checked by anyone;
# a witness's cosignature is proven by its own signature. No bearer token on these.
proof_router = APIRouter(tags=["proofs"], route_class=IncidentRoute)
NOTE_MEDIA_TYPE = "text/plain; charset=utf-8"


async def writer_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, as the role that may only read and append."""
    async with runtime_of(request).sessions() as session, session.begin():
        await store.act_as_writer(session)
        yield session


# "function" scope: the transaction ends before the response is sent.
Session = Annotated[AsyncSession, Depends(writer_session, scope="function")]


def context_of(request: Request) -> AuditContext:
    return request.app.state.audit


def b64(digest: bytes) -> str:
    return base64.b64encode(bytes(digest)).decode()


async def entries_out(
    request: Request, session: AsyncSession, rows: list[Row], clear: bool, with_leaf: bool = False
) -> list[LogEntryOut]:
    """Leaves as the caller may read them: personal fields opened with their incident's data
    key (or marked erased), then masked unless `clear` (pii:read); `with_leaf`: the bytes the
    leaf hash commits to as well, where the caller may have them (`exported_leaf`)."""
    opened = await context_of(request).data_keys.opened(
        session, [(row.subject, json.loads(row.leaf)) for row in rows]
    )
    return [
        LogEntryOut(
            index=row.index,
            ce_id=row.ce_id,
            ce_source=row.ce_source,
            ce_type=row.ce_type,
            ce_time=row.ce_time,
            topic=row.topic,
            partition=row.partition,
            offset=row.offset,
            leaf_hash=bytes(row.leaf_hash).hex(),
            event=event if clear or not about_incident(row.subject) else masked_event(event),
            personal_data_erased=found.erased > 0,
            leaf=exported_leaf(row, clear).get("leaf") if with_leaf else None,
        )
        for row, (event, found) in zip(rows, opened, strict=True)
    ]


async def logged_events(
    request: Request, session: AsyncSession, leaves: Iterable[tuple[int, bytes]], clear: bool
) -> list[LoggedEvent]:
    """Stored leaves as the report reads them: opened, and masked unless `clear`."""
    documents = [(index, json.loads(leaf)) for index, leaf in leaves]
    opened = await context_of(request).data_keys.opened(
        session, [(document["subject"], document) for _, document in documents]
    )
    events = [
        LoggedEvent.from_document(index, document)
        for (index, _), (document, _) in zip(documents, opened, strict=True)
    ]
    return [
        event
        if clear or not about_incident(event.subject or "")
        else replace(event, data=masked_event(event.data))
        for event in events
    ]


Shown = TypeVar("Shown", bound=BaseModel)


def shown_model(model: Shown, clear: bool) -> Shown:
    """A finding, review or record as the caller may read it."""
    if clear:
        return model
    return type(model).model_validate(masked_event(model.model_dump(mode="json")))


async def record_log_read(
    request: Request, session: AsyncSession, caller: Principal, incidents: Iterable[str]
) -> None:
    """A read in clear of incidents' log entries (pii:read), staged as
    audit.personal_data_read of each incident, in the transaction that serves it."""
    for incident in sorted(set(incidents)):
        try:
            incident_id = UUID(incident)
        except ValueError:
            continue  # a checkpoint's, about no incident
        await record_read(
            runtime_of(request).outbox, session, SOURCE, incident_id, caller, LOG_FIELDS
        )


def proof_problem(error: ProofError | LookupError) -> Problem:
    return Problem(422, "No such proof", str(error), kind="no-such-proof")


# Indexes and sizes beyond what PostgreSQL's bigint holds name no leaf.
Index = Annotated[int, Path(ge=0, le=2**62)]
MAX_SIZE = 2**62


FACT_TYPES = frozenset({"incident.reported", "incident.report_filed", *LINK_TYPES})


def fact_now(rows: list[Row], name: str) -> Any:
    """One fact of the incident as it now stands (`findings.fact_now`); rows in log order."""
    return findings_fact_now(
        (
            LoggedEvent.from_leaf(row.index, bytes(row.leaf))
            for row in rows
            if row.ce_type in FACT_TYPES
        ),
        name,
    )


def township_in(rows: list[Row]) -> str | None:
    """The incident's township as it now stands: a correction of the township moves its
    access too."""
    return fact_now(rows, "township_code")


def incident_leaves_query(incident_id: UUID) -> Select:
    """The incident's leaves: those published under it, and the links, merges and unlinks
    that name it though published under the other incident (R20); in the order they happened."""
    filed_under = select(incident_leaves.c.index).where(
        incident_leaves.c.incident_id == str(incident_id)
    )
    return (
        select(log_entries)
        .where(
            or_(
                log_entries.c.subject == str(incident_id),
                log_entries.c.index.in_(filed_under),
            )
        )
        .order_by(log_entries.c.ce_time, log_entries.c.index)
    )


async def incident_rows(session: AsyncSession, incident_id: UUID) -> list[Row]:
    """Every leaf of the incident (`incident_leaves_query`)."""
    rows = (await session.execute(incident_leaves_query(incident_id))).all()
    if not rows:
        raise not_found("Incident", incident_id)
    return list(rows)


LEAVES_PAGE, MAX_LEAVES_PAGE = 500, 500
LeavesLimit = Annotated[int, Query(ge=1, le=MAX_LEAVES_PAGE)]
After = Annotated[
    str | None, Query(max_length=200, description="`next` of the page before: what follows it")
]


async def incident_page(
    session: AsyncSession, caller: Principal, incident_id: UUID, limit: int, after: str | None
) -> tuple[list[Row], str | None]:
    """A page of the incident's leaves for a caller who may read its timeline, and the cursor
    of the next page. Access follows the township as the incident's facts now state it, read
    from its fact leaves only, whatever the page."""
    query = incident_leaves_query(incident_id)
    facts = (await session.execute(query.where(log_entries.c.ce_type.in_(FACT_TYPES)))).all()
    if after is not None:
        at, index = paging.position(after, (datetime, int))
        query = query.where(tuple_(log_entries.c.ce_time, log_entries.c.index) > tuple_(at, index))
    rows = list((await session.execute(query.limit(limit + 1))).all())
    if not facts and not rows and after is None:
        raise not_found("Incident", incident_id)
    authorize(caller, Permission.READ_TIMELINE, township_in(list(facts)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], paging.cursor((last.ce_time, last.index))


@router.get(
    "/v1/incidents/{incident_id}/timeline",
    summary="Every event of an incident, in the order it happened, a page at a time",
)
async def timeline(
    incident_id: UUID,
    request: Request,
    session: Session,
    caller: Caller,
    limit: LeavesLimit = LEAVES_PAGE,
    after: After = None,
) -> TimelineOut:
    rows, following = await incident_page(session, caller, incident_id, limit, after)
    clear = caller.may_read_personal_data
    if clear:
        await record_log_read(request, session, caller, [str(incident_id)])
    return TimelineOut(
        incident_id=str(incident_id),
        entries=await entries_out(request, session, rows, clear),
        next=following,
    )


async def signed_checkpoint(session: AsyncSession, size: int | None = None) -> Row:
    row = (
        await store.latest_checkpoint(session)
        if size is None
        else await store.checkpoint_of_size(session, size)
    )
    if row is None:
        raise not_found("Checkpoint", "latest" if size is None else size)
    return row


async def proofs_against(
    session: AsyncSession, indices: list[int], checkpoint: Row
) -> dict[int, list[bytes]]:
    """Inclusion proofs of the leaves the checkpoint covers."""
    covered = [index for index in indices if index < checkpoint.size]
    return await store.inclusion_proofs(session, covered, checkpoint.size)


@router.get(
    "/v1/incidents/{incident_id}/proofs",
    summary="An incident's leaves with inclusion proofs against the latest checkpoint",
)
async def incident_proofs(
    incident_id: UUID,
    session: Session,
    caller: Caller,
    limit: LeavesLimit = LEAVES_PAGE,
    after: After = None,
) -> IncidentProofsOut:
    rows, following = await incident_page(session, caller, incident_id, limit, after)
    checkpoint = await signed_checkpoint(session)
    proofs = await proofs_against(session, [row.index for row in rows], checkpoint)
    return IncidentProofsOut(
        incident_id=str(incident_id),
        checkpoint=checkpoint_out(checkpoint),
        entries=[
            ProvenEntryOut(
                index=row.index,
                ce_type=row.ce_type,
                ce_time=row.ce_time,
                leaf_hash=b64(row.leaf_hash),
                covered=row.index in proofs,
                proof=[b64(step) for step in proofs.get(row.index, [])],
            )
            for row in rows
        ],
        next=following,
    )


@router.get("/v1/log/entries/{index}", summary="One log entry")
async def log_entry(
    index: Index, request: Request, session: Session, caller: Caller
) -> LogEntryOut:
    authorize(caller, Permission.READ_LOG)
    rows = await store.entries(session, [index])
    if not rows:
        raise not_found("Log entry", index)
    clear = caller.may_read_personal_data
    if clear:
        await record_log_read(request, session, caller, [rows[0].subject])
    (entry,) = await entries_out(request, session, rows, clear, with_leaf=True)
    return entry


@router.get("/v1/log/head", summary="Size and Merkle root of the log")
async def head(session: Session, caller: Caller) -> LogHeadOut:
    authorize(caller, Permission.READ_LOG)
    size = await store.log_size(session)
    root = await store.root_at(session, size)
    return LogHeadOut(size=size, head_hash=root.hex(), root_hash=b64(root))


VERIFY_PAGE = MAX_VERIFY_PAGE = 100_000


@router.get(
    "/v1/log/verify",
    summary="Re-derive the tree from the leaves, a page of them at a time; name the first leaf "
    "that no longer matches. `next` goes on where the page stopped; the last page (no `next`) "
    "judges the whole log against the checkpoint the first page named",
)
async def verify(
    session: Session,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_VERIFY_PAGE)] = VERIFY_PAGE,
    after: Annotated[
        str | None,
        Query(max_length=8192, description="`next` of the page before: go on from there"),
    ] = None,
) -> LogVerificationOut:
    authorize(caller, Permission.READ_LOG)
    size = await store.log_size(session)
    stored_root = await store.root_at(session, size)
    if after is None:
        latest = await store.latest_checkpoint(session)
        checkpoint = latest.size if latest is not None else None
        checker = LeafChecker([checkpoint] if checkpoint is not None else [])
    else:
        checkpoint, checker = verification_position(after)
        latest = None if checkpoint is None else await store.checkpoint_of_size(session, checkpoint)
        if checkpoint is not None and latest is None:
            raise invalid_field("after", "names a checkpoint this log did not sign", "query")
    rows = await session.stream(
        select(log_entries.c.index, log_entries.c.leaf, log_entries.c.leaf_hash)
        .where(log_entries.c.index >= checker.size)
        .order_by(log_entries.c.index)
        .limit(limit + 1)
        .execution_options(yield_per=2000)
    )
    more, counted = False, 0
    async for row in rows:
        if counted == limit:
            more = True
            break
        counted += 1
        if not checker.add(row.index, bytes(row.leaf), bytes(row.leaf_hash)):
            break  # a gap: nothing after it can be placed, and the verdict names it
    state = checker.state()
    check = checker.result()
    first_broken = check.changed[0] if check.changed else check.gap_at
    matches = None
    if latest is not None and check.size >= latest.size:
        verdict = judge(check, checkpoint_of(latest))
        matches = verdict.ok
        first_broken = verdict.first_bad_index if not verdict.ok else first_broken
    return LogVerificationOut(
        size=size,
        head_hash=stored_root.hex(),
        root_hash=b64(stored_root),
        checked=check.size,
        recomputed_root_hash=b64(check.root),
        first_broken_index=first_broken,
        checkpoint_size=checkpoint,
        checkpoint_matches=matches,
        next=verification_cursor(checkpoint, state) if more else None,
    )


def verification_cursor(checkpoint: int | None, state: dict[str, Any]) -> str:
    """Where a page of the verification stopped, with what it had re-derived; opaque."""
    position = json.dumps({"checkpoint": checkpoint, "check": state}, separators=(",", ":"))
    return base64.urlsafe_b64encode(position.encode()).decode()


def verification_position(cursor: str) -> tuple[int | None, LeafChecker]:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        checkpoint = position["checkpoint"]
        if checkpoint is not None and not isinstance(checkpoint, int):
            raise ValueError("checkpoint")
        sizes = [checkpoint] if checkpoint is not None else []
        return checkpoint, LeafChecker.resumed(sizes, position["check"])
    except (ValueError, KeyError, TypeError) as error:  # ProofError and binascii are ValueErrors
        raise invalid_field("after", "not a page position we gave", "query") from error


def checkpoint_of(row: Row) -> Checkpoint:
    return Checkpoint.parse(Note.parse(row.note).text)


def checkpoint_out(row: Row) -> CheckpointOut:
    return CheckpointOut(size=row.size, root_hash=b64(row.root_hash), note=row.note)


async def with_cosignatures(session: AsyncSession, row: Row) -> str:
    lines = (
        await session.execute(
            select(cosignatures.c.signature_line)
            .where(cosignatures.c.size == row.size)
            .order_by(cosignatures.c.received_at)
        )
    ).scalars()
    note = Note.parse(row.note)
    for line in lines:
        note = note.with_signature(line)
    return note.render()


@proof_router.get(
    "/v1/log/checkpoint",
    summary="The latest signed checkpoint (C2SP tlog-checkpoint), with witness cosignatures",
    response_class=PlainTextResponse,
)
async def checkpoint(
    session: Session,
    size: Annotated[int | None, Query(ge=0, le=MAX_SIZE)] = None,
) -> Response:
    row = await signed_checkpoint(session, size)
    return PlainTextResponse(await with_cosignatures(session, row), media_type=NOTE_MEDIA_TYPE)


@proof_router.get("/v1/log/key", summary="The log's verifier key", response_class=PlainTextResponse)
async def log_key(request: Request) -> Response:
    return PlainTextResponse(context_of(request).log_key.vkey + "\n")


@proof_router.post(
    "/v1/log/cosignatures",
    status_code=201,
    summary="Add a witness's cosignature: the checkpoint note it cosigned",
)
async def add_cosignature(request: Request, session: Session) -> CheckpointOut:
    context = context_of(request)
    try:
        parsed, note = open_checkpoint((await request.body()).decode(), context.log_key)
    except (NoteError, UnicodeDecodeError) as error:
        raise Problem(422, "Not a checkpoint of this log", str(error), kind="bad-note") from error
    row = await signed_checkpoint(session, parsed.size)
    if Note.parse(row.note).text != note.text:
        raise Problem(409, "Checkpoint differs from the one this log signed", kind="fork")
    accepted = 0
    for witness in context.witnesses:
        try:
            timestamp = verify_cosignature(note, witness)
        except NoteError:
            continue
        line = next(s.line for s in note.signatures if (s.name, s.id) == (witness.name, witness.id))
        await session.execute(
            insert(cosignatures)
            .values(size=row.size, witness=witness.vkey, signature_line=line, timestamp=timestamp)
            .on_conflict_do_nothing()
        )
        accepted += 1
    if not accepted:
        raise Problem(422, "No cosignature of a known witness", kind="unknown-witness")
    return checkpoint_out(row)


@proof_router.get("/v1/log/proof/inclusion", summary="RFC 9162 inclusion proof of a leaf")
async def inclusion(
    session: Session,
    index: Annotated[int, Query(ge=0, le=MAX_SIZE)],
    size: Annotated[int, Query(ge=1, le=MAX_SIZE)],
) -> InclusionProofOut:
    try:
        bundle = await store.inclusion_bundle(session, index, size)
    except (ProofError, LookupError) as error:
        raise proof_problem(error) from error
    return InclusionProofOut(
        index=index,
        size=size,
        leaf_hash=b64(bundle.leaf_hash),
        root_hash=b64(bundle.root),
        proof=[b64(step) for step in bundle.proof],
    )


@proof_router.get(
    "/v1/log/proof/consistency", summary="RFC 9162 consistency proof between two sizes"
)
async def consistency(
    session: Session,
    old_size: Annotated[int, Query(alias="from", ge=1, le=MAX_SIZE)],
    new_size: Annotated[int, Query(alias="to", ge=1, le=MAX_SIZE)],
) -> ConsistencyProofOut:
    try:
        bundle = await store.consistency_bundle(session, old_size, new_size)
    except (ProofError, LookupError) as error:
        raise proof_problem(error) from error
    return ConsistencyProofOut(
        old_size=old_size,
        new_size=new_size,
        old_root_hash=b64(bundle.old_root),
        new_root_hash=b64(bundle.new_root),
        proof=[b64(step) for step in bundle.proof],
    )


EXPORT_PAGE, MAX_EXPORT_PAGE = 1000, 10_000
NDJSON = "application/x-ndjson"


@router.get(
    "/v1/log/export",
    summary="A page of leaves with the signed checkpoints that end among them, one JSON object "
    'a line, for offline checks; the last line names the next page ({"next": index}) when more '
    "follow. Leaves hold personal data sealed; one written before sealing that holds it in "
    "clear comes, without pii:read, as its stored hash and id only; with it, in full, and "
    "each such incident exported is logged as read",
    response_class=Response,
    responses={200: {"content": {NDJSON: {}}}},
)
async def export(
    request: Request,
    session: Session,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_PAGE)] = EXPORT_PAGE,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_SIZE, description="`next` of the page before: the leaves after it"),
    ] = None,
) -> Response:
    authorize(caller, Permission.READ_LOG)
    # The page is read whole and the transaction ends before the first byte is sent: a slow
    # client holds no transaction open (idle_in_transaction_session_timeout).
    first = 0 if after is None else after + 1
    rows = (
        await session.execute(
            select(
                log_entries.c.index,
                log_entries.c.ce_id,
                log_entries.c.subject,
                log_entries.c.leaf,
                log_entries.c.leaf_hash,
            )
            .where(log_entries.c.index >= first)
            .order_by(log_entries.c.index)
            .limit(limit + 1)
        )
    ).all()
    page = rows[:limit]
    end = page[-1].index + 1 if page else first
    notes = (
        await session.execute(
            select(checkpoints.c.note)
            .where(checkpoints.c.size > first, checkpoints.c.size <= end)
            .order_by(checkpoints.c.size)
        )
    ).scalars()
    clear = caller.may_read_personal_data
    if clear:
        read = [row.subject for row in page if holds_clear_personal_data(row)]
        await record_log_read(request, session, caller, read)
    lines = [{"checkpoint": note} for note in notes]
    lines += [exported_leaf(row, clear) for row in page]
    if len(rows) > limit:
        lines.append({"next": page[-1].index})
    body = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
    return Response(body, media_type=NDJSON)


def holds_clear_personal_data(row: Row) -> bool:
    """A leaf written before personal fields were sealed (migration 0006) may hold them in
    clear; one written since holds them as ciphertext only."""
    return about_incident(row.subject) and holds_personal_data(json.loads(row.leaf))


def exported_leaf(row: Row, clear: bool) -> dict[str, Any]:
    """A leaf as exported: its bytes, unless they hold personal data the caller may not read."""
    line: dict[str, Any] = {"index": row.index, "leaf_hash": b64(row.leaf_hash)}
    if clear or not holds_clear_personal_data(row):
        line["leaf"] = b64(row.leaf)
    else:
        line |= {"id": str(row.ce_id), "withheld": "personal data"}
    return line


async def findings_with_proofs(
    request: Request, session: AsyncSession, rows: list[Row], clear: bool
) -> tuple[Row | None, list[FindingOut]]:
    """The findings of `rows` with the proofs of their evidence, their reviews and state;
    personal data in their text masked unless `clear`."""
    keys = context_of(request).data_keys
    latest = await store.latest_checkpoint(session)
    listed = await judgements.findings_in(session, keys, rows)
    reviews = await judgements.reviews_of(session, keys, [finding.finding_id for finding in listed])
    superseded = await judgements.supersessions(session, keys, listed)
    result = []
    for row, finding in zip(rows, listed, strict=True):
        proofs = (
            await proofs_against(session, list(finding.evidence_log_indexes), latest)
            if latest is not None
            else {}
        )
        leaves = {leaf.index: leaf for leaf in await store.entries(session, proofs)}
        history = [shown_model(review, clear) for review in reviews[finding.finding_id]]
        result.append(
            FindingOut(
                **shown_model(finding, clear).model_dump(),
                found_at=row.found_at,
                checkpoint_size=latest.size if latest is not None else None,
                proofs=[
                    ProvenEntryOut(
                        index=index,
                        ce_type=leaves[index].ce_type,
                        ce_time=leaves[index].ce_time,
                        leaf_hash=b64(leaves[index].leaf_hash),
                        covered=True,
                        proof=[b64(step) for step in proof],
                    )
                    for index, proof in proofs.items()
                ],
                state=judgements.state_of(history, finding.finding_id in superseded),
                superseded_by=superseded.get(finding.finding_id),
                review=history[-1] if history else None,
                reviews=history,
            )
        )
    return latest, result


async def findings_out(
    request: Request, session: AsyncSession, caller: Principal, query: Select | list[Row]
) -> FindingsOut:
    rows = query if isinstance(query, list) else list((await session.execute(query)).all())
    clear = caller.may_read_personal_data
    if clear:
        await record_log_read(request, session, caller, [str(row.incident_id) for row in rows])
    latest, result = await findings_with_proofs(request, session, rows, clear)
    return FindingsOut(
        checkpoint=checkpoint_out(latest) if latest is not None else None, findings=result
    )


def findings_of_incident(incident_id: UUID) -> Select:
    return (
        select(findings)
        .where(findings.c.incident_id == incident_id)
        .order_by(findings.c.found_at, findings.c.finding_id)
    )


FINDINGS_PAGE, MAX_FINDINGS_PAGE = 100, 500
# A finding's state (`judgements.state_of`).
FindingState = Literal["OPEN", "CONFIRMED", "DISMISSED", "SUPERSEDED"]


@router.get(
    "/v1/findings",
    summary="Accountability findings (R9–R13, R17) with inclusion proofs of their evidence, "
    "their reviews and state (open, confirmed, dismissed, superseded)",
)
async def list_findings(
    request: Request,
    session: Session,
    caller: Caller,
    incident_id: UUID | None = None,
    party: Annotated[str | None, Query(pattern=PARTY_PATTERN)] = None,
    rule: Annotated[str | None, Query(pattern=r"^R\d{1,2}$")] = None,
    review_status: Annotated[
        list[FindingState] | None,
        Query(
            description="the finding's state, as `state` shows it (repeat for any of several): "
            "OPEN (not reviewed), CONFIRMED or DISMISSED (by its latest review), SUPERSEDED "
            "(a later finding stands in its place)"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FINDINGS_PAGE)] = FINDINGS_PAGE,
    after: After = None,
) -> FindingsOut:
    authorize(caller, Permission.READ_FINDINGS)
    query = select(findings).order_by(findings.c.found_at, findings.c.finding_id)
    if incident_id is not None:
        query = query.where(findings.c.incident_id == incident_id)
    if party is not None:
        query = query.where(findings.c.party == party)
    if rule is not None:
        query = query.where(findings.c.rule_id == rule)
    if review_status:
        query = query.where(maybe_in_state(review_status))
    return await findings_page(
        request, session, caller, query, limit, after, frozenset(review_status or ())
    )


def maybe_in_state(states: Iterable[str]) -> ColumnElement[bool]:
    """Findings that may be in one of `states`, judged from the tables alone: the latest
    review's decision, or none; a finding R10 or R12 may supersede (`judgements.state_of` has
    the last word, since a superseded finding is one whatever its reviews)."""
    latest = (
        select(finding_reviews.c.decision)
        .where(finding_reviews.c.finding_id == findings.c.finding_id)
        .order_by(finding_reviews.c.reviewed_at.desc(), finding_reviews.c.review_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    either = []
    for state in states:
        if state == "OPEN":
            either.append(latest.is_(None))
        elif state == "SUPERSEDED":
            either.append(findings.c.rule_id.in_(("R11", "R12")))
        else:
            either.append(latest == state)
    return or_(*either)


async def findings_page(
    request: Request,
    session: AsyncSession,
    caller: Principal,
    query: Select,
    limit: int,
    after: str | None,
    states: frozenset[str] = frozenset(),
) -> FindingsOut:
    """A page of the findings `query` selects (ordered by time found, then id), only those in
    one of `states` if any are named."""
    if after is not None:
        found_at, finding_id = paging.position(after, (datetime, UUID))
        query = query.where(
            tuple_(findings.c.found_at, findings.c.finding_id) > tuple_(found_at, finding_id)
        )
    if states:
        rows = await rows_in_states(request, session, query, limit + 1, states)
    else:
        rows = list((await session.execute(query.limit(limit + 1))).all())
    page = await findings_out(request, session, caller, rows[:limit])
    if len(rows) > limit:
        last = rows[limit - 1]
        page.next = paging.cursor((last.found_at, last.finding_id))
    return page


async def rows_in_states(
    request: Request, session: AsyncSession, query: Select, wanted: int, states: frozenset[str]
) -> list[Row]:
    """The first `wanted` rows of the findings `query` whose state is one of `states`, read a
    batch at a time in the query's order (time found, then id)."""
    keys = context_of(request).data_keys
    batch = max(wanted, FINDINGS_PAGE)
    kept: list[Row] = []
    while len(kept) < wanted:
        rows = list((await session.execute(query.limit(batch))).all())
        listed = await judgements.findings_in(session, keys, rows)
        found = await judgements.states_of(session, keys, listed)
        kept += [
            row
            for row, finding in zip(rows, listed, strict=True)
            if found[finding.finding_id] in states
        ]
        if len(rows) < batch:
            break
        last = rows[-1]
        query = query.where(
            tuple_(findings.c.found_at, findings.c.finding_id)
            > tuple_(last.found_at, last.finding_id)
        )
    return kept[:wanted]


@router.get(
    "/v1/incidents/{incident_id}/findings",
    summary="An incident's findings, dismissed and superseded ones included, with their "
    "reviews, a page at a time",
)
async def incident_findings(
    incident_id: UUID,
    request: Request,
    session: Session,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_FINDINGS_PAGE)] = FINDINGS_PAGE,
    after: After = None,
) -> FindingsOut:
    authorize(caller, Permission.READ_FINDINGS)
    return await findings_page(
        request, session, caller, findings_of_incident(incident_id), limit, after
    )


@router.post(
    "/v1/findings/{finding_id}/review",
    status_code=201,
    summary="Confirm or dismiss a finding, with the reason (BJO, CEO); published as "
    "finding.reviewed. A finding may be reviewed again: the latest review counts, all are kept",
)
async def review_finding(
    finding_id: UUID, body: ReviewIn, request: Request, session: Session, caller: Caller
) -> ReviewOut:
    authorize(caller, Permission.REVIEW_FINDINGS)
    keys = context_of(request).data_keys
    row = (
        await session.execute(
            select(findings.c.incident_id, findings.c.data).where(
                findings.c.finding_id == finding_id
            )
        )
    ).first()
    if row is None:
        raise not_found("Finding", finding_id)
    (finding,) = await judgements.findings_in(session, keys, [row])
    review = FindingReviewed(
        review_id=uuid4(),
        finding_id=finding_id,
        incident_id=finding.incident_id,
        rule_id=finding.rule_id,
        decision=body.decision,
        reason=body.reason,
        reviewer_party=caller.party,
        reviewer=caller.subject,
        reviewed_at=datetime.now(UTC),
        drill=finding.drill,
    )
    await judgements.add_review(session, keys, runtime_of(request).outbox, review)
    return review


@router.post(
    "/v1/incidents/{incident_id}/accountability",
    status_code=201,
    summary="R15: record a commendation or discipline against the filed investigation report "
    "(BJO), with the findings it rests on; published as accountability.recorded",
)
async def record_accountability(
    incident_id: UUID, body: AccountabilityIn, request: Request, session: Session, caller: Caller
) -> AccountabilityOut:
    authorize(caller, Permission.RECORD_ACCOUNTABILITY)
    rows = await incident_rows(session, incident_id)
    events = [LoggedEvent.from_leaf(row.index, bytes(row.leaf)) for row in rows]
    if not judgements.investigation_report_filed(events):
        raise Problem(
            409,
            "Investigation report not filed",
            "R15: commendations and disciplines are recorded once the investigation report "
            "(R14) is filed.",
            kind="report-not-filed",
        )
    keys = context_of(request).data_keys
    found = await judgements.findings_in(
        session, keys, (await session.execute(findings_of_incident(incident_id))).all()
    )
    states = await judgements.states_of(session, keys, found)
    refusal = judgements.refusal_of_record(body.kind, body.finding_ids, states)
    if refusal is not None:
        raise Problem(422, "Record not supported by findings", refusal, kind="bad-findings")
    record = AccountabilityRecorded(
        record_id=uuid4(),
        incident_id=incident_id,
        rule_id="R15",
        kind=body.kind,
        person=body.person,
        role=body.role,
        party=body.party,
        decision=body.decision,
        document_number=body.document_number,
        finding_ids=tuple(dict.fromkeys(body.finding_ids)),
        recorded_by=caller.party,
        recorded_at=datetime.now(UTC),
        drill=bool(fact_now(rows, "drill")),
    )
    await judgements.add_record(session, keys, runtime_of(request).outbox, record)
    return record


@router.get(
    "/v1/incidents/{incident_id}/accountability",
    summary="R15: the commendations and disciplines recorded for an incident",
)
async def list_accountability(
    incident_id: UUID,
    request: Request,
    session: Session,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_FINDINGS_PAGE)] = FINDINGS_PAGE,
    after: After = None,
) -> AccountabilityListOut:
    authorize(caller, Permission.READ_FINDINGS)
    position = paging.position(after, (datetime, UUID)) if after is not None else None
    keys = context_of(request).data_keys
    records = await judgements.records_of(session, keys, incident_id, limit + 1, position)
    clear = caller.may_read_personal_data
    if clear and records:
        await record_log_read(request, session, caller, [str(incident_id)])
    page = AccountabilityListOut(
        incident_id=incident_id,
        records=[shown_model(record, clear) for record in records[:limit]],
    )
    if len(records) > limit:
        last = records[limit - 1]
        page.next = paging.cursor((last.recorded_at, last.record_id))
    return page


async def subjects_in_clear(
    request: Request,
    session: AsyncSession,
    caller: Principal,
    incident_id: UUID,
    events: list[LoggedEvent],
) -> tuple[list[dict] | None, str | None]:
    """The incident's subjects opened from the sealed copy its reports carry, for a caller who
    may read personal data; otherwise None (masked), and for such a caller why nothing was
    opened."""
    if not caller.may_read_personal_data:
        return None, None
    sealed = report.latest_sealed_subjects(events)
    if sealed is None:
        return None, "日志中没有密封的对象信息"
    try:
        subjects = context_of(request).personal_data.open(sealed, SUBJECTS)
    except (PersonalDataKeyError, InvalidTag, KeyError, ValueError) as error:
        # The key was retired, or the sealed copy is not one intake made: the report stays
        # masked, and says so, rather than failing.
        logger.warning("subjects of incident %s not opened: %r", incident_id, error)
        return None, "密封的对象信息无法解密：密钥已停用或记录不完整"
    return subjects, None


def report_format(request: Request, requested: str | None) -> Literal["markdown", "html"]:
    if requested in ("markdown", "md"):
        return "markdown"
    if requested == "html":
        return "html"
    if requested is not None:
        raise Problem(406, "Unsupported format", "Use format=markdown or format=html.")
    accept = request.headers.get("accept", "")
    return "html" if "text/html" in accept and "text/markdown" not in accept else "markdown"


@router.get(
    "/v1/incidents/{incident_id}/investigation-report",
    summary="Draft investigation report (R14) in Chinese, as Markdown or HTML; subjects masked "
    "unless the caller holds pii:read, and then the read is audited",
    response_class=PlainTextResponse,
)
async def investigation_report(
    incident_id: UUID,
    request: Request,
    session: Session,
    caller: Caller,
    format: Annotated[str | None, Query(description="markdown or html")] = None,
) -> Response:
    authorize(caller, Permission.READ_REPORTS)
    chosen = report_format(request, format)
    rows = await incident_rows(session, incident_id)
    clear = caller.may_read_personal_data
    events = await logged_events(
        request, session, [(row.index, bytes(row.leaf)) for row in rows], clear
    )
    event_histories = await store.event_histories(session, [str(incident_id)], MAX_SIZE)
    joined = await logged_events(
        request,
        session,
        [
            (index, leaf)
            for incident, history in event_histories.items()
            if incident != str(incident_id)
            for index, leaf in history
        ],
        clear,
    )
    keys = context_of(request).data_keys
    finding_rows = (await session.execute(findings_of_incident(incident_id))).all()
    found = sorted(
        (
            shown_model(finding, clear)
            for finding in await judgements.findings_in(session, keys, finding_rows)
        ),
        key=lambda finding: finding.evidence_log_indexes,
    )
    reviews = await judgements.reviews_of(session, keys, [finding.finding_id for finding in found])
    latest = await store.latest_checkpoint(session)
    anchor = None
    if latest is not None:
        proofs = await proofs_against(session, [row.index for row in rows], latest)
        anchor = report.Anchor(
            note=await with_cosignatures(session, latest),
            size=latest.size,
            root_hash=b64(latest.root_hash),
            proofs=tuple(
                report.ProofRow(
                    index=row.index,
                    leaf_hash=b64(row.leaf_hash),
                    proof=tuple(b64(step) for step in proofs.get(row.index, [])),
                    covered=row.index in proofs,
                )
                for row in sorted(rows, key=lambda row: row.index)
            ),
        )
    subjects, masked_because = await subjects_in_clear(
        request, session, caller, incident_id, events
    )
    if clear:
        opened = SUBJECT_FIELDS if subjects is not None else ()
        await record_read(
            runtime_of(request).outbox,
            session,
            SOURCE,
            incident_id,
            caller,
            (*opened, *LOG_FIELDS),
        )
    context = context_of(request)
    view = report.build_view(
        str(incident_id),
        events,
        found,
        anchor,
        context.party_names,
        datetime.now(UTC),
        subjects,
        masked_because,
        zone=context.zone,
        judgements=report.Judgements(
            reviews=tuple(
                shown_model(review, clear) for history in reviews.values() for review in history
            ),
            records=tuple(
                shown_model(record, clear)
                for record in await judgements.records_of(session, keys, incident_id)
            ),
        ),
        joined=joined,
    )
    body = report.render(view, chosen)
    if chosen == "html":
        return HTMLResponse(body)
    return PlainTextResponse(body, media_type="text/markdown; charset=utf-8")
