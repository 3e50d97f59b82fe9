"""Durable deadlines: due obligations and rule timers are rows, fired by any replica.

Each pass claims due rows with `FOR UPDATE SKIP LOCKED` and settles them in the same
transaction as the events it publishes, so a restart loses none and fires none twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import ColumnElement, Row, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.escalation.models import (
    MISSED_NOT_YET_OMITTED,
    PENDING_DUTY,
    incidents,
    obligations,
    timers,
)
from services.escalation.rules import Policy, Trigger, evaluate, recurring_actions
from services.escalation.store import Store
from shared.db import single_statement
from shared.domain import lifecycle
from shared.domain.vocabulary import LifecycleStatus
from shared.pgnotify import Wakeup

log = logging.getLogger(__name__)

# A deadline that is due but held by another transaction is looked at again this soon.
BUSY_RETRY_SECONDS = 0.2
# Every routing decision NOTIFYs its new duties' deadlines: under a flood of reports those of
# this long are answered by one look at the next deadline, not one look each. No deadline is
# that close to its duty's creation (the policy's shortest are minutes).
NOTIFIED_LOOK_AFTER_SECONDS = 0.2


def not_merged(incident_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """An incident merged into another rests (R20): its duties moved or were waived, and none
    of its deadlines or timers fires (R9's quiet spell and R11 included) until it is unmerged.
    The merged incidents are read by their own index (`ix_incidents_merged`): few, where the
    incidents ever reported are many."""
    return incident_id.not_in(select(incidents.c.id).where(incidents.c.merged_into.is_not(None)))


def next_deadline_look(policy: Policy) -> Select[tuple[Any]]:
    """Seconds from the database's now to the earliest duty, timer or omission (R11) of an
    incident not merged away; null when there is none."""
    duty = select(func.min(obligations.c.due_at)).where(
        PENDING_DUTY, not_merged(obligations.c.incident_id)
    )
    timer = select(func.min(timers.c.fire_at)).where(
        timers.c.fired_at.is_(None),
        timers.c.cancelled_at.is_(None),
        not_merged(timers.c.incident_id),
    )
    omission = select(func.min(obligations.c.due_at)).where(
        *may_be_omitted(policy), not_merged(obligations.c.incident_id)
    )
    earliest = func.least(
        duty.scalar_subquery(),
        timer.scalar_subquery(),
        omission.scalar_subquery() + policy.omitted_after,
    )
    return select(func.extract("epoch", earliest - func.now()))


def overdue_duties() -> list[ColumnElement[bool]]:
    """Pending duties past their due time: missed, and up the ladder."""
    return [PENDING_DUTY, obligations.c.due_at <= func.now()]


def may_be_omitted(policy: Policy) -> list[ColumnElement[bool]]:
    """Missed duties not yet omitted (R11). A recurring duty is superseded by its next
    instance instead (R9), so it is never one."""
    return [MISSED_NOT_YET_OMITTED, obligations.c.action.not_in(recurring_actions(policy))]


def omitted_duties(policy: Policy) -> list[ColumnElement[bool]]:
    """R11: missed duties still undone `omitted_after` past their deadline."""
    return [*may_be_omitted(policy), obligations.c.due_at <= func.now() - policy.omitted_after]


def claim_due_duties(due: Sequence[ColumnElement[bool]], batch_size: int) -> Select[Any]:
    """The earliest `batch_size` duties that are `due`, of incidents not merged away, locked;
    those another pass holds are left to it."""
    return (
        select(obligations)
        .where(*due, not_merged(obligations.c.incident_id))
        .order_by(obligations.c.due_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )


class DeadlineWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: Store,
        wakeup: Wakeup,
        poll_interval: float,
        delay: Histogram,
        batch_size: int = 50,
        notified_pause: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._wakeup = wakeup
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        # How late deadlines fire after their due time, for operations to watch.
        self._delay = delay
        self._notified_pause = notified_pause or (
            lambda: asyncio.sleep(NOTIFIED_LOOK_AFTER_SECONDS)
        )

    async def run(self) -> None:
        try:
            while True:
                settled = (
                    await self.fire_due_obligations()
                    + await self.fire_due_timers()
                    + await self.fire_due_omissions()
                )
                if settled < self._batch_size:
                    await self.sleep_until_next_deadline()
        finally:
            await self._wakeup.close()

    async def sleep_until_next_deadline(self) -> None:
        """Sleep until the earliest deadline. A NOTIFY says a deadline was added (every new
        duty has one) or came back (an unmerge): it only moves the time to wake, so it costs
        one query, not a pass, unless something is due by then; the NOTIFYs of a pause
        (`NOTIFIED_LOOK_AFTER_SECONDS`) after the first one, that one query together."""
        wait = await self.seconds_to_next_deadline()
        while await self._wakeup.wait(wait):
            await self._notified_pause()
            # The look sees what the NOTIFYs of the pause announced: committed before them.
            self._wakeup.clear()
            wait = await self.seconds_to_next_deadline()
            if wait <= BUSY_RETRY_SECONDS:
                return

    async def seconds_to_next_deadline(self) -> float:
        """How long the worker may sleep: until the earliest duty, timer or omission (R11) of
        an incident not merged away, by the database's clock. At least `BUSY_RETRY_SECONDS`
        (one that is due already is held by another transaction, which settles it or lets it
        go); at most the poll interval, a fallback, since a new deadline wakes the worker."""
        # Asked on every new duty's NOTIFY: one statement, so no BEGIN and ROLLBACK around it.
        async with single_statement(self._sessions) as connection:
            seconds = await connection.scalar(next_deadline_look(self._store.policy))
        if seconds is None:
            return self._poll_interval
        return min(max(float(seconds), BUSY_RETRY_SECONDS), self._poll_interval)

    async def fire_due_obligations(self) -> int:
        """Pending duties past their due time: missed, and up the ladder."""

        async def miss(session: AsyncSession, incident: Row, obligation: Row, now: datetime):
            await self._store.miss(session, incident, obligation, now)
            self._delay.observe((now - obligation.due_at).total_seconds())

        return await self._settle(miss, overdue_duties())

    async def fire_due_omissions(self) -> int:
        """R11: missed duties still undone `omitted_after` past their deadline, omitted."""
        return await self._settle(self._store.omit, omitted_duties(self._store.policy))

    async def _settle(
        self,
        settle: Callable[[AsyncSession, Row, Row, datetime], Awaitable[None]],
        due: Sequence[ColumnElement[bool]],
    ) -> int:
        """Claim a batch of obligations that are `due`, and `settle` each in one transaction."""
        async with self._sessions() as session, session.begin():
            claimed = (await session.execute(claim_due_duties(due, self._batch_size))).all()
            now = datetime.now(UTC)
            settled = 0
            for obligation in claimed:
                # Handlers lock the incident before its obligations; taking the incident only
                # when free keeps the two from waiting on each other. Busy ones come next pass.
                incident = await self._store.locked_incident(
                    session, obligation.incident_id, skip_locked=True
                )
                if incident is None:
                    continue
                await settle(session, incident, obligation, now)
                settled += 1
            return settled

    async def fire_due_timers(self) -> int:
        async with self._sessions() as session, session.begin():
            due = (
                await session.execute(
                    select(timers)
                    .where(
                        timers.c.fired_at.is_(None),
                        timers.c.cancelled_at.is_(None),
                        timers.c.fire_at <= func.now(),
                        not_merged(timers.c.incident_id),
                    )
                    .order_by(timers.c.fire_at)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            now = datetime.now(UTC)
            settled = 0
            for timer in due:
                incident = await self._store.locked_incident(
                    session, timer.incident_id, skip_locked=True
                )
                if incident is None:
                    continue
                await session.execute(
                    update(timers).where(timers.c.id == timer.id).values(fired_at=now)
                )
                await self._fire(session, incident, timer, now)
                self._delay.observe((now - timer.fire_at).total_seconds())
                settled += 1
            return settled

    async def _fire(self, session: AsyncSession, incident: Row, timer: Row, now: datetime) -> None:
        if not lifecycle.is_open(LifecycleStatus(incident.status)):
            return
        transition = lifecycle.apply_timer(LifecycleStatus(incident.status), timer.name)
        await self._store.change_status(session, incident, transition, now)
        incident = await self._store.locked_incident(session, timer.incident_id)
        decision = evaluate(
            self._store.policy,
            await self._store.situation(session, incident),
            Trigger(f"timer:{timer.name}", now, timer.id),
            self._store.party_names,
        )
        await self._store.apply(session, incident, decision, timer.id)
