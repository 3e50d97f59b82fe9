"""Event consumers of notification: routing decisions that call for an alert."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import TextClause, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.dispatch import (
    DISPATCH_CHANNEL,
    LocalDispatcher,
    publish_about,
    wake_dispatchers,
)
from services.notification.models import alert_duties, deliveries, notifications
from services.notification.status import (
    NotificationKind,
    NotificationStatus,
    carries_on,
    withdrawable,
    withdrawal_reason,
)
from services.notification.templates import (
    AlertTexts,
    stored_accountability,
    stored_alert,
    stored_notice,
    stored_update,
    stored_went_quiet,
)
from shared.domain.directory import Directory
from shared.domain.vocabulary import PartyKind, party_name_zh
from shared.events import CloudEvent
from shared.events.models import (
    AccountabilityFinding,
    AccountabilityRecorded,
    ActionRejected,
    DeadlineMissed,
    FindingReviewed,
    IncidentStatusChanged,
    IncidentUpdated,
    IncidentWentQuiet,
    LogCheckpoint,
    NotificationWithdrawn,
    ObligationCreated,
    ObligationMet,
    ObligationOmitted,
    ObligationWaived,
    PersonalDataErased,
    PersonalDataReadInAudit,
)
from shared.jsontext import json_text
from shared.kafka import EventHandler, HandlerTable, RecordPosition
from shared.messaging import Outbox
from shared.staging import columns, defer, of_transaction, when_ended, write_deferred
from shared.telemetry import current_trace_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotificationHandlers:
    directory: Directory
    outbox: Outbox
    texts: AlertTexts
    # The dispatcher of this process, once it runs: new alerts' first deliveries go through it.
    dispatcher: LocalDispatcher = field(default_factory=LocalDispatcher)

    @property
    def table(self) -> HandlerTable:
        """What notification does with each type of escalations.v1 and audit.v1, both read by one
        consumer group (one set of fetches and heartbeats, not two).

        escalations.v1: an obligation that calls for an alert gets one, and an obligation met
        or waived before its alert was acknowledged stops the alert; an action refused after it
        was accepted is told, as a notice, to the party that recorded it; a change of the
        incident is told to every party already alerted about it (R19), and an incident gone
        quiet to the BLO (R9); misses, omissions and status changes are the escalation's to
        track (a status change that people must hear of comes as `incident.updated`).

        audit.v1: a commendation or discipline is told to the CEO (R15); checkpoints, findings
        and their reviews inform nobody by notice (findings are for people to judge in the
        reports, not to be pushed)."""
        return HandlerTable(
            {
                ObligationCreated.ce_type: self.handle,
                # The others read what the alerts before them in the batch say: written first.
                ObligationMet.ce_type: after_new_alerts(self.on_outcome),
                ObligationWaived.ce_type: after_new_alerts(self.on_outcome),
                ActionRejected.ce_type: after_new_alerts(self.on_rejected),
                IncidentUpdated.ce_type: after_new_alerts(self.on_updated),
                IncidentWentQuiet.ce_type: after_new_alerts(self.on_went_quiet),
                AccountabilityRecorded.ce_type: after_new_alerts(self.on_accountability),
            },
            ignored=frozenset(
                {
                    DeadlineMissed.ce_type,
                    IncidentStatusChanged.ce_type,
                    ObligationOmitted.ce_type,
                    LogCheckpoint.ce_type,
                    AccountabilityFinding.ce_type,
                    FindingReviewed.ce_type,
                    PersonalDataReadInAudit.ce_type,
                    # The retention period's erasure asks nothing of anyone.
                    PersonalDataErased.ce_type,
                }
            ),
            # Most duties of a decision alert nobody (a report to file, a visit to make): read
            # past without an inbox row.
            asks={ObligationCreated.ce_type: asks_of_notification},
            prepare=lock_alerts_of_batch,
        )

    @property
    def party_names(self) -> dict[str, str]:
        return {party.code: party.name for party in self.directory.parties}

    async def handle(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        """An obligation that calls for an alert gets one; a duty a merge moved (R20) keeps
        the alert it had, unless that was withdrawn: its party is never alerted twice. Each
        alert claims its duty (`alert_duties`), and a moved duty the duty it came from."""
        if not isinstance(event.data, ObligationCreated):
            return
        obligation = event.data
        notification_id = uuid4()
        if obligation.moved_from is not None:
            await write_deferred(session, NEW_ALERTS_DEFERRED)  # carry_on reads the alerts
            alerting = notification_id if obligation.notify else None
            if not await claim_duty(session, obligation.moved_from, alerting):
                if await carry_on(session, obligation):
                    return
        if not obligation.notify:
            return
        party = self.directory.party(obligation.party)
        alert = stored_alert(
            str(notification_id),
            obligation,
            party.name if party is not None else obligation.party,
            self.texts,
        )
        row = {
            "id": notification_id,
            "incident_id": obligation.incident_id,
            "obligation_id": obligation.obligation_id,
            "party": obligation.party,
            "rule_id": obligation.rule_id,
            "drill": obligation.incident.drill,
            # The policy's ACK deadline (RULES.md ACK) rides with the decision; the
            # dispatcher falls back to NOTIFICATION_ACK_SECONDS where it does not.
            "ack_seconds": obligation.ack_seconds,
            "alert": alert,
            "trace_headers": current_trace_headers(),
        }
        if obligation.moved_from is None:
            # With the other new alerts of the transaction, in one statement at its commit.
            new_alerts = of_transaction(
                session,
                FIRST_DELIVERIES,
                lambda: NewAlerts(session, self.dispatcher),
            )
            defer(
                session,
                NEW_ALERTS_DEFERRED,
                new_alerts.write,
                {**row, "moved_from": None},
                new_alerts.written,
            )
            return
        # An alert that stands for a moved duty is written at once (NEW, for a pass to open): a
        # later creation of the duty it was moved from looks for it (R20).
        await session.execute(
            *write_new_alerts([row | WITHOUT_DELIVERY | {"moved_from": obligation.moved_from}])
        )

    async def on_rejected(
        self, session: AsyncSession, event: CloudEvent, _: RecordPosition
    ) -> None:
        """Intake refuses at once what the lifecycle refuses; what escalation still refuses
        later (a race between two parties) must reach the party that recorded it, or it would
        believe its record stands (issue of ordinary use: refusals out of sight)."""
        rejected = event.data
        if not isinstance(rejected, ActionRejected) or rejected.party is None:
            return  # refused before refusals named who recorded them: nobody to tell
        party = self.directory.party(rejected.party)
        if party is None:
            return  # a party the directory does not know has no contact to tell
        # One notice per refused action, whatever redelivers the refusal.
        notification_id = notice_id(ActionRejected.ce_type, rejected.action_id)
        notice = stored_notice(str(notification_id), rejected, party.name, self.texts)
        await add_notice(session, notification_id, notice)

    async def on_updated(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        """R19: every party already alerted about the incident (escalation names them) is told
        of the change, each in its own notice: one per change and party, whatever redelivers
        the change. A party the directory does not know has no contact to tell."""
        updated = event.data
        if not isinstance(updated, IncidentUpdated):
            return
        names = self.party_names
        changed_by = party_name_zh(updated.changed_by, names)
        for code in dict.fromkeys(updated.recipients):
            if code not in names:
                log.warning("update %s: %s is not in the directory", updated.update_id, code)
                continue
            notification_id = notice_id(IncidentUpdated.ce_type, updated.update_id, code)
            notice = stored_update(
                str(notification_id), updated, code, names[code], changed_by, self.texts
            )
            await add_notice(session, notification_id, notice)

    async def on_went_quiet(
        self, session: AsyncSession, event: CloudEvent, _: RecordPosition
    ) -> None:
        """R9: the BLO is told once per quiet spell (the incident and its last news name it)."""
        quiet = event.data
        if not isinstance(quiet, IncidentWentQuiet):
            return
        party = self.directory.party(quiet.party)
        if party is None:
            log.warning("incident %s went quiet: %s has no contact", quiet.incident_id, quiet.party)
            return
        township = self.directory.township(quiet.township_code)
        spell = quiet.last_news_at.astimezone(UTC).isoformat()
        notification_id = notice_id(IncidentWentQuiet.ce_type, quiet.incident_id, spell)
        notice = stored_went_quiet(
            str(notification_id),
            quiet,
            party.name,
            township.name if township is not None else quiet.township_code,
            self.texts,
        )
        await add_notice(session, notification_id, notice)

    async def on_accountability(
        self, session: AsyncSession, event: CloudEvent, _: RecordPosition
    ) -> None:
        """R15: the CEO is informed of each commendation and discipline, once per record."""
        record = event.data
        if not isinstance(record, AccountabilityRecorded):
            return
        ceo = str(PartyKind.CEO)
        notification_id = notice_id(AccountabilityRecorded.ce_type, record.record_id, ceo)
        notice = stored_accountability(
            str(notification_id), record, ceo, self.party_names, self.texts
        )
        await add_notice(session, notification_id, notice)

    async def on_outcome(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        if not isinstance(event.data, ObligationMet | ObligationWaived):
            return
        if isinstance(event.data, ObligationWaived) and event.data.moved_to is not None:
            return  # the duty lives on elsewhere (R20), and so does its alert
        await withdraw(session, self.outbox, event.data)


def duty_whose_alert_changes(event: CloudEvent) -> UUID | None:
    """The duty whose stored alert `event` may change: withdraw (`withdraw`) or carry on for
    the duty it moved to (`carry_on`); None for an event that changes no stored alert."""
    data = event.data
    if isinstance(data, ObligationMet | ObligationWaived):
        return data.obligation_id
    if isinstance(data, ObligationCreated):
        return data.moved_from
    return None


# The stored alerts of a batch's duties, locked in the order of their ids.
LOCK_ALERTS_OF_DUTIES = text(
    "SELECT id FROM notification.notifications WHERE obligation_id = ANY(CAST(:duties AS uuid[]))"
    " ORDER BY id FOR UPDATE"
)


async def lock_alerts_of_batch(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """Lock, before anything else, every stored alert the batch may change, in the order of
    their ids, as the record of delivered answers locks its alerts (`RECORD_DELIVERED`). Taken
    one at a time in the order of the events, a batch could hold a later alert and wait for an
    earlier one that the record holds while it waits for the later: PostgreSQL would roll one
    back. Two writers that take the same rows in one order wait for each other, never in turn.
    A batch that changes at most one alert cannot meet the record so, and asks nothing."""
    duties = {duty for event in events if (duty := duty_whose_alert_changes(event)) is not None}
    if len(duties) > 1:
        await session.execute(LOCK_ALERTS_OF_DUTIES, {"duties": sorted(duties)})


def asks_of_notification(obligation: ObligationCreated) -> bool:
    """Whether a duty asks anything of notification (`NotificationHandlers.handle`): an alert
    for its party, or, moved by a merge (R20), the fate of the alert it had."""
    return obligation.notify or obligation.moved_from is not None


async def claim_duty(session: AsyncSession, duty_id: UUID, notification_id: UUID | None) -> bool:
    """Claim the decision about the alert of `duty_id` (R20) for `notification_id` (none: the
    duty needs none of its own), False when another alert took it before. A claim made by a
    transaction still open is waited for: once this returns, what that transaction wrote is
    seen, so a duty's creation and that of the duty it moved to, handled at once under
    different incidents' keys, never both alert."""
    claimed = await session.execute(
        insert(alert_duties)
        .values(duty_id=duty_id, notification_id=notification_id)
        .on_conflict_do_nothing(index_elements=[alert_duties.c.duty_id])
        .returning(alert_duties.c.duty_id)
    )
    return claimed.first() is not None


async def carry_on(session: AsyncSession, moved: ObligationCreated) -> bool:
    """R20: the alert of the duty `moved` was moved from, unless withdrawn, now stands for
    `moved` (its id and incident); False when there is none to carry on. Whether the old duty's
    waiver came first or not, the alert is not withdrawn (`on_outcome`) and not sent again."""
    alert = (
        await session.execute(
            select(notifications)
            .where(notifications.c.obligation_id == moved.moved_from)
            .with_for_update()
        )
    ).first()
    if alert is None or not carries_on(alert.status):
        return False
    await session.execute(
        update(notifications)
        .where(notifications.c.id == alert.id)
        .values(
            obligation_id=moved.obligation_id,
            incident_id=moved.incident_id,
            former_obligation_ids=func.array_append(
                notifications.c.former_obligation_ids, moved.moved_from
            ),
            alert=notifications.c.alert.op("||")(
                func.jsonb_build_object(
                    "obligation_id", str(moved.obligation_id), "incident_id", str(moved.incident_id)
                )
            ),
        )
    )
    # The moved duty is the alert's now: a duty moved on from it again finds the alert.
    await claim_duty(session, moved.obligation_id, alert.id)
    log.info("alert %s now stands for obligation %s", alert.id, moved.obligation_id)
    return True


# Duties' alerts, in the order the duties came. An alert is stored only with the claim of its
# duty (`alert_duties`): a duty alerted already gets none, nor one a merge moved on (R20) before
# its own creation reached us, whose claim the moved duty's creation took (`claim_duty`). Two
# statements claiming one duty at once meet at its key: the second waits for the first to end,
# then finds the claim. The claims go in the order of the duties' ids, so that two statements
# never wait for each other in turn.
# An alert given its first delivery (`delivery_id` and the rest, `Dispatcher.first_delivery`)
# is stored PENDING with its contact list fixed, and the delivery opened with it: SENDING under
# a new lease when `claim` (the process sends it once the transaction commits, `NewAlerts`),
# else PENDING for a pass to claim. One without is stored NEW for a pass to open. Whatever is
# left for a pass wakes the dispatchers at commit: no statement of its own for it.
# The result: the deliveries opened, one a row (one row of nulls when none was).
NEW_ALERTS = text(
    "WITH alert AS (SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:incident_id AS uuid[]),"
    " CAST(:obligation_id AS uuid[]), CAST(:party AS text[]), CAST(:rule_id AS text[]),"
    " CAST(:drill AS boolean[]), CAST(:ack_seconds AS float8[]), CAST(:alert AS text[]),"
    " CAST(:trace_headers AS text[]), CAST(:moved_from AS uuid[]), CAST(:contacts AS text[]),"
    " CAST(:delivery_id AS uuid[]), CAST(:channel AS text[]), CAST(:target AS text[]),"
    " CAST(:contact AS text[]), CAST(:message AS text[]), CAST(:claim AS boolean[]))"
    " WITH ORDINALITY AS a(id, incident_id, obligation_id, party, rule_id, drill, ack_seconds,"
    " alert, trace_headers, moved_from, contacts, delivery_id, channel, target, contact,"
    " message, claim, position)),"
    " claimed AS (INSERT INTO notification.alert_duties (duty_id, notification_id)"
    " SELECT a.obligation_id, a.id FROM alert a ORDER BY a.obligation_id, a.position"
    " ON CONFLICT (duty_id) DO NOTHING RETURNING notification_id),"
    " stored AS (INSERT INTO notification.notifications (id, incident_id, obligation_id,"
    " party, rule_id, drill, ack_seconds, alert, status, trace_headers, former_obligation_ids,"
    " contacts, contact_index)"
    " SELECT a.id, a.incident_id, a.obligation_id, a.party, a.rule_id, a.drill, a.ack_seconds,"
    " CAST(a.alert AS jsonb), CASE WHEN a.delivery_id IS NULL THEN 'NEW' ELSE 'PENDING' END,"
    " CAST(a.trace_headers AS jsonb),"
    " CASE WHEN a.moved_from IS NULL THEN CAST('{}' AS uuid[]) ELSE ARRAY[a.moved_from] END,"
    " CAST(a.contacts AS jsonb), CASE WHEN a.delivery_id IS NULL THEN NULL ELSE 0 END"
    " FROM alert a JOIN claimed ON claimed.notification_id = a.id"
    " ORDER BY a.position"
    " ON CONFLICT (obligation_id) DO NOTHING RETURNING id),"
    " opened AS (INSERT INTO notification.deliveries (id, notification_id, contact_index,"
    " channel, target, contact, status, attempts, lease_until, lease_id, message,"
    " trace_headers)"
    " SELECT a.delivery_id, a.id, 0, a.channel, CAST(a.target AS jsonb), a.contact,"
    " CASE WHEN a.claim THEN 'SENDING' ELSE 'PENDING' END, CASE WHEN a.claim THEN 1 ELSE 0 END,"
    " CASE WHEN a.claim THEN now() + CAST(:lease AS interval) END,"
    " CASE WHEN a.claim THEN gen_random_uuid() END,"
    " CAST(a.message AS jsonb), CAST(a.trace_headers AS jsonb)"
    " FROM alert a JOIN stored ON stored.id = a.id WHERE a.delivery_id IS NOT NULL"
    " ORDER BY a.position RETURNING *),"
    f" waiting AS (SELECT pg_notify('{DISPATCH_CHANNEL}', '') FROM alert a"
    " JOIN stored ON stored.id = a.id WHERE a.claim IS NOT TRUE LIMIT 1)"
    " SELECT opened.*, (SELECT count(*) FROM waiting) AS woken"
    " FROM (SELECT) AS statement LEFT JOIN opened ON true"
)
NEW_ALERTS_DEFERRED = "notification.new_alerts"
# What a transaction keeps (`of_transaction`): its new alerts' first deliveries.
FIRST_DELIVERIES = "notification.first_deliveries"
# The delivery columns of an alert stored NEW, for a pass to open (with one, they are
# `Dispatcher.first_delivery`'s).
WITHOUT_DELIVERY = dict.fromkeys(
    ("contacts", "delivery_id", "channel", "target", "contact", "message", "claim")
)


def write_new_alerts(
    rows: list[dict[str, Any]], lease: timedelta = timedelta(0)
) -> tuple[TextClause, dict[str, Any]]:
    """NEW_ALERTS for `rows` (each an alert, with its first delivery or `WITHOUT_DELIVERY`),
    their alerts and trace contexts encoded as the statement takes them."""
    encoded = [
        row
        | {
            "alert": json_text(row["alert"]),
            "trace_headers": json_text(row["trace_headers"]),
        }
        for row in rows
    ]
    return NEW_ALERTS, {**columns(encoded), "lease": lease}


class NewAlerts:
    """The new alerts of one transaction, written by one statement (`write`) before it
    commits or before a statement that reads them. With the dispatcher running in this
    process, each alert is given its first delivery there (`Dispatcher.first_delivery`),
    claimed while its channel has room, and what was claimed is sent once the transaction
    commits (`Dispatcher.handed_over`): no pass of the dispatcher stands between an alert
    stored and its first send. Without one, the alerts are stored NEW for a pass to open."""

    def __init__(self, session: AsyncSession, local: LocalDispatcher) -> None:
        self._local = local
        self._dispatcher = dispatcher = local.running
        self._reserved: Counter[str] = Counter()
        self._claimed: list[Any] = []
        if dispatcher is not None:
            when_ended(session, self.ended)

    def write(self, rows: list[dict[str, Any]]) -> tuple[TextClause, dict[str, Any]]:
        if self._dispatcher is None:
            return write_new_alerts([row | WITHOUT_DELIVERY for row in rows])
        opened = []
        for row in rows:
            delivery = self._dispatcher.first_delivery(row) or WITHOUT_DELIVERY
            if delivery["claim"]:
                self._reserved[delivery["channel"]] += 1
            opened.append(row | delivery)
        return write_new_alerts(opened, self._dispatcher.lease)

    def written(self, returned: Sequence[Any]) -> None:
        self._claimed.extend(row for row in returned if row.status == "SENDING")

    def ended(self, committed: bool) -> None:
        assert self._dispatcher is not None
        self._dispatcher.handed_over(self._claimed, self._reserved, committed, self._local.running)


def after_new_alerts(handler: EventHandler) -> EventHandler:
    """`handler`, run once the new alerts deferred before it are written."""

    async def handled(session: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
        await write_deferred(session, NEW_ALERTS_DEFERRED)
        await handler(session, event, position)

    return handled


def notice_id(about: str, *keys: object) -> UUID:
    """The id of the one notice about `keys` (what the notice tells of, and to whom): derived,
    so an event redelivered, or published again, never tells anyone twice."""
    return uuid5(NAMESPACE_URL, ":".join(("notice", about, *map(str, keys))))


async def add_notice(session: AsyncSession, notification_id: UUID, notice: dict[str, Any]) -> None:
    """Store a notice for the dispatcher (R16 holds for it too: a drill's notice reaches only
    drill contacts), unless the same notice is stored already."""
    await session.execute(
        insert(notifications)
        .values(
            id=notification_id,
            kind=NotificationKind.NOTICE,
            incident_id=UUID(notice["incident_id"]),
            party=notice["party"],
            drill=notice["drill"],
            alert=notice,
            status=NotificationStatus.NEW,
            trace_headers=current_trace_headers(),
        )
        .on_conflict_do_nothing(index_elements=[notifications.c.id])
    )
    await wake_dispatchers(session)


async def withdraw(
    session: AsyncSession, outbox: Outbox, outcome: ObligationMet | ObligationWaived
) -> bool:
    """Stop the alert of an obligation that no longer needs it (R-ids: the outcome's rule):
    no next contact, pending deliveries cancelled, never reported unacknowledged. A send
    already in flight may still land. False when there is no alert still walking."""
    notification = (
        await session.execute(
            select(notifications)
            .where(notifications.c.obligation_id == outcome.obligation_id)
            .with_for_update()
        )
    ).first()
    if notification is None or not withdrawable(notification.status):
        return False
    now = datetime.now(UTC)
    reason = withdrawal_reason(outcome)
    await session.execute(
        update(notifications)
        .where(notifications.c.id == notification.id)
        .values(
            status=NotificationStatus.WITHDRAWN,
            withdrawn_reason=reason,
            closed_at=now,
            ack_due_at=None,
        )
    )
    cancelled = await session.execute(
        update(deliveries)
        .where(deliveries.c.notification_id == notification.id, deliveries.c.status == "PENDING")
        .values(status="CANCELLED", last_error=f"alert withdrawn: {reason}")
    )
    event = NotificationWithdrawn(
        notification_id=notification.id,
        incident_id=notification.incident_id,
        obligation_id=notification.obligation_id,
        party=notification.party,
        reason=reason,
        withdrawn_at=now,
        deliveries_cancelled=cancelled.rowcount,
        drill=notification.drill,
    )
    await publish_about(session, outbox, notification, event, "notification withdrawn")
    return True
