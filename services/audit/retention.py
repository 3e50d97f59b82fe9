"""The retention job: erase the data keys of incidents closed longer ago than the policy keeps
personal data (`retention.personal_data_years_after_closure`). Each erasure is logged, and
published as audit.personal_data_erased, which names no person. One indexed query a run, every
AUDIT_RETENTION_INTERVAL_SECONDS (minutes): cheap when nothing is due.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import store
from services.audit.checkpoints import SOURCE
from services.audit.datakeys import erase_closed_before
from shared.events import CloudEvent
from shared.events.models import PersonalDataErased
from shared.messaging import Outbox
from shared.retention import Retention
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)


@dataclass
class RetentionJob:
    runtime: ServiceRuntime
    outbox: Outbox
    retention: Retention
    interval_seconds: float = 600.0

    async def run(self) -> None:
        while True:
            await self.erase_due(datetime.now(UTC))
            await asyncio.sleep(self.interval_seconds)

    async def erase_due(self, now: datetime) -> list[str]:
        """Erase what is due at `now`; the incidents erased."""
        async with self.runtime.sessions() as session, session.begin():
            await store.act_as_writer(session)
            return await erase_due(session, self.outbox, self.retention, now)


async def erase_due(
    session: AsyncSession, outbox: Outbox, retention: Retention, now: datetime
) -> list[str]:
    """In the caller's transaction: erase the keys due at `now`, stage one
    audit.personal_data_erased per incident, and log what was erased."""
    before = retention.erase_before(now)
    erased = await erase_closed_before(session, before)
    for incident, closed_at in erased:
        event = PersonalDataErased(
            incident_id=UUID(incident),
            closed_at=closed_at,
            erased_at=now,
            retention_years=retention.personal_data_years_after_closure,
        )
        await outbox.add(session, CloudEvent.new(SOURCE, event, incident))
    if erased:
        log.info(
            "erased the personal data of %d incident(s) closed before %s: %s",
            len(erased),
            before.isoformat(),
            ", ".join(incident for incident, _ in erased),
        )
    return [incident for incident, _ in erased]
