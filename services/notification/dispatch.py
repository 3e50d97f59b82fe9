"""Delivers alerts down each party's contact list, retries durably, and chases acknowledgement.

State lives in PostgreSQL only, so any replica can pick up where a crashed one stopped:

- a notification (one alert to one party) starts NEW; the dispatcher fixes its contact list
  (R16: a drill's list is the party's drill contacts, else the local file) and opens a
  *delivery* for the first contact;
- a delivery is one row per (alert, contact), so a contact is sent an alert at most once on our
  side. Due deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease; a retryable
  failure (timeout, 5xx, 429) reschedules it with exponential backoff and jitter (honouring
  `Retry-After`), a permanent one (4xx) or the last allowed attempt moves on to the next contact;
- a lease outlives its send: while a send is in flight the dispatcher that claimed it renews the
  lease every third of its length, and never claims again what it is still sending. Only a
  dispatcher that stopped renewing (crashed, or cut off from the database for a whole lease)
  loses its sends to another replica, so a send still in flight is never sent a second time;
- once delivered, the notification waits ACK for an acknowledgement (the policy's deadline as
  the routing decision carried it, `ack_seconds`, else NOTIFICATION_ACK_SECONDS); then the next
  contact is alerted, and after the last one `notification.unacknowledged` is published.

Each attempt is recorded and published (`notification.delivered` / `notification.failed`) in
the transaction that moves the state on. Two things send a delivery again, both under its stable
`Idempotency-Key` for the gateway to drop the repeat: a recorded timeout (the gateway may have
taken the alert without answering in time), and a crash between a gateway's answer and that
record, once the lease runs out. A recorded success is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ColumnElement, Row, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.ack import AckSigner
from services.notification.channels import Channel, DeliveryResult, gateway_of, shown_contact
from services.notification.guard import ChannelGuard, limits_for
from services.notification.metrics import NotificationMetrics
from services.notification.models import attempts, deliveries, notifications
from services.notification.status import NotificationKind, NotificationStatus
from services.notification.templates import AlertTexts, Form, render_message
from shared.domain.directory import Contact, Directory
from shared.events import CloudEvent
from shared.events.models import (
    EventData,
    NoticeAttempted,
    NotificationAcknowledged,
    NotificationAttempt,
    NotificationDelivered,
    NotificationFailed,
    NotificationUnacknowledged,
)
from shared.messaging import Outbox
from shared.pgnotify import Wakeup, notify
from shared.settings import Settings
from shared.telemetry import in_trace_of

log = logging.getLogger(__name__)

SOURCE = "notification"
DISPATCH_CHANNEL = "notification_dispatch"
DRILL_CONTACT = Contact(channel="file", label="演练")
# Deliveries of channels nobody configured are claimed this many at a time, to fail them fast.
UNKNOWN_CHANNEL_BATCH = 10


async def publish_about(
    session: AsyncSession,
    outbox: Outbox,
    notification: Row,
    event: EventData,
    span: str,
    **attributes: str,
) -> None:
    """Stage an event about `notification` in the outbox, inside the notification's trace, so
    its subscribers' work joins the incident's trace."""
    with in_trace_of(
        notification.trace_headers,
        span,
        incident_id=str(notification.incident_id),
        party=notification.party,
        **attributes,
    ):
        await outbox.add(session, CloudEvent.new(SOURCE, event, notification.incident_id))


def retry_delay(number: int, base: float = 1.0, cap: float = 300.0) -> timedelta:
    """Exponential backoff with jitter: `base`·2^number, at most `cap`, times 0.5–1.5."""
    return timedelta(seconds=min(base * 2.0**number, cap) * (0.5 + random.random()))


def contacts_for(directory: Directory, party: str, drill: bool) -> tuple[Contact, ...]:
    found = directory.party(party)
    if drill:
        # R16: drills run through the same pipeline but reach only drill contacts, never the
        # real ones (above all, never a police station's).
        return (found.drill_contacts if found is not None else ()) or (DRILL_CONTACT,)
    return found.contacts if found is not None else ()


@dataclass(frozen=True)
class DeliveryPolicy:
    # ACK when the routing decision names none (alerts stored before decisions carried the
    # policy's ACK deadline, or a policy without one): NOTIFICATION_ACK_SECONDS.
    ack: timedelta
    max_attempts: int
    retry_base: float
    retry_cap: float
    lease: timedelta
    send_timeout: float
    record_base_url: str

    @classmethod
    def of(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            ack=timedelta(seconds=settings.notification_ack_seconds),
            max_attempts=settings.notification_max_attempts,
            retry_base=settings.notification_retry_base_seconds,
            retry_cap=settings.notification_retry_max_seconds,
            lease=timedelta(seconds=settings.notification_lease_seconds),
            send_timeout=settings.notification_send_timeout_seconds,
            record_base_url=settings.notification_record_base_url.rstrip("/"),
        )

    def ack_of(self, ack_seconds: ColumnElement[float | None]) -> ColumnElement[timedelta]:
        """An alert's ACK as SQL: the policy's deadline stored with it, else the setting."""
        seconds = func.coalesce(ack_seconds, self.ack.total_seconds())
        return func.make_interval(0, 0, 0, 0, 0, 0, seconds)

    def retry_in(self, attempts_made: int, result: DeliveryResult) -> timedelta | None:
        """When to try this contact again, or None to move on to the next contact."""
        if result.delivered or not result.retryable or attempts_made >= self.max_attempts:
            return None
        delay = retry_delay(attempts_made - 1, self.retry_base, self.retry_cap)
        if result.retry_after is not None:
            delay = max(delay, timedelta(seconds=min(result.retry_after, self.retry_cap)))
        return delay


def _contact_list(contacts: Sequence[Contact]) -> list[dict[str, Any]]:
    return [contact.model_dump(mode="json", exclude_none=True) for contact in contacts]


def contacts_of(notification: Row) -> list[Contact]:
    """The contact list a notification walks, as fixed when its delivery started."""
    return [Contact.model_validate(contact) for contact in notification.contacts or ()]


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        channels: dict[str, Channel],
        directory: Directory,
        wakeup: Wakeup,
        settings: Settings,
        signer: AckSigner,
        texts: AlertTexts | None = None,
        batch_size: int = 20,
        metrics: NotificationMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._channels = channels
        self._directory = directory
        self._wakeup = wakeup
        self._poll_interval = settings.outbox_poll_interval_seconds
        self._policy = DeliveryPolicy.of(settings)
        self._signer = signer
        self._texts = texts
        self._batch_size = batch_size
        self._guards = {
            name: ChannelGuard(
                limits_for(name, settings),
                settings.notification_breaker_failures,
                settings.notification_breaker_cooldown_seconds,
            )
            for name in channels
        }
        self._in_flight: set[asyncio.Task[None]] = set()
        # delivery id → the lease it is being sent under, while the send is in flight here
        self._leases: dict[UUID, UUID] = {}
        self._metrics = metrics

    async def run(self) -> None:
        keeper = asyncio.create_task(self.keep_leases(), name="delivery leases")
        try:
            while True:
                if not await self.step():
                    await self._wakeup.wait(self._poll_interval)
        finally:
            keeper.cancel()
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(keeper, *self._in_flight, return_exceptions=True)
            await self._wakeup.close()

    @property
    def sending(self) -> set[UUID]:
        """The deliveries this dispatcher has claimed and not yet recorded."""
        return set(self._leases)

    async def keep_leases(self) -> None:
        """Renew the leases of the sends in flight here, every third of a lease."""
        interval = self._policy.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_leases()
            except Exception:
                # Cut off from the database: the leases run out and another replica takes the
                # sends over, which is what a lease is for.
                log.exception("could not renew the leases of %d sends", len(self._leases))

    async def renew_leases(self) -> int:
        """Push the lease of every send in flight here one lease ahead; how many were."""
        if not self._leases:
            return 0
        async with self._sessions() as session, session.begin():
            renewed = await session.execute(
                update(deliveries)
                .where(
                    deliveries.c.status == "SENDING",
                    deliveries.c.lease_id.in_(list(self._leases.values())),
                )
                .values(lease_until=func.now() + self._policy.lease)
            )
        return renewed.rowcount

    async def step(self) -> bool:
        """One pass over everything due; True when anything was due."""
        started = await self.start_new()
        walked = await self.expire_acknowledgements()
        claimed = await self.claim_due()
        for row in claimed:
            task = asyncio.create_task(self.deliver(row), name=f"deliver {row.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return bool(started or walked or claimed)

    # --- the walk down the contact list ---------------------------------------------------------

    async def start_new(self) -> int:
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(notifications)
                    .where(notifications.c.status == "NEW")
                    .order_by(notifications.c.created_at)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                contacts = contacts_for(self._directory, row.party, row.drill)
                await session.execute(
                    update(notifications)
                    .where(notifications.c.id == row.id)
                    .values(contacts=_contact_list(contacts))
                )
                await self._alert_contact(session, row, contacts, 0)
            return len(rows)

    async def expire_acknowledgements(self) -> int:
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(notifications)
                    .where(
                        notifications.c.status == "DELIVERED",
                        notifications.c.ack_due_at <= func.now(),
                    )
                    .order_by(notifications.c.ack_due_at)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                log.info("notification %s to %s not acknowledged in time", row.id, row.party)
                await self._alert_contact(session, row, contacts_of(row), row.contact_index + 1)
            return len(rows)

    async def _alert_contact(
        self, session: AsyncSession, notification: Row, contacts: Sequence[Contact], index: int
    ) -> None:
        """Open the delivery to contact `index`, or give up when the list is walked."""
        if index >= len(contacts):
            await self._give_up(session, notification, len(contacts))
            return
        contact = contacts[index]
        channel = self._channels.get(contact.channel)
        delivery_id = uuid4()
        message = render_message(
            notification.alert,
            channel.form if channel is not None else Form.FULL,
            # A notice asks nothing of its reader: it carries no acknowledgement link.
            ack_url=(
                self._signer.link(notification.id, index, datetime.now(UTC))
                if notification.kind == NotificationKind.ALERT
                else None
            ),
            record_url=f"{self._policy.record_base_url}/{notification.incident_id}",
            texts=self._texts,
        )
        message.update(idempotency_key=str(delivery_id), contact_index=index)
        await session.execute(
            insert(deliveries)
            .values(
                id=delivery_id,
                notification_id=notification.id,
                contact_index=index,
                channel=contact.channel,
                target=contact.model_dump(mode="json", exclude_none=True),
                contact=shown_contact(contact),
                status="PENDING",
                message=message,
                trace_headers=notification.trace_headers,
            )
            .on_conflict_do_nothing(
                index_elements=[deliveries.c.notification_id, deliveries.c.contact_index]
            )
        )
        await session.execute(
            update(notifications)
            .where(notifications.c.id == notification.id)
            .values(status="PENDING", contact_index=index, ack_due_at=None)
        )
        await notify(session, DISPATCH_CHANNEL)

    async def _give_up(self, session: AsyncSession, notification: Row, tried: int) -> None:
        now = datetime.now(UTC)
        if notification.kind == NotificationKind.NOTICE:
            # No contact took it; there is no duty behind it for the ladder to take up.
            log.warning(
                "notice %s to %s reached none of %d contacts",
                notification.id,
                notification.party,
                tried,
            )
            await session.execute(
                update(notifications)
                .where(notifications.c.id == notification.id)
                .values(status=NotificationStatus.FAILED, closed_at=now)
            )
            return
        reached = notification.delivered_at is not None
        log.warning(
            "notification %s to %s: %d contacts tried, %s",
            notification.id,
            notification.party,
            tried,
            "none acknowledged" if reached else "none reached",
        )
        await session.execute(
            update(notifications)
            .where(notifications.c.id == notification.id)
            .values(
                status="UNACKNOWLEDGED" if reached else "FAILED", closed_at=now, ack_due_at=None
            )
        )
        event = NotificationUnacknowledged(
            notification_id=notification.id,
            incident_id=notification.incident_id,
            obligation_id=notification.obligation_id,
            party=notification.party,
            contacts_tried=tried,
            given_up_at=now,
            drill=notification.drill,
        )
        await publish_about(
            session, self._outbox, notification, event, "notification unacknowledged"
        )

    # --- deliveries -----------------------------------------------------------------------------

    async def claim_due(self) -> list[Row]:
        """Claim due deliveries, per channel no more than its free slots and tokens allow."""
        due = or_(
            (deliveries.c.status == "PENDING") & (deliveries.c.next_attempt_at <= func.now()),
            (deliveries.c.status == "SENDING") & (deliveries.c.lease_until < func.now()),
        )
        if self._leases:
            # What this dispatcher is still sending is never due here, whatever its lease says.
            due = due & deliveries.c.id.not_in(list(self._leases))
        claimed: list[Row] = []
        async with self._sessions() as session, session.begin():
            # Which channels have anything due: one statement, so a pass costs one claim per
            # busy channel rather than one per configured channel (a pass runs on every wake).
            busy = set(
                (await session.execute(select(deliveries.c.channel).where(due).distinct()))
                .scalars()
                .all()
            )
            wanted = [
                (deliveries.c.channel == name, guard.capacity(), guard)
                for name, guard in self._guards.items()
                if name in busy
            ]
            unknown = busy - self._guards.keys()
            if unknown:
                wanted.append((deliveries.c.channel.in_(unknown), UNKNOWN_CHANNEL_BATCH, None))
            for which, capacity, guard in wanted:
                if capacity <= 0:
                    continue
                ids = (
                    select(deliveries.c.id)
                    .where(which, due)
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(capacity)
                    .with_for_update(skip_locked=True)
                )
                rows = (
                    await session.execute(
                        update(deliveries)
                        .where(deliveries.c.id.in_(ids.scalar_subquery()))
                        .values(
                            status="SENDING",
                            attempts=deliveries.c.attempts + 1,
                            lease_until=func.now() + self._policy.lease,
                            lease_id=func.gen_random_uuid(),
                        )
                        .returning(deliveries)
                    )
                ).all()
                if guard is not None and rows:
                    guard.started(len(rows))
                claimed.extend(rows)
        self._leases.update((row.id, row.lease_id) for row in claimed)
        return claimed

    async def deliver(self, delivery: Row) -> None:
        with in_trace_of(
            delivery.trace_headers,
            "notification send",
            incident_id=delivery.message["incident_id"],
            party=delivery.message["party"],
            channel=delivery.channel,
        ):
            await self._deliver(delivery)

    async def _deliver(self, delivery: Row) -> None:
        guard = self._guards.get(delivery.channel)
        try:
            contact = Contact.model_validate(delivery.target)
            channel = self._channels.get(delivery.channel)
            started = time.perf_counter()
            if channel is None or guard is None:
                result = DeliveryResult(False, error=f"no channel {delivery.channel!r} configured")
            else:
                breaker = guard.breaker(gateway_of(contact))
                if breaker.allow():
                    result = await self._send(channel, delivery.message, contact)
                    breaker.record(result.delivered or not result.retryable)
                else:
                    result = DeliveryResult(
                        False,
                        error="circuit open: the gateway keeps failing",
                        retryable=True,
                        retry_after=breaker.retry_in(),
                    )
            latency_ms = (time.perf_counter() - started) * 1000
            if self._metrics is not None:
                self._metrics.attempts.labels(
                    delivery.channel, "DELIVERED" if result.delivered else "FAILED"
                ).inc()
                self._metrics.latency.labels(delivery.channel).observe(latency_ms / 1000)
                self._metrics.observe_guards(self._guards)
            await self._record(delivery, result, latency_ms)
        except Exception:
            # The lease runs out and the delivery is claimed again: nothing is lost.
            log.exception("delivery %s failed unexpectedly", delivery.id)
        finally:
            self._leases.pop(delivery.id, None)
            if guard is not None:
                guard.finished()

    async def _send(
        self, channel: Channel, message: dict[str, Any], contact: Contact
    ) -> DeliveryResult:
        try:
            # Channels set their own timeouts; this bounds one that does not.
            async with asyncio.timeout(self._policy.send_timeout + 1.0):
                return await channel.send(message, contact)
        except TimeoutError:
            return DeliveryResult(False, error="timeout: no answer", retryable=True)
        except Exception as error:
            log.exception("channel %s raised", channel.name)
            return DeliveryResult(
                False, error=f"{error.__class__.__name__}: {error}", retryable=True
            )

    async def _record(self, delivery: Row, result: DeliveryResult, latency_ms: float) -> None:
        now = datetime.now(UTC)
        message = delivery.message
        notification_id = UUID(message["notification_id"])
        retry_in = self._policy.retry_in(delivery.attempts, result)
        async with self._sessions() as session, session.begin():
            await session.execute(
                attempts.insert().values(
                    id=uuid4(),
                    notification_id=notification_id,
                    delivery_id=delivery.id,
                    contact_index=delivery.contact_index,
                    channel=delivery.channel,
                    contact=delivery.contact,
                    attempt=delivery.attempts,
                    outcome="DELIVERED" if result.delivered else "FAILED",
                    status_code=result.status_code,
                    gateway_code=result.gateway_code,
                    latency_ms=latency_ms,
                    error=result.error,
                    attempted_at=now,
                )
            )
            attempt = {
                "notification_id": notification_id,
                "incident_id": message["incident_id"],
                "party": message["party"],
                "channel": delivery.channel,
                "contact": delivery.contact,
                "attempt": delivery.attempts,
                "outcome": "DELIVERED" if result.delivered else "FAILED",
                "status_code": result.status_code,
                "latency_ms": round(latency_ms, 3),
                "error": result.error,
                "attempted_at": now,
            }
            event: NotificationAttempt | NoticeAttempted
            if "about" in message:  # a notice: about no obligation
                event = NoticeAttempted(
                    **attempt, about=message["about"], drill=bool(message.get("drill"))
                )
            else:
                event_type = NotificationDelivered if result.delivered else NotificationFailed
                event = event_type(**attempt, obligation_id=message["obligation_id"])
            await self._outbox.add(session, CloudEvent.new(SOURCE, event, message["incident_id"]))
            if result.delivered:
                values: dict[str, Any] = {"status": "DELIVERED", "delivered_at": now}
            elif retry_in is not None:
                values = {"status": "PENDING", "next_attempt_at": func.now() + retry_in}
            else:
                values = {"status": "FAILED"}
            moved = (
                await session.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id == delivery.id, deliveries.c.lease_id == delivery.lease_id
                    )
                    .values(**values, lease_until=None, lease_id=None, last_error=result.error)
                    .returning(deliveries.c.id)
                )
            ).first()
            if moved is None:
                log.warning(
                    "delivery %s was taken over while sending; attempt recorded", delivery.id
                )
            elif result.delivered:
                await self._delivered(session, notification_id, delivery.contact_index, now)
            elif retry_in is None:
                await self._contact_failed(session, notification_id, delivery.contact_index)
            else:
                await self._cancel_if_withdrawn(session, notification_id, delivery.id)
            await notify(session, DISPATCH_CHANNEL)

    async def _cancel_if_withdrawn(
        self, session: AsyncSession, notification_id: UUID, delivery_id: UUID
    ) -> None:
        """A send in flight when its alert was withdrawn is not tried again. The alert is
        locked so that a withdrawal committing meanwhile is seen here, or sees this retry."""
        status = (
            await session.execute(
                select(notifications.c.status)
                .where(notifications.c.id == notification_id)
                .with_for_update()
            )
        ).scalar_one()
        if status == "WITHDRAWN":
            await session.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    status="CANCELLED",
                    last_error=func.concat_ws("; ", deliveries.c.last_error, "alert withdrawn"),
                )
            )

    async def _delivered(
        self, session: AsyncSession, notification_id: UUID, index: int, now: datetime
    ) -> None:
        await session.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(delivered_at=func.coalesce(notifications.c.delivered_at, now))
        )
        # Only the contact being alerted starts the ACK clock; an acknowledged alert stays so.
        await session.execute(
            update(notifications)
            .where(
                notifications.c.id == notification_id,
                notifications.c.status == "PENDING",
                notifications.c.contact_index == index,
            )
            .values(
                status=case(
                    (notifications.c.kind == NotificationKind.NOTICE, NotificationStatus.INFORMED),
                    else_=NotificationStatus.DELIVERED,
                ),
                ack_due_at=case(
                    (notifications.c.kind == NotificationKind.NOTICE, None),
                    else_=func.now() + self._policy.ack_of(notifications.c.ack_seconds),
                ),
                closed_at=case(
                    (notifications.c.kind == NotificationKind.NOTICE, func.now()),
                    else_=notifications.c.closed_at,
                ),
            )
        )

    async def _contact_failed(
        self, session: AsyncSession, notification_id: UUID, index: int
    ) -> None:
        notification = (
            await session.execute(
                select(notifications).where(notifications.c.id == notification_id).with_for_update()
            )
        ).one()
        if notification.status == "PENDING" and notification.contact_index == index:
            await self._alert_contact(session, notification, contacts_of(notification), index + 1)


@dataclass(frozen=True)
class Acknowledgement:
    notification_id: UUID
    acknowledged_at: datetime
    contact_index: int | None  # None: on the duty console, not through a contact's link
    channel: str
    contact: str
    replayed: bool


CONSOLE_CHANNEL = "console"


def on_the_console(subject: str) -> str:
    """How an acknowledgement on the duty console is shown: by whom of the party."""
    return f"值班台（{subject}）"


async def acknowledge(
    session: AsyncSession,
    outbox: Outbox,
    notification_id: UUID,
    contact_index: int | None,
    *,
    via: str | None = None,
) -> Acknowledgement | None:
    """Record that the alert was read, through the link of contact `contact_index` or, with
    `via`, by a user of the alerted party on the duty console; None for an unknown alert.
    Acknowledging again changes nothing and answers with the first acknowledgement. A late one
    (after the list was walked) still counts: the escalation service then knows the report
    arrived, if late."""
    notification = (
        await session.execute(
            select(notifications).where(notifications.c.id == notification_id).with_for_update()
        )
    ).first()
    if notification is None:
        return None
    contacts = contacts_of(notification)
    if notification.acknowledged_at is not None:
        index = notification.acknowledged_contact_index
        channel, shown = (
            (CONSOLE_CHANNEL, notification.acknowledged_via)
            if notification.acknowledged_via
            else (contacts[index].channel, shown_contact(contacts[index]))
        )
        return Acknowledgement(
            notification_id, notification.acknowledged_at, index, channel, shown, replayed=True
        )
    if via is not None:
        contact_index = None
        channel, shown = CONSOLE_CHANNEL, via
    else:
        if contact_index is None or not 0 <= contact_index < len(contacts):
            return None
        contact = contacts[contact_index]
        channel, shown = contact.channel, shown_contact(contact)
    now = datetime.now(UTC)
    await session.execute(
        update(notifications)
        .where(notifications.c.id == notification_id)
        .values(
            status="ACKNOWLEDGED",
            acknowledged_at=now,
            acknowledged_contact_index=contact_index,
            acknowledged_via=via,
            ack_due_at=None,
        )
    )
    # The next contact need not be alerted any more; a send already in flight still lands.
    await session.execute(
        update(deliveries)
        .where(deliveries.c.notification_id == notification_id, deliveries.c.status == "PENDING")
        .values(status="CANCELLED", last_error="acknowledged by another contact")
    )
    event = NotificationAcknowledged(
        notification_id=notification_id,
        incident_id=notification.incident_id,
        obligation_id=notification.obligation_id,
        party=notification.party,
        channel=channel,
        contact=shown,
        acknowledged_at=now,
        drill=notification.drill,
    )
    await publish_about(
        session, outbox, notification, event, "notification acknowledged", channel=channel
    )
    return Acknowledgement(notification_id, now, contact_index, channel, shown, False)
