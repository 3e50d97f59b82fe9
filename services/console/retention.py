"""What the console purges, and after how long (shared/retention.py): expired sessions."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Executable, delete, select

from services.console.models import sessions
from shared.retention import Purge


def expired_sessions(cutoff: datetime, batch: int) -> Executable:
    expired = select(sessions.c.id_hash).where(sessions.c.expires_at < cutoff).limit(batch)
    return delete(sessions).where(sessions.c.id_hash.in_(expired))


def purges() -> list[Purge]:
    # A session is kept no longer than it is good for.
    return [Purge("expired sessions", timedelta(0), expired_sessions)]
