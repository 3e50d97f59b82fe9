"""What intake purges, and after how long (shared/retention.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Executable, delete, select, tuple_

from services.intake.models import idempotency_keys
from shared.retention import Purge
from shared.settings import Settings


def expired_idempotency_keys(cutoff: datetime, batch: int) -> Executable:
    """Keys claimed before `cutoff`: their replays are over. The incident they made stays, and
    a source's own reference (`external_refs`) still finds it."""
    expired = (
        select(idempotency_keys.c.caller, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < cutoff)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(idempotency_keys).where(
        tuple_(idempotency_keys.c.caller, idempotency_keys.c.key).in_(expired)
    )


def purges(settings: Settings) -> list[Purge]:
    return [
        Purge(
            "idempotency keys",
            timedelta(hours=settings.intake_idempotency_key_retention_hours),
            expired_idempotency_keys,
        )
    ]
