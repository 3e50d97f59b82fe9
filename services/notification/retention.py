"""What notification purges, and after how long (shared/retention.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Executable, null, select, update

from services.notification.models import FINISHED_DELIVERY, deliveries
from shared.retention import Purge
from shared.settings import Settings


def sent_messages(cutoff: datetime, batch: int) -> Executable:
    """Messages of finished deliveries opened before `cutoff`, emptied: the text sent and the
    acknowledgement link it carried (expired by then: the period covers the link's life). The
    delivery stays: to whom, by which channel, when and how it ended."""
    kept = (
        select(deliveries.c.id)
        .where(
            deliveries.c.message.is_not(None),
            deliveries.c.status.in_(FINISHED_DELIVERY),
            deliveries.c.created_at < cutoff,
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return update(deliveries).where(deliveries.c.id.in_(kept)).values(message=null())


def purges(settings: Settings) -> list[Purge]:
    return [
        Purge(
            "sent messages",
            timedelta(hours=settings.notification_message_retention_hours),
            sent_messages,
        )
    ]
