"""Event consumers of notification: routing decisions that call for an alert."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.dispatch import DISPATCH_CHANNEL
from services.notification.models import notifications
from services.notification.templates import stored_alert
from shared.directory import Directory
from shared.events import CloudEvent
from shared.events.models import (
    ActionRejected,
    DeadlineMissed,
    IncidentStatusChanged,
    ObligationCreated,
    ObligationMet,
    ObligationWaived,
)
from shared.kafka import HandlerTable, RecordPosition
from shared.pgnotify import notify
from shared.telemetry import current_trace_headers


@dataclass(frozen=True)
class NotificationHandlers:
    directory: Directory

    @property
    def table(self) -> HandlerTable:
        """What notification does with each type of escalations.v1: an obligation that calls
        for an alert gets one; outcomes and status changes are the escalation's to track."""
        return HandlerTable(
            {ObligationCreated.ce_type: self.handle},
            ignored=frozenset(
                {
                    ObligationMet.ce_type,
                    ObligationWaived.ce_type,
                    DeadlineMissed.ce_type,
                    IncidentStatusChanged.ce_type,
                    ActionRejected.ce_type,
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
                alert=stored_alert(
                    str(notification_id),
                    obligation,
                    party.name if party is not None else obligation.party,
                ),
                # The dispatcher fixes the contact list and opens the first delivery.
                status="NEW",
                trace_headers=current_trace_headers(),
            )
            .on_conflict_do_nothing(index_elements=[notifications.c.obligation_id])
        )
        await notify(session, DISPATCH_CHANNEL)
