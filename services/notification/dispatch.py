"""Delivers pending alerts through each party's contacts, in order, and records every attempt.

Notifications are rows; any replica claims due ones with `FOR UPDATE SKIP LOCKED` and a lease,
so a crash mid-delivery is picked up again once the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import Row, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.channels import Channel, DeliveryResult
from services.notification.models import attempts, notifications
from shared.directory import Contact, Directory
from shared.domain import PartyKind, party_kind_of
from shared.events import CloudEvent
from shared.events.models import NotificationAttempt, NotificationDelivered, NotificationFailed
from shared.messaging import Outbox
from shared.pgnotify import Wakeup

log = logging.getLogger(__name__)

SOURCE = "notification"
DISPATCH_CHANNEL = "notification_dispatch"
LEASE = timedelta(seconds=60)
MAX_ROUNDS = 5
DRILL_CONTACT = Contact(channel="file", label="演练")


def retry_delay(round_number: int) -> timedelta:
    """Exponential backoff with jitter between rounds over the whole contact list."""
    base = min(2.0**round_number, 300.0)
    return timedelta(seconds=base * (0.5 + random.random()))


def contacts_for(directory: Directory, party: str, drill: bool) -> tuple[Contact, ...]:
    # R16: drills run through the same pipeline but never reach real police.
    if drill and party_kind_of(party) == PartyKind.PPS:
        return (DRILL_CONTACT,)
    found = directory.party(party)
    return found.contacts if found is not None else ()


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        channels: dict[str, Channel],
        directory: Directory,
        wakeup: Wakeup,
        poll_interval: float,
        batch_size: int = 20,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._channels = channels
        self._directory = directory
        self._wakeup = wakeup
        self._poll_interval = poll_interval
        self._batch_size = batch_size

    async def run(self) -> None:
        try:
            while True:
                claimed = await self.claim_due()
                if claimed:
                    await asyncio.gather(*(self.deliver(row) for row in claimed))
                else:
                    await self._wakeup.wait(self._poll_interval)
        finally:
            await self._wakeup.close()

    async def claim_due(self) -> list[Row]:
        now = func.now()
        due = (
            select(notifications.c.id)
            .where(
                or_(
                    (notifications.c.status == "PENDING")
                    & (notifications.c.next_attempt_at <= now),
                    (notifications.c.status == "SENDING") & (notifications.c.lease_until < now),
                )
            )
            .order_by(notifications.c.next_attempt_at)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(notifications)
                .where(notifications.c.id.in_(due.scalar_subquery()))
                .values(status="SENDING", lease_until=now + LEASE)
                .returning(notifications)
            )
            return list(result.all())

    async def deliver(self, notification: Row) -> None:
        round_number = notification.rounds + 1
        contacts = contacts_for(self._directory, notification.party, notification.drill)
        for index, contact in enumerate(contacts):
            channel = self._channels.get(contact.channel)
            started = time.perf_counter()
            if channel is None:
                result = DeliveryResult(False, error=f"no channel {contact.channel!r} configured")
            else:
                result = await channel.send(notification.alert, contact)
            latency_ms = (time.perf_counter() - started) * 1000
            await self._record(notification, index, contact, round_number, result, latency_ms)
            if result.delivered:
                return
        await self._give_up_round(notification, round_number, bool(contacts))

    async def _record(
        self,
        notification: Row,
        index: int,
        contact: Contact,
        round_number: int,
        result: DeliveryResult,
        latency_ms: float,
    ) -> None:
        now = datetime.now(UTC)
        shown_contact = contact.label or contact.address or contact.channel
        async with self._sessions() as session, session.begin():
            await session.execute(
                attempts.insert().values(
                    id=uuid4(),
                    notification_id=notification.id,
                    contact_index=index,
                    channel=contact.channel,
                    contact=shown_contact,
                    attempt=round_number,
                    outcome="DELIVERED" if result.delivered else "FAILED",
                    status_code=result.status_code,
                    latency_ms=latency_ms,
                    error=result.error,
                    attempted_at=now,
                )
            )
            if result.delivered:
                await session.execute(
                    update(notifications)
                    .where(notifications.c.id == notification.id)
                    .values(status="DELIVERED", delivered_at=now, rounds=round_number)
                )
            fields = {
                "notification_id": notification.id,
                "incident_id": notification.incident_id,
                "obligation_id": notification.obligation_id,
                "party": notification.party,
                "channel": contact.channel,
                "contact": shown_contact,
                "attempt": round_number,
                "outcome": "DELIVERED" if result.delivered else "FAILED",
                "status_code": result.status_code,
                "latency_ms": round(latency_ms, 3),
                "error": result.error,
                "attempted_at": now,
            }
            event_type: type[NotificationAttempt] = (
                NotificationDelivered if result.delivered else NotificationFailed
            )
            await self._outbox.add(
                session, CloudEvent.new(SOURCE, event_type(**fields), notification.incident_id)
            )

    async def _give_up_round(
        self, notification: Row, round_number: int, had_contacts: bool
    ) -> None:
        final = round_number >= MAX_ROUNDS or not had_contacts
        log.warning(
            "notification %s to %s failed on every contact (round %d%s)",
            notification.id,
            notification.party,
            round_number,
            ", giving up" if final else "",
        )
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(notifications)
                .where(notifications.c.id == notification.id)
                .values(
                    status="FAILED" if final else "PENDING",
                    rounds=round_number,
                    next_attempt_at=datetime.now(UTC) + retry_delay(round_number),
                    lease_until=None,
                )
            )
