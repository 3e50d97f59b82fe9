"""Retention: rows past their period are purged by a periodic worker of the service that owns
them (docs/operations.md "Retention and personal data").

A purge is one statement deleting (or emptying) at most a batch of rows older than a cutoff; it
runs again until a batch comes back short, each batch its own short transaction, so a backlog
never holds locks for long. Idle, a sweep is one indexed query per purge every
`RETENTION_SWEEP_INTERVAL_SECONDS` (minutes): nothing a duty phone's battery or the idle CPU
target notices. Replicas may sweep at the same time: a row purged twice is purged once.

The policy's `retention` section says how long personal data is kept after an incident closes
(个人信息保护法 Art. 19: no longer than the purpose needs; the bureau's 档案 period): audit
erases an incident's data key after it (`Retention`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import rows_affected
from shared.domain.policyfile import policy_data
from shared.messaging import PURGE_BATCH
from shared.runtime import ServiceRuntime, Worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    """What goes after how long: `statement(cutoff, batch)` purges at most `batch` rows older
    than `cutoff` and reports them in its rowcount."""

    what: str
    period: timedelta
    statement: Callable[[datetime, int], Executable]


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    purge: Purge,
    now: datetime | None = None,
    batch: int = PURGE_BATCH,
) -> int:
    """Purge everything `purge` covers that is older than its period at `now`; how many rows."""
    cutoff = (now or datetime.now(UTC)) - purge.period
    purged = 0
    while True:
        async with sessions() as session, session.begin():
            result = await session.execute(purge.statement(cutoff, batch))
        count = rows_affected(result)
        purged += count
        if count < batch:
            break
    if purged:
        log.info("retention: purged %d %s older than %s", purged, purge.what, cutoff.isoformat())
    return purged


async def sweep_forever(
    sessions: async_sessionmaker[AsyncSession], purges: Sequence[Purge], interval_seconds: float
) -> None:
    """The retention worker: every purge, then a pause of `interval_seconds`, for ever."""
    while True:
        for each in purges:
            await purge(sessions, each)
        await asyncio.sleep(interval_seconds)  # a period, not a synchronisation


def retention_worker(runtime: ServiceRuntime, purges: Sequence[Purge]) -> Worker:
    """The worker a service adds to sweep its `purges` (its sessions exist once it started)."""

    async def sweep() -> None:
        await sweep_forever(
            runtime.sessions, purges, runtime.settings.retention_sweep_interval_seconds
        )

    return sweep


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    personal_data_years_after_closure: int = Field(ge=0, le=100)

    @classmethod
    def load(cls, path: Path, overrides: Path | None = None) -> Retention:
        return cls.model_validate(policy_data(path, overrides)["retention"])

    def erase_before(self, now: datetime) -> datetime:
        """Incidents closed before this moment have had their personal data long enough."""
        return years_before(now, self.personal_data_years_after_closure)


def years_before(moment: datetime, years: int) -> datetime:
    """The same date and time `years` calendar years earlier; 29 February becomes the 28th."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February, in a year that has none
        return moment.replace(year=moment.year - years, day=28)
