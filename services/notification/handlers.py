"""Event consumers of notification: routing decisions that call for an alert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import NAMESPACE_URL, uuid4, uuid5

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.dispatch import DISPATCH_CHANNEL, publish_about
from services.notification.models import deliveries, notifications
from services.notification.status import (
    NotificationKind,
    NotificationStatus,
    withdrawable,
    withdrawal_reason,
)
from services.notification.templates import AlertTexts, stored_alert, stored_notice
from shared.directory import Directory
from shared.events import CloudEvent
from shared.events.models import (
    ActionRejected,
    DeadlineMissed,
    IncidentStatusChanged,
    IncidentUpdated,
    IncidentWentQuiet,
    NotificationWithdrawn,
    ObligationCreated,
    ObligationMet,
    ObligationOmitted,
    ObligationWaived,
)
from shared.kafka import HandlerTable, RecordPosition
from shared.messaging import Outbox
from shared.pgnotify import notify
from shared.telemetry import current_trace_headers


@dataclass(frozen=True)
class NotificationHandlers:
    directory: Directory
    outbox: Outbox
    texts: AlertTexts

    @property
    def table(self) -> HandlerTable:
        """What notification does with each type of escalations.v1: an obligation that calls
        for an alert gets one, and an obligation met or waived before its alert was acknowledged
        stops the alert; an action refused after it was accepted is told, as a notice, to the
        party that recorded it; misses and status changes are the escalation's to track."""
        return HandlerTable(
            {
                ObligationCreated.ce_type: self.handle,
                ObligationMet.ce_type: self.on_outcome,
                ObligationWaived.ce_type: self.on_outcome,
                ActionRejected.ce_type: self.on_rejected,
            },
            ignored=frozenset(
                {
                    DeadlineMissed.ce_type,
                    IncidentStatusChanged.ce_type,
                    ObligationOmitted.ce_type,
                    IncidentUpdated.ce_type,
                    IncidentWentQuiet.ce_type,
                }
            ),
        )

    async def handle(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        if not isinstance(event.data, ObligationCreated) or not event.data.notify:
            return
        obligation = event.data
        party = self.directory.party(obligation.party)
        notification_id = uuid4()
        await session.execute(
            insert(notifications)
            .values(
                id=notification_id,
                incident_id=obligation.incident_id,
                obligation_id=obligation.obligation_id,
                party=obligation.party,
                rule_id=obligation.rule_id,
                drill=obligation.incident.drill,
                # The policy's ACK deadline (RULES.md ACK) rides with the decision; the
                # dispatcher falls back to NOTIFICATION_ACK_SECONDS where it does not.
                ack_seconds=obligation.ack_seconds,
                alert=stored_alert(
                    str(notification_id),
                    obligation,
                    party.name if party is not None else obligation.party,
                    self.texts,
                ),
                # The dispatcher fixes the contact list and opens the first delivery.
                status="NEW",
                trace_headers=current_trace_headers(),
            )
            .on_conflict_do_nothing(index_elements=[notifications.c.obligation_id])
        )
        await notify(session, DISPATCH_CHANNEL)

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
        notification_id = uuid5(NAMESPACE_URL, f"notice:action.rejected:{rejected.action_id}")
        await session.execute(
            insert(notifications)
            .values(
                id=notification_id,
                kind=NotificationKind.NOTICE,
                incident_id=rejected.incident_id,
                party=rejected.party,
                drill=rejected.drill,
                alert=stored_notice(str(notification_id), rejected, party.name, self.texts),
                status=NotificationStatus.NEW,
                trace_headers=current_trace_headers(),
            )
            .on_conflict_do_nothing(index_elements=[notifications.c.id])
        )
        await notify(session, DISPATCH_CHANNEL)

    async def on_outcome(self, session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
        if not isinstance(event.data, ObligationMet | ObligationWaived):
            return
        await withdraw(session, self.outbox, event.data)


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
