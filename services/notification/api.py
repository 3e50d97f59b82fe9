"""REST routes of notification: alerts of an incident with every delivery and attempt, and
acknowledgement of an alert through the signed link it carried."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    ColumnElement,
    FromClause,
    Row,
    Table,
    and_,
    case,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification import ack_page
from services.notification.ack import AckClaim, AckSigner, AckTokenError
from services.notification.channels import shown_contact
from services.notification.dispatch import (
    Acknowledgement,
    acknowledge,
    contacts_of,
    on_the_console,
)
from services.notification.models import attempts, deliveries, notifications
from services.notification.schemas import (
    AckIn,
    AckOut,
    AttemptOut,
    DeliveryOut,
    NotificationList,
    NotificationOut,
)
from services.notification.status import NotificationKind, NotificationStatus
from shared.auth import Caller, authorize
from shared.domain.access import Permission, Principal
from shared.domain.directory import Township
from shared.domain.vocabulary import PARTY_PATTERN, TOWNSHIP_BOUND_KINDS, county_time, party_kind_of
from shared.observability import IncidentRoute
from shared.paging import PAGE, After, Limit, rows_page
from shared.problems import Problem, not_found
from shared.runtime import DatabaseSession, runtime_of

router = APIRouter(prefix="/v1/notifications", tags=["notifications"], route_class=IncidentRoute)
# Acknowledgement links carry their own signed token: no bearer token on these routes.
ack_router = APIRouter(
    prefix="/v1/notifications", tags=["acknowledgement"], route_class=IncidentRoute
)
ModelT = TypeVar("ModelT", bound=BaseModel)


def _acknowledged_by(row: Row) -> str | None:
    if row.acknowledged_via:
        return row.acknowledged_via
    if row.acknowledged_contact_index is None or not row.contacts:
        return None
    return shown_contact(contacts_of(row)[row.acknowledged_contact_index])


async def _grouped(
    session: AsyncSession, table: Table, ids: list[UUID], order: Column, model: type[ModelT]
) -> dict[UUID, list[ModelT]]:
    """Rows of `table` that belong to the notifications `ids`, as `model`, per notification."""
    grouped: dict[UUID, list[ModelT]] = defaultdict(list)
    if ids:
        query = select(table).where(table.c.notification_id.in_(ids)).order_by(order)
        for row in await session.execute(query):
            grouped[row.notification_id].append(model.model_validate(row, from_attributes=True))
    return grouped


async def _with_details(session: AsyncSession, rows: list[Row]) -> list[NotificationOut]:
    ids = [row.id for row in rows]
    tried = await _grouped(session, attempts, ids, attempts.c.attempted_at, AttemptOut)
    opened = await _grouped(session, deliveries, ids, deliveries.c.contact_index, DeliveryOut)
    return [
        NotificationOut(
            id=row.id,
            incident_id=row.incident_id,
            kind=row.kind,
            obligation_id=row.obligation_id,
            party=row.party,
            rule_id=row.rule_id,
            drill=row.drill,
            status=row.status,
            withdrawn_reason=row.withdrawn_reason,
            contacts_total=len(row.contacts) if row.contacts is not None else None,
            contact_index=row.contact_index,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            ack_seconds=row.ack_seconds,
            ack_due_at=row.ack_due_at,
            acknowledged_at=row.acknowledged_at,
            acknowledged_by=_acknowledged_by(row),
            closed_at=row.closed_at,
            title=row.alert["title"],
            deliveries=opened[row.id],
            attempts=tried[row.id],
        )
        for row in rows
    ]


# Alerts whose reader has not acknowledged them, whether still walking the contacts, walked to
# the end, or never delivered: what a duty board shows. Withdrawn ones asked nothing more.
NOT_ACKNOWLEDGED = "NOT_ACKNOWLEDGED"
AWAITING = (
    NotificationStatus.NEW,
    NotificationStatus.PENDING,
    NotificationStatus.DELIVERED,
    NotificationStatus.UNACKNOWLEDGED,
    NotificationStatus.FAILED,
)
StatusAsked = Literal[
    "NEW",
    "PENDING",
    "DELIVERED",
    "ACKNOWLEDGED",
    "UNACKNOWLEDGED",
    "FAILED",
    "WITHDRAWN",
    "INFORMED",
    "NOT_ACKNOWLEDGED",
]


def in_status(asked: list[str]) -> ColumnElement[bool]:
    """Alerts and notices in any of the `asked` states; NOT_ACKNOWLEDGED: an alert (never a
    notice) nobody acknowledged and not withdrawn."""
    named = [value for value in asked if value != NOT_ACKNOWLEDGED]
    either = [notifications.c.status.in_(named)] if named else []
    if NOT_ACKNOWLEDGED in asked:
        either.append(
            and_(
                notifications.c.kind == NotificationKind.ALERT,
                notifications.c.status.in_([str(status) for status in AWAITING]),
            )
        )
    return or_(*either)


def _place(table: FromClause) -> ColumnElement[str]:
    """The township (code or name) one alert names, as `township_of` reads it: its party's
    when township-bound, else its facts' or notice's."""
    return case(
        (
            func.split_part(table.c.party, ":", 1).in_([str(k) for k in TOWNSHIP_BOUND_KINDS]),
            func.split_part(table.c.party, ":", 2),
        ),
        else_=func.coalesce(
            table.c.alert["facts"]["township_code"].astext,
            table.c.alert["facts"]["township"].astext,
            table.c.alert["notice"]["township_code"].astext,
            table.c.alert["notice"]["township"].astext,
        ),
    )


def of_township(township: Township) -> ColumnElement[bool]:
    """Alerts of incidents of `township` as their newest alert naming a township says (a
    township correction moves the incident, and its alerts' access with it)."""
    newer = notifications.alias("newer")
    newest_place = (
        select(_place(newer))
        .where(newer.c.incident_id == notifications.c.incident_id, _place(newer).is_not(None))
        .order_by(newer.c.created_at.desc(), newer.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return newest_place.in_([township.code, township.name])


@router.get(
    "",
    summary="Alerts and notices, oldest first (`created_at`, then `id`), of one incident or "
    "of all the caller may read, filtered; paged (`limit`, `after`; `next` names the following "
    "page). A 司法所, 指挥小组 or 派出所 sees only those of its own township's incidents (an "
    "incident of another township is refused, 403); the banner offices and the platform see "
    "all. Each carries its deliveries and attempts: bounded by the party's contacts and "
    "NOTIFICATION_MAX_ATTEMPTS",
)
async def list_notifications(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    incident_id: Annotated[UUID | None, Query(description="one incident's only")] = None,
    party: Annotated[
        str | None, Query(pattern=PARTY_PATTERN, description="addressed to this party")
    ] = None,
    status: Annotated[
        list[StatusAsked] | None,
        Query(
            description="any of these states (repeat for several); NOT_ACKNOWLEDGED: alerts "
            "nobody acknowledged yet and not withdrawn (NEW PENDING DELIVERED UNACKNOWLEDGED "
            "FAILED), notices never"
        ),
    ] = None,
    limit: Limit = PAGE,
    after: After = None,
) -> NotificationList:
    authorize(caller, Permission.READ_NOTIFICATIONS, caller.township)
    chosen = []
    if party:
        chosen.append(notifications.c.party == party)
    if incident_id is not None:
        chosen.append(notifications.c.incident_id == incident_id)
        await authorize_incident(request, session, caller, chosen)
    if caller.township is not None:
        township = request.app.state.directory.township(caller.township)
        chosen.append(of_township(township) if township is not None else false())
    if status:
        chosen.append(in_status(status))
    page = await rows_page(
        session,
        select(notifications).where(*chosen),
        (notifications.c.created_at, notifications.c.id),
        limit,
        after,
    )
    return NotificationList(items=await _with_details(session, page.items), next=page.next)


async def authorize_incident(
    request: Request, session: AsyncSession, caller: Principal, chosen: list[ColumnElement[bool]]
) -> None:
    """403 unless the caller may read the alerts of the incident `chosen` names."""
    # Access follows the incident's township as its newest alert names it, whichever page
    # is asked for: only the parties and the facts' townships are read for it.
    places = select(
        notifications.c.party,
        func.jsonb_build_object(
            "facts",
            notifications.c.alert["facts"],
            "notice",
            notifications.c.alert["notice"],
            type_=JSONB,
        ).label("alert"),
    ).where(*chosen)
    every = (await session.execute(places.order_by(notifications.c.created_at))).all()
    authorize(caller, Permission.READ_NOTIFICATIONS, township_of(request, list(every)))


def township_of(request: Request, rows: list[Row]) -> str | None:
    """The township of the incident these alerts are about (None when there are none, or
    when only notices to banner parties say nothing of it, as a CEO's R15 notice): the newest
    alert's, since a township correction moves the incident and its access (`rows` oldest
    first)."""
    for row in reversed(rows):
        if party_kind_of(row.party) in TOWNSHIP_BOUND_KINDS:
            return row.party.split(":", 1)[1]
        # An alert keeps its facts under `facts`, a notice under `notice`.
        facts = row.alert.get("facts") or row.alert.get("notice") or {}
        named = facts.get("township_code") or facts.get("township")
        township = request.app.state.directory.township(named) if named else None
        if township is not None:
            return township.code
    return None


async def _readable_alert(
    request: Request, session: AsyncSession, caller: Principal, notification_id: UUID
) -> Row:
    """The alert, once the caller may read it (its incident's township); 404 when unknown."""
    row = (
        await session.execute(select(notifications).where(notifications.c.id == notification_id))
    ).first()
    if row is None:
        raise not_found("Notification", notification_id)
    authorize(caller, Permission.READ_NOTIFICATIONS, township_of(request, [row]))
    return row


def ack_out(done: Acknowledgement) -> AckOut:
    return AckOut(
        notification_id=done.notification_id,
        acknowledged_at=done.acknowledged_at,
        contact_index=done.contact_index,
        channel=done.channel,
        contact=done.contact,
        replayed=done.replayed,
    )


@router.post(
    "/{notification_id}/acknowledgement",
    summary="Acknowledge an alert of the caller's own party (the duty console's button); the "
    "alert's contacts acknowledge through the signed link they received instead",
    response_model=AckOut,
)
async def acknowledge_as_the_party(
    notification_id: UUID, request: Request, session: DatabaseSession, caller: Caller
) -> AckOut:
    row = await _readable_alert(request, session, caller, notification_id)
    # A duty belongs to its party: only the party alerted says it has read the alert.
    if row.party != caller.party:
        raise Problem(
            403,
            "Forbidden",
            f"the alert is for {row.party}: only that party acknowledges it",
            kind="forbidden",
        )
    if row.kind != NotificationKind.ALERT:
        raise Problem(409, "Nothing to acknowledge", "a notice only informs", kind="not-an-alert")
    done = await acknowledge(
        session,
        runtime_of(request).outbox,
        notification_id,
        None,
        via=on_the_console(caller.subject),
    )
    assert done is not None  # the row is there, locked by acknowledge
    return ack_out(done)


@router.get("/{notification_id}", summary="One alert with its deliveries and every attempt")
async def get_notification(
    notification_id: UUID, request: Request, session: DatabaseSession, caller: Caller
) -> NotificationOut:
    row = await _readable_alert(request, session, caller, notification_id)
    return (await _with_details(session, [row]))[0]


def _verified(request: Request, notification_id: UUID, token: str | None) -> AckClaim:
    if not token:
        raise Problem(
            401,
            "Acknowledgement token required",
            "Use the link the alert carried.",
            kind="ack-token-missing",
            headers={"WWW-Authenticate": 'Bearer realm="acknowledgement"'},
        )
    signer: AckSigner = request.app.state.ack_signer
    try:
        return signer.verify(notification_id, token, datetime.now(UTC))
    except AckTokenError as error:
        if error.expired:
            raise Problem(
                401, "Acknowledgement link expired", error.reason, kind="ack-token-expired"
            ) from error
        raise Problem(
            403, "Acknowledgement token not valid", error.reason, kind="ack-token-invalid"
        ) from error


async def _alert_shown(
    request: Request, session: AsyncSession, notification_id: UUID, contact_index: int
) -> ack_page.AlertShown:
    """The alert as the contact of `contact_index` was sent it (their link's holder has that
    message already), with where it stands now."""
    row = (
        await session.execute(select(notifications).where(notifications.c.id == notification_id))
    ).first()
    if row is None:
        raise not_found("Notification", notification_id)
    message = (
        await session.execute(
            select(deliveries.c.message).where(
                deliveries.c.notification_id == notification_id,
                deliveries.c.contact_index == contact_index,
            )
        )
    ).scalar_one_or_none()
    settings = runtime_of(request).settings
    zone = settings.county_zone
    return ack_page.AlertShown(
        title=(message or {}).get("title") or row.alert["title"],
        text=ack_page.sent_text(message),
        drill=row.drill,
        record_url=f"{settings.notification_record_base_url.rstrip('/')}/{row.incident_id}",
        acknowledged_at=county_time(row.acknowledged_at, zone) if row.acknowledged_at else None,
        ack_due_at=county_time(row.ack_due_at, zone) if row.ack_due_at else None,
        withdrawn_reason=row.withdrawn_reason,
    )


@ack_router.get(
    "/{notification_id}/ack",
    summary="The page an acknowledgement link opens; it only asks to confirm",
    response_class=HTMLResponse,
)
async def acknowledgement_page(
    notification_id: UUID,
    request: Request,
    session: DatabaseSession,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    # Link previews and mail scanners fetch links, so opening one must not acknowledge.
    claim = _verified(request, notification_id, token)
    shown = await _alert_shown(request, session, notification_id, claim.contact_index)
    return HTMLResponse(ack_page.confirm_page(shown, f"?token={token}"), headers=ack_page.HEADERS)


@ack_router.post(
    "/{notification_id}/ack",
    summary="Acknowledge an alert with its signed token",
    response_model=AckOut,
)
async def acknowledge_notification(
    notification_id: UUID,
    request: Request,
    session: DatabaseSession,
    token: Annotated[str | None, Query(max_length=200)] = None,
    body: AckIn | None = None,
) -> Any:
    claim = _verified(request, notification_id, token or (body.token if body else None))
    done = await acknowledge(
        session, runtime_of(request).outbox, notification_id, claim.contact_index
    )
    if done is None:
        raise not_found("Notification", notification_id)
    answer = ack_out(done)
    if "text/html" in request.headers.get("accept", ""):
        shown = await _alert_shown(request, session, notification_id, claim.contact_index)
        return HTMLResponse(ack_page.acknowledged_page(shown), headers=ack_page.HEADERS)
    return answer
