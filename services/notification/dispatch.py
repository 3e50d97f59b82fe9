"""Delivers alerts down each party's contact list, retries durably, and chases acknowledgement.

State lives in PostgreSQL only, so any replica can pick up where a crashed one stopped:

- a notification (one alert to one party) has its contact list fixed (R16: a drill's list is
  the party's drill contacts, else the local file) and a *delivery* opened for the first
  contact. An alert's consumer does both in the transaction that stores it, and claims the
  delivery there while its channel has room, for this process's dispatcher to send once it
  commits (`LocalDispatcher`, `first_delivery`, `handed_over`); a notice, an alert stored
  while no dispatcher runs here, and one whose party has no contact start NEW, for a pass;
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

Between passes a dispatcher sleeps until the next thing is due, by the database's clock. A
NOTIFY wakes every dispatcher when work any of them may take appears (new alerts, a retry, the
next contact); what only this one needs to know wakes it alone: a slot of a full channel freed,
an ACK deadline it started that comes before its sleep ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.ack import AckSigner
from services.notification.channels import Channel, DeliveryResult, gateway_of, shown_contact
from services.notification.guard import ChannelGuard, SendSlot, limits_for
from services.notification.metrics import NotificationMetrics
from services.notification.models import deliveries, notifications
from services.notification.status import NotificationKind, NotificationStatus
from services.notification.templates import AlertTexts, Form, render_message
from shared.db import KeptSession, lost_a_race, single_statement
from shared.domain.directory import Contact, Directory
from shared.driver import fetch
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
from shared.jsontext import json_text
from shared.messaging import (
    OUTBOX_COLUMNS,
    OUTBOX_VALUES,
    Outbox,
    notify_channel,
    outbox_values,
    woken_in_process,
)
from shared.pgnotify import Wakeup, notify
from shared.settings import Settings
from shared.staging import columns, insert_outbox_rows, write_staged
from shared.telemetry import in_trace_of

log = logging.getLogger(__name__)

SOURCE = "notification"
DISPATCH_CHANNEL = "notification_dispatch"
DRILL_CONTACT = Contact(channel="file", label="演练")
# Deliveries of channels nobody configured are claimed this many at a time, to fail them fast.
UNKNOWN_CHANNEL_BATCH = 10

# The statements of a dispatcher pass, of one shape whatever the batch: built and compiled once,
# each a single round trip for the whole batch (arrays in, `unnest`).

_NEW = (
    "SELECT * FROM notification.notifications WHERE status = 'NEW'"
    " ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_ACK_EXPIRED = (
    "SELECT * FROM notification.notifications WHERE status = 'DELIVERED' AND ack_due_at <= now()"
    " ORDER BY ack_due_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)
NEW_NOTIFICATIONS = text(_NEW)
ACK_EXPIRED = text(_ACK_EXPIRED)
# A pass's look at the alerts: the NEW ones to start and the delivered ones whose ACK deadline
# passed, each kind up to a batch and locked, in one statement (`start`: which kind).
DUE_ALERTS = text(
    f"WITH fresh AS ({_NEW}), expired AS ({_ACK_EXPIRED})"
    " SELECT *, true AS start FROM fresh UNION ALL SELECT *, false AS start FROM expired"
)
# A delivery per (alert, contact), and its alert moved to that contact, in one statement:
# opening one twice (a replica racing) keeps the first.
OPEN_DELIVERIES = text(
    "WITH opened AS (INSERT INTO notification.deliveries"
    " (id, notification_id, contact_index, channel, target, contact, status, message,"
    " trace_headers)"
    " SELECT id, notification_id, contact_index, channel, CAST(target AS jsonb), contact,"
    " 'PENDING', CAST(message AS jsonb), CAST(trace_headers AS jsonb)"
    " FROM unnest(CAST(:id AS uuid[]), CAST(:notification_id AS uuid[]),"
    " CAST(:contact_index AS smallint[]), CAST(:channel AS text[]), CAST(:target AS text[]),"
    " CAST(:contact AS text[]), CAST(:message AS text[]), CAST(:trace_headers AS text[]))"
    " AS opened(id, notification_id, contact_index, channel, target, contact, message,"
    " trace_headers)"
    " ON CONFLICT (notification_id, contact_index) DO NOTHING)"
    # The notification moves to the contact now alerted; `contacts` is the list, fixed when
    # delivery starts, or none to keep the one fixed before.
    " UPDATE notification.notifications AS n SET status = 'PENDING',"
    " contact_index = moved.contact_index, ack_due_at = NULL,"
    " contacts = COALESCE(CAST(moved.contacts AS jsonb), n.contacts)"
    " FROM unnest(CAST(:notification_id AS uuid[]), CAST(:contact_index AS smallint[]),"
    " CAST(:contacts AS text[])) AS moved(id, contact_index, contacts)"
    " WHERE n.id = moved.id"
)
# Due: PENDING and its time has come, or SENDING under a lease nobody renewed; never what this
# dispatcher is still sending, whatever its lease says. A delivery is claimed only once due, and
# opened SENDING at its creation time: one being sent came due before now, so every due one is
# in the range `next_attempt_at <= now()` of its channel in `ix_deliveries_due`, and a pass walks
# that range, never the retries waiting beyond it.
DUE_DELIVERY = (
    "next_attempt_at <= now()"
    " AND (status = 'PENDING' OR (status = 'SENDING' AND lease_until < now()))"
    " AND id <> ALL(CAST(:sending AS uuid[]))"
)
# The channels with a delivery pending or being sent: one probe of `ix_deliveries_due` each,
# from channel to channel, however many deliveries wait in each.
WAITING_CHANNELS = (
    "waiting(channel) AS ((SELECT channel FROM notification.deliveries"
    " WHERE status IN ('PENDING', 'SENDING') ORDER BY channel LIMIT 1)"
    " UNION ALL SELECT (SELECT later.channel FROM notification.deliveries AS later"
    " WHERE later.status IN ('PENDING', 'SENDING') AND later.channel > waiting.channel"
    " ORDER BY later.channel LIMIT 1) FROM waiting WHERE waiting.channel IS NOT NULL)"
)
# Seconds until the earliest of: a NEW notification (now), an ACK deadline, a retry, a lease of
# another dispatcher running out; NULL when nothing waits. Read in the statement that claims,
# whose own claims (`claimed`) it does not count: that statement does not see its own changes.
# Each is the first of an index: the earliest retry is read channel by channel, each the first
# pending one of its channel's part of `ix_deliveries_due`.
NEXT_DUE_SECONDS = (
    "extract(epoch FROM least("
    " (SELECT now() FROM notification.notifications WHERE status = 'NEW' LIMIT 1),"
    " (SELECT min(ack_due_at) FROM notification.notifications WHERE status = 'DELIVERED'),"
    " (SELECT min(retry.next_attempt_at) FROM waiting, LATERAL (SELECT next_attempt_at"
    " FROM notification.deliveries WHERE channel = waiting.channel AND status = 'PENDING'"
    " AND id NOT IN (SELECT id FROM claimed) ORDER BY next_attempt_at LIMIT 1) AS retry),"
    " (SELECT min(lease_until) FROM notification.deliveries WHERE status = 'SENDING'"
    " AND id <> ALL(CAST(:sending AS uuid[])) AND id NOT IN (SELECT id FROM claimed))"
    ") - now())"
)
# A pass's claim, in one statement whatever the channels: the channels with anything due, and
# for each at most its room (`:capacities`, a channel's free slots and tokens, given for every
# configured channel; a channel nobody configured gets `:unknown_batch`, to fail them fast) of
# its due deliveries, oldest first, claimed under a new lease. The result: a row per delivery
# claimed, and in every row (one with no delivery when none was claimed) the channels that had
# anything due (`busy`) and the seconds until the next thing is due after the claim (`due_in`).
# What it reads grows with the channels and what is due or being sent, not with the deliveries
# waiting for a retry (migration 0013).
CLAIM_DUE = text(
    f"WITH RECURSIVE {WAITING_CHANNELS},"
    " busy AS (SELECT waiting.channel FROM waiting WHERE EXISTS (SELECT"
    f" FROM notification.deliveries WHERE channel = waiting.channel AND {DUE_DELIVERY})),"
    " room AS (SELECT busy.channel, COALESCE(configured.capacity, :unknown_batch) AS capacity"
    " FROM busy LEFT JOIN unnest(CAST(:channels AS text[]), CAST(:capacities AS integer[]))"
    " AS configured(channel, capacity) ON configured.channel = busy.channel),"
    " picked AS (SELECT due.id FROM room, LATERAL (SELECT id FROM notification.deliveries"
    f" WHERE channel = room.channel AND {DUE_DELIVERY}"
    " ORDER BY next_attempt_at LIMIT room.capacity FOR UPDATE SKIP LOCKED) AS due"
    " WHERE room.capacity > 0),"
    " claimed AS (UPDATE notification.deliveries SET status = 'SENDING',"
    " attempts = attempts + 1, lease_until = now() + CAST(:lease AS interval),"
    " lease_id = gen_random_uuid() WHERE id IN (SELECT id FROM picked) RETURNING *)"
    " SELECT claimed.*, (SELECT array_agg(channel) FROM busy) AS busy,"
    f" {NEXT_DUE_SECONDS} AS due_in"
    " FROM (SELECT) AS pass LEFT JOIN claimed ON true"
)
# An answer that is not a delivery and what it moves, in one statement: the attempt is recorded
# whatever happens; the delivery moves on (`status`: PENDING to retry in `retry_in`, or FAILED)
# only under the lease it was sent under. The alert is locked first, so that a withdrawal
# committing meanwhile is seen by a retry (which is then CANCELLED) or sees it. The attempt's
# event goes into the outbox in the same statement (and wakes the relay at commit).
# The result: whether the delivery moved (false: another dispatcher took it over meanwhile).
RECORD_UNDELIVERED = text(
    "WITH alert AS (SELECT status FROM notification.notifications"
    " WHERE id = :notification_id FOR UPDATE),"
    " attempt AS (INSERT INTO notification.attempts (id, notification_id, delivery_id,"
    " contact_index, channel, contact, attempt, outcome, status_code, gateway_code, latency_ms,"
    " error, attempted_at) VALUES (:attempt_id, :notification_id, :delivery_id, :contact_index,"
    " :channel, :contact, :attempt, 'FAILED', :status_code, :gateway_code, :latency_ms, :error,"
    " :now)),"
    " moved AS (UPDATE notification.deliveries SET"
    " status = CASE WHEN CAST(:status AS text) = 'PENDING'"
    " AND (SELECT status FROM alert) = 'WITHDRAWN' THEN 'CANCELLED' ELSE :status END,"
    " last_error = CASE WHEN CAST(:status AS text) = 'PENDING'"
    " AND (SELECT status FROM alert) = 'WITHDRAWN'"
    " THEN concat_ws('; ', CAST(:error AS text), 'alert withdrawn') ELSE :error END,"
    " next_attempt_at = CASE WHEN CAST(:status AS text) = 'PENDING'"
    " THEN now() + CAST(:retry_in AS interval) ELSE next_attempt_at END,"
    " lease_until = NULL, lease_id = NULL"
    " WHERE id = :delivery_id AND lease_id = :lease_id RETURNING id),"
    f" published AS (INSERT INTO notification.outbox ({OUTBOX_COLUMNS}) VALUES ({OUTBOX_VALUES}))"
    " SELECT EXISTS (SELECT FROM moved) AS moved, pg_notify(:outbox_channel, '') AS notified"
)
# A delivery and what it moves: the attempt; the delivery DELIVERED, under the lease it was
# sent under; the alert it lands on. Only the contact being alerted starts the ACK clock (the
# policy's deadline stored with the alert, else `ack_seconds`), from when its gateway answered,
# however long the answer waited for its record; a notice is finished then; an acknowledged
# alert stays so. Every delivery that answered meanwhile is recorded
# by the one statement (`Dispatcher._record_delivered`), each row of the arrays an answer, never
# two of one alert. The alerts are locked first, in the order of their ids (two writers at once
# may hold answers of the same alerts), as a consumer's batch locks those it changes
# (`lock_alerts_of_batch`). The result, an answer a row: whether its delivery moved, and the
# seconds to the ACK deadline it started, if it started one.
RECORD_DELIVERED = text(
    "WITH answer AS (SELECT * FROM unnest(CAST(:attempt_id AS uuid[]),"
    " CAST(:notification_id AS uuid[]), CAST(:delivery_id AS uuid[]), CAST(:lease_id AS uuid[]),"
    " CAST(:contact_index AS smallint[]), CAST(:channel AS text[]), CAST(:contact AS text[]),"
    " CAST(:attempt AS integer[]), CAST(:status_code AS integer[]),"
    " CAST(:gateway_code AS text[]), CAST(:latency_ms AS float8[]), CAST(:error AS text[]),"
    " CAST(:now AS timestamptz[])) AS answer(attempt_id, notification_id, delivery_id,"
    " lease_id, contact_index, channel, contact, attempt, status_code, gateway_code,"
    " latency_ms, error, now)),"
    " alert AS MATERIALIZED (SELECT id FROM notification.notifications"
    " WHERE id IN (SELECT notification_id FROM answer) ORDER BY id FOR UPDATE),"
    " attempt AS (INSERT INTO notification.attempts (id, notification_id, delivery_id,"
    " contact_index, channel, contact, attempt, outcome, status_code, gateway_code, latency_ms,"
    " error, attempted_at) SELECT attempt_id, notification_id, delivery_id, contact_index,"
    " channel, contact, attempt, 'DELIVERED', status_code, gateway_code, latency_ms, error, now"
    " FROM answer),"
    " moved AS (UPDATE notification.deliveries AS delivery SET status = 'DELIVERED',"
    " last_error = answer.error, delivered_at = answer.now, lease_until = NULL, lease_id = NULL"
    " FROM answer JOIN alert ON alert.id = answer.notification_id"
    " WHERE delivery.id = answer.delivery_id AND delivery.lease_id = answer.lease_id"
    " RETURNING answer.delivery_id, answer.notification_id, answer.contact_index, answer.now),"
    " landed AS (UPDATE notification.notifications AS alert SET"
    " delivered_at = COALESCE(alert.delivered_at, moved.now),"
    " status = CASE WHEN alert.status = 'PENDING' AND alert.contact_index = moved.contact_index"
    " THEN CASE WHEN alert.kind = 'NOTICE' THEN 'INFORMED' ELSE 'DELIVERED' END"
    " ELSE alert.status END,"
    " ack_due_at = CASE WHEN alert.status = 'PENDING'"
    " AND alert.contact_index = moved.contact_index"
    " THEN CASE WHEN alert.kind = 'NOTICE' THEN NULL ELSE moved.now + make_interval(secs =>"
    " COALESCE(alert.ack_seconds, CAST(:ack_seconds AS float8))) END ELSE alert.ack_due_at END,"
    " closed_at = CASE WHEN alert.status = 'PENDING'"
    " AND alert.contact_index = moved.contact_index"
    " AND alert.kind = 'NOTICE' THEN moved.now ELSE alert.closed_at END"
    " FROM moved WHERE alert.id = moved.notification_id"
    " RETURNING moved.delivery_id, alert.ack_due_at),"
    f" published AS ({insert_outbox_rows('notification')})"
    " SELECT answer.delivery_id, moved.delivery_id IS NOT NULL AS moved,"
    " extract(epoch FROM landed.ack_due_at - now()) AS ack_in,"
    " (SELECT pg_notify(:outbox_channel, '') WHERE CAST(:outbox_channel AS text) IS NOT NULL)"
    " AS notified"
    " FROM answer LEFT JOIN moved ON moved.delivery_id = answer.delivery_id"
    " LEFT JOIN landed ON landed.delivery_id = answer.delivery_id"
)


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


async def wake_dispatchers(session: AsyncSession) -> None:
    """NOTIFY the dispatchers when the session's transaction commits: once per transaction,
    however many notifications it stores (a consumed batch stores one per event)."""
    await notify(session, DISPATCH_CHANNEL)


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
    # How long a delivered answer waits for others to join its record.
    record_linger: float = 0.0
    # How many answers may wait for their record with their sends' slots given back.
    unrecorded_answers_limit: int = 256

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
            record_linger=settings.notification_record_linger_ms / 1000,
            unrecorded_answers_limit=settings.notification_unrecorded_answers_limit,
        )

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


@dataclass
class LocalDispatcher:
    """The dispatcher running in this process, while it runs (`running`): a consumer's new
    alerts have their first delivery opened and sent through it (`NewAlerts` in handlers).
    Without one (not started yet, or stopped) they are stored NEW for a pass to open."""

    running: Dispatcher | None = None


# Answers are recorded through at most this many connections at once. Every send in flight
# (eight a channel) used to record through a connection of its own: a burst of answers took more
# than the pool keeps, and each connection opened past it was closed again after one statement,
# with a server process started and its statements and types prepared anew each time (563
# connections in a 30-second run at 30 incidents/s). One record is one statement: four at once
# keep up with every channel's answers.
RECORDING_CONNECTIONS = 4
# How many times a record of deliveries runs when PostgreSQL rolls it back for another
# transaction's sake (`_execute_delivered`), and the first pause before it runs again (doubled
# each time, jittered, at most a second). Run again at once, a record that locks many alerts
# took them again before the consumer's batch it had met could finish: the two met in every
# run, and the answers went unrecorded and were sent anew (a fault drill, 2026-12-05).
RECORD_RACES = 6
RECORD_RACE_PAUSE_SECONDS = 0.05


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
        # The passes' session, kept from one to the next (`run` makes one pass at a time).
        self._passes = KeptSession(sessions)
        self._outbox = outbox
        self._channels = channels
        self._directory = directory
        self._wakeup = wakeup
        self._poll_interval = settings.outbox_poll_interval_seconds
        self._fallback = settings.notification_dispatch_fallback_seconds
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
        self._recording = asyncio.Semaphore(RECORDING_CONNECTIONS)
        # Delivered answers not yet written, each with what its sender awaits: see
        # `_record_delivered`.
        self._delivered: list[tuple[dict[str, Any], asyncio.Future[Row]]] = []
        # Answers in hand whose record is not written yet (`_deliver`).
        self._unrecorded = 0
        # delivery id → the lease it is being sent under, while the send is in flight here
        self._leases: dict[UUID, UUID] = {}
        # When something recorded here after this pass's look is due (monotonic), and until
        # when the dispatcher sleeps (0 while it works): see `_due_within`.
        self._due_hint = math.inf
        self._asleep_until = 0.0
        self._metrics = metrics
        # Set once `run` has stopped: its sends were cancelled, and it starts no more.
        self._stopped = False

    async def run(self) -> None:
        keeper = asyncio.create_task(self.keep_leases(), name="delivery leases")
        try:
            while True:
                # What is recorded from here on is seen by this pass or left as a hint.
                self._due_hint = math.inf
                wait = await self.step()
                wait = min(wait, max(self._due_hint - time.monotonic(), 0.0))
                if wait > 0:
                    self._asleep_until = time.monotonic() + wait
                    try:
                        await self._wakeup.wait(wait)
                    finally:
                        self._asleep_until = 0.0
        finally:
            self._stopped = True
            keeper.cancel()
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(keeper, *self._in_flight, return_exceptions=True)
            await self._record_waiting()
            await self._wakeup.close()
            await self._passes.close()

    @property
    def lease(self) -> timedelta:
        return self._policy.lease

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

    async def step(self) -> float:
        """One pass over everything due, in one transaction; the seconds to sleep before the
        next pass unless a NOTIFY comes first (0: more is due at once)."""
        async with self._passes.transaction() as session:
            due = await fetch(session, DUE_ALERTS, {"limit": self._batch_size})
            fresh = [row for row in due if row.start]
            started, opened = await self._open(session, fresh, start=True)
            expired = [row for row in due if not row.start]
            self._log_expired(expired)
            walked, walked_open = await self._open(session, expired)
            claimed, full, due_in = await self._claim(session)
            more_to_open = len(started) >= self._batch_size or len(walked) >= self._batch_size
            wait = 0.0 if more_to_open else self._sleep_for(due_in)
            opened_elsewhere = (opened | walked_open) - {row.id for row in claimed}
            if opened_elsewhere:
                # Deliveries this pass opened but could not take: another replica may.
                await wake_dispatchers(session)
            await write_staged(session)
        self._started(claimed)
        self._send_all(claimed)
        if more_to_open:
            return 0.0
        room_in = self._room_in(full)
        if room_in is not None:
            # A channel with work due is out of slots or tokens: what is due now waits for its
            # room (the claim's `due_in` says "now" because of it). A send that ends frees a
            # slot and wakes this dispatcher; a token comes back with time alone, so look
            # again when it does.
            wait = room_in if wait <= 0 else min(wait, room_in)
        elif wait <= 0 and not (started or walked or claimed):
            # Due, yet nothing could be taken (locked by another replica's pass): not a spin.
            wait = self._poll_interval
        return wait

    def _sleep_for(self, due_in: float | None) -> float:
        """Seconds until the next thing is due here (`due_in`, by the database's clock: a NEW
        notification, an ACK deadline, a retry, a lease of another replica running out); the
        fallback when nothing is."""
        if due_in is None:
            return self._fallback
        return min(max(float(due_in), 0.0), self._fallback)

    # --- the walk down the contact list ---------------------------------------------------------

    async def start_new(self) -> int:
        async with self._sessions() as session, session.begin():
            started, _ = await self._open(session, await self._new(session), start=True)
            return len(started)

    async def expire_acknowledgements(self) -> int:
        async with self._sessions() as session, session.begin():
            walked, _ = await self._open(session, await self._ack_expired(session))
            return len(walked)

    async def _new(self, session: AsyncSession) -> Sequence[Row]:
        return (await session.execute(NEW_NOTIFICATIONS, {"limit": self._batch_size})).all()

    async def _ack_expired(self, session: AsyncSession) -> Sequence[Row]:
        rows = (await session.execute(ACK_EXPIRED, {"limit": self._batch_size})).all()
        self._log_expired(rows)
        return rows

    @staticmethod
    def _log_expired(rows: Sequence[Row]) -> None:
        for row in rows:
            log.info("notification %s to %s not acknowledged in time", row.id, row.party)

    async def _open(
        self, session: AsyncSession, rows: Sequence[Row], *, start: bool = False
    ) -> tuple[Sequence[Row], set[UUID]]:
        """Alert the next contact of each notification (the first when `start`, fixing its
        contact list) with one statement for all of them; the ids of the deliveries
        opened. A notification whose list is walked is given up, one by one (rare)."""
        opening: list[tuple[Row, list[Contact], int]] = []
        for row in rows:
            if start:
                contacts = list(contacts_for(self._directory, row.party, row.drill))
                index = 0
            else:
                contacts, index = contacts_of(row), row.contact_index + 1
            if index < len(contacts):
                opening.append((row, contacts, index))
                continue
            if start:
                await session.execute(
                    update(notifications)
                    .where(notifications.c.id == row.id)
                    .values(contacts=_contact_list(contacts))
                )
            await self._give_up(session, row, len(contacts))
        if not opening:
            return rows, set()
        opened = [self._delivery(row, contacts, index) for row, contacts, index in opening]
        await fetch(
            session,
            OPEN_DELIVERIES,
            {
                **columns(opened),
                "contacts": [
                    json_text(_contact_list(contacts)) if start else None
                    for _, contacts, _ in opening
                ],
            },
        )
        return rows, {delivery["id"] for delivery in opened}

    def _delivery(
        self, notification: Row, contacts: Sequence[Contact], index: int
    ) -> dict[str, Any]:
        """The delivery of `notification` to its contact `index`, as OPEN_DELIVERIES takes it."""
        return self._delivery_of(
            notification.id,
            notification.kind,
            notification.incident_id,
            notification.alert,
            notification.trace_headers,
            contacts[index],
            index,
        )

    def _delivery_of(
        self,
        notification_id: UUID,
        kind: str,
        incident_id: UUID,
        alert: dict[str, Any],
        trace_headers: dict[str, str],
        contact: Contact,
        index: int,
    ) -> dict[str, Any]:
        channel = self._channels.get(contact.channel)
        delivery_id = uuid4()
        message = render_message(
            alert,
            channel.form if channel is not None else Form.FULL,
            # A notice asks nothing of its reader: it carries no acknowledgement link.
            ack_url=(
                self._signer.link(notification_id, index, datetime.now(UTC))
                if kind == NotificationKind.ALERT
                else None
            ),
            record_url=f"{self._policy.record_base_url}/{incident_id}",
            texts=self._texts,
        )
        message.update(idempotency_key=str(delivery_id), contact_index=index)
        return {
            "id": delivery_id,
            "notification_id": notification_id,
            "contact_index": index,
            "channel": contact.channel,
            "target": json_text(contact.model_dump(mode="json", exclude_none=True)),
            "contact": shown_contact(contact),
            "message": json_text(message),
            "trace_headers": json_text(trace_headers),
        }

    # --- the first delivery of a new alert, opened where the alert is stored --------------------

    def first_delivery(self, alert: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first delivery of a new alert (`alert`: its row as a consumer stores it), as
        the statement storing the alert takes it (`NEW_ALERTS` in handlers): its contact list
        fixed as a pass would fix it (R16), the delivery, and whether it is claimed at once:
        while its channel has room, which is then taken (`handed_over` gives back what was
        not used). None when the party has no contact: a pass gives the alert up."""
        contacts = contacts_for(self._directory, alert["party"], alert["drill"])
        if not contacts:
            return None
        delivery = self._delivery_of(
            alert["id"],
            NotificationKind.ALERT,
            alert["incident_id"],
            alert["alert"],
            alert["trace_headers"],
            contacts[0],
            0,
        )
        guard = self._guards.get(contacts[0].channel)
        claim = False
        if guard is not None and guard.capacity() > 0:
            guard.started(1)
            claim = True
        return {
            "contacts": json_text(_contact_list(contacts)),
            "delivery_id": delivery["id"],
            "channel": delivery["channel"],
            "target": delivery["target"],
            "contact": delivery["contact"],
            "message": delivery["message"],
            "claim": claim,
        }

    def handed_over(
        self,
        claimed: Sequence[Row],
        reserved: Counter[str],
        committed: bool,
        successor: Dispatcher | None = None,
    ) -> None:
        """The first deliveries a consumer's transaction claimed (`first_delivery`), once it
        ended: committed, each is sent under its lease, as a pass's claims are, from here, or
        from `successor` (the dispatcher running in the process now) when this one stopped
        meanwhile (a worker started again after a failure); with neither, their leases run
        out and a pass takes them over. The room taken for those not claimed after all (an
        alert stored already), or for all of them when it rolled back, is given back."""
        sent = Counter(row.channel for row in claimed) if committed else Counter()
        freed = False
        for channel, count in (reserved - sent).items():
            guard = self._guards[channel]
            for _ in range(count):
                guard.finished()
            freed = True
        if freed:
            self._wakeup.wake()
        if not (committed and claimed):
            return
        if not self._stopped:
            self._send_claimed(claimed)
        elif successor is not None and not successor._stopped:
            successor._take_room(claimed)
            successor._send_claimed(claimed)
        else:
            log.info("%d first deliveries left to their leases: dispatcher stopped", len(claimed))

    def _take_room(self, claimed: Sequence[Row]) -> None:
        """Count sends claimed against another dispatcher's room against this one's."""
        for row in claimed:
            guard = self._guards.get(row.channel)
            if guard is not None:
                guard.started(1)

    def _send_claimed(self, claimed: Sequence[Row]) -> None:
        for row in claimed:
            self._leases[row.id] = row.lease_id
        self._send_all(claimed)

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
        async with self._sessions() as session, session.begin():
            claimed, _, _ = await self._claim(session)
        self._started(claimed)
        return claimed

    async def _claim(
        self, session: AsyncSession
    ) -> tuple[list[Row], list[ChannelGuard], float | None]:
        """The due deliveries claimed; the channels with some due that had no room for them
        all (out of slots or tokens); the seconds until the next thing is due, none when
        nothing waits. Nothing is counted as started before commit."""
        capacities = {name: guard.capacity() for name, guard in self._guards.items()}
        rows = await fetch(
            session,
            CLAIM_DUE,
            {
                "channels": list(capacities),
                "capacities": list(capacities.values()),
                "unknown_batch": UNKNOWN_CHANNEL_BATCH,
                "sending": list(self._leases),
                "lease": self._policy.lease,
            },
        )
        claimed = [row for row in rows if row.id is not None]
        taken = Counter(row.channel for row in claimed)
        full = [
            guard
            for channel in rows[0].busy or ()
            if (guard := self._guards.get(channel)) is not None
            and taken[channel] >= capacities[channel]
        ]
        return claimed, full, rows[0].due_in

    def _room_in(self, full: Sequence[ChannelGuard]) -> float | None:
        """Seconds until one of the `full` channels has room again by time alone (its rate);
        the poll interval when only sends that end free them (each wakes this dispatcher as
        it ends); None when no channel was full."""
        if not full:
            return None
        return min(
            (room for guard in full if (room := guard.seconds_until_room()) is not None),
            default=self._poll_interval,
        )

    def _started(self, claimed: Sequence[Row]) -> None:
        """Count claims against their channels and hold their leases, once committed."""
        for row in claimed:
            guard = self._guards.get(row.channel)
            if guard is not None:
                guard.started(1)
            self._leases[row.id] = row.lease_id

    def _send_all(self, claimed: Sequence[Row]) -> None:
        for row in claimed:
            task = asyncio.create_task(self.deliver(row), name=f"deliver {row.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

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
        # The channel's slot is the send's: free once the gateway has answered, while the
        # answer waits for its record (`_record_delivered`), unless too many answers wait
        # already: then once it is recorded, so that they cannot pile up without end.
        slot = SendSlot(guard)
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
            if self._unrecorded < self._policy.unrecorded_answers_limit:
                self._free_slot(slot)
            if self._metrics is not None:
                self._metrics.attempts.labels(
                    delivery.channel, "DELIVERED" if result.delivered else "FAILED"
                ).inc()
                self._metrics.latency.labels(delivery.channel).observe(latency_ms / 1000)
                self._metrics.observe_guards(self._guards)
            self._unrecorded += 1
            try:
                await self._record(delivery, result, latency_ms)
            finally:
                self._unrecorded -= 1
        except Exception:
            # The lease runs out and the delivery is claimed again: nothing is lost.
            log.exception("delivery %s failed unexpectedly", delivery.id)
        finally:
            self._leases.pop(delivery.id, None)
            self._free_slot(slot)

    def _free_slot(self, slot: SendSlot) -> None:
        if slot.give_back():
            # A slot of a full channel is free: this dispatcher may claim again (the slots
            # are its own, so no other replica needs telling).
            self._wakeup.wake()

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
        outcome = "DELIVERED" if result.delivered else "FAILED"
        if result.delivered:
            status = "DELIVERED"
        elif retry_in is not None:
            status = "PENDING"
        else:
            status = "FAILED"
        attempt = {
            "notification_id": notification_id,
            "incident_id": message["incident_id"],
            "party": message["party"],
            "channel": delivery.channel,
            "contact": delivery.contact,
            "attempt": delivery.attempts,
            "outcome": outcome,
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
        answer = {
            "attempt_id": uuid4(),
            "notification_id": notification_id,
            "delivery_id": delivery.id,
            "lease_id": delivery.lease_id,
            "contact_index": delivery.contact_index,
            "channel": delivery.channel,
            "contact": delivery.contact,
            "attempt": delivery.attempts,
            "status_code": result.status_code,
            "gateway_code": result.gateway_code,
            "latency_ms": latency_ms,
            "error": result.error,
            "now": now,
            **outbox_values(CloudEvent.new(SOURCE, event, message["incident_id"])),
        }
        if status == "DELIVERED":
            recorded = await self._record_delivered(answer)
            if recorded.ack_in is not None:
                self._due_within(float(recorded.ack_in))
        else:
            parameters = {
                **answer,
                **self._record_settings(),
                "status": status,
                "retry_in": retry_in,
            }
            async with self._recording:
                recorded = await self._write_record(status, notification_id, delivery, parameters)
        if not recorded.moved:
            log.warning("delivery %s was taken over while sending; attempt recorded", delivery.id)

    def _record_settings(self, notify: bool = True) -> dict[str, Any]:
        """The settings a record's statement takes; without a channel to notify when the
        relay is woken in process (`woken_in_process`)."""
        return {
            "ack_seconds": self._policy.ack.total_seconds(),
            "outbox_channel": notify_channel(self._outbox.schema) if notify else None,
        }

    async def _record_delivered(self, answer: dict[str, Any]) -> Row:
        """Record a delivered answer with every other one waiting: whoever gets a recording
        connection writes them all in one statement, as one answer used to take. An answer
        waits `record_linger` for others to join it (the sends that answered in the same
        moment are resumed one after another; under load, those of the next incidents), so
        the answers of a burst cost one statement, one NOTIFY and one relay pass, not one
        each. Should the dispatcher stop meanwhile, it records them as it stops
        (`_record_waiting`)."""
        recorded: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._delivered.append((answer, recorded))
        await asyncio.sleep(self._policy.record_linger)
        async with self._recording:
            while not recorded.done():
                batch = self._next_delivered()
                if not batch:
                    break  # this answer is in another writer's statement
                await self._write_delivered(batch)
        return await recorded

    async def _record_waiting(self) -> None:
        """The delivered answers still waiting for their record when the sends stopped: a
        send whose answer came is recorded, not made again once its lease runs out."""
        while self._delivered:
            batch = self._next_delivered()
            await self._write_delivered(batch)
            # Nobody awaits these any more: what failed is told here.
            failed = [error for _, recorded in batch if (error := recorded.exception())]
            if failed:
                log.error(
                    "%d delivered answers not recorded on stopping: %s", len(failed), failed[0]
                )

    def _next_delivered(self) -> list[tuple[dict[str, Any], asyncio.Future[Row]]]:
        """The delivered answers waiting, at most one of each alert (an answer moves its alert,
        and one statement moves a row once): the others wait for the next statement."""
        batch: list[tuple[dict[str, Any], asyncio.Future[Row]]] = []
        held: list[tuple[dict[str, Any], asyncio.Future[Row]]] = []
        alerts: set[UUID] = set()
        for waiting in self._delivered:
            alert = waiting[0]["notification_id"]
            (held if alert in alerts else batch).append(waiting)
            alerts.add(alert)
        self._delivered = held
        return batch

    async def _write_delivered(
        self, batch: list[tuple[dict[str, Any], asyncio.Future[Row]]]
    ) -> None:
        answers = [answer for answer, _ in batch]
        shards = [answer["shard"] for answer in answers]
        try:
            async with woken_in_process(self._outbox.local, shards) as in_process:
                parameters = {**columns(answers), **self._record_settings(notify=not in_process)}
                rows = await self._execute_delivered(parameters)
        except asyncio.CancelledError:
            # This writer is stopping: the answers go back, each for its own sender to write.
            self._delivered[:0] = [waiting for waiting in batch if not waiting[1].done()]
            raise
        except Exception as error:
            # Unrecorded, each send's lease runs out and another pass takes it over.
            for _, recorded in batch:
                recorded.set_exception(error)
            return
        by_delivery = {row.delivery_id: row for row in rows}
        for answer, recorded in batch:
            recorded.set_result(by_delivery[answer["delivery_id"]])

    async def _execute_delivered(self, parameters: dict[str, Any]) -> Sequence[Row]:
        # Nothing follows the record of a delivery: one statement, atomic on its own, with no
        # transaction around it. It locks the alerts of every answer in the order of their ids,
        # as a consumer's batch locks the alerts it changes (`lock_alerts_of_batch`). Should it
        # still meet a writer holding some of them in another order, PostgreSQL rolls one of
        # the two back, and when that is this statement it runs again once the other has had
        # time to finish (unrecorded, each send would be sent anew).
        runs = 1
        while True:
            try:
                async with single_statement(self._sessions) as connection:
                    return await fetch(connection, RECORD_DELIVERED, parameters)
            except DBAPIError as error:
                if runs == RECORD_RACES or not lost_a_race(error):
                    raise
                pause = retry_delay(runs - 1, base=RECORD_RACE_PAUSE_SECONDS, cap=1.0)
                runs += 1
                log.info(
                    "a record of %d deliveries lost a race; again in %.2f s",
                    len(parameters["now"]),
                    pause.total_seconds(),
                )
                # The leases of its sends are kept meanwhile (`keep_leases`).
                await asyncio.sleep(pause.total_seconds())

    async def _write_record(
        self, status: str, notification_id: UUID, delivery: Row, parameters: dict[str, Any]
    ) -> Row:
        async with self._sessions() as session, session.begin():
            recorded = (await session.execute(RECORD_UNDELIVERED, parameters)).one()
            if recorded.moved and status == "FAILED":
                await self._contact_failed(session, notification_id, delivery.contact_index)
            if recorded.moved:
                # A retry or the next contact is due: any replica may take it.
                await wake_dispatchers(session)
        return recorded

    def _due_within(self, seconds: float) -> None:
        """Something this dispatcher started is due in `seconds` (an ACK deadline): make sure
        it looks by then, without a NOTIFY and a pass of every dispatcher for each delivery."""
        due = time.monotonic() + seconds
        self._due_hint = min(self._due_hint, due)
        if due < self._asleep_until:
            self._wakeup.wake()

    async def _contact_failed(
        self, session: AsyncSession, notification_id: UUID, index: int
    ) -> None:
        notification = (
            await session.execute(
                select(notifications).where(notifications.c.id == notification_id).with_for_update()
            )
        ).one()
        if notification.status == "PENDING" and notification.contact_index == index:
            await self._open(session, [notification])


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
