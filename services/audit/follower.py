"""Findings follow the log: a worker reads new leaves, reviews the incidents they touch, stores
the findings and moves its cursor, all in one transaction.

The consumer appends every valid event as a leaf and does nothing else (`handlers.py`), so the
evidence never depends on the judgement drawn from it: a defect in the findings code (R10–R13,
R17) stops this follower at the first leaf it cannot review, and the log goes on growing. The
stop shows as lag (`audit_findings_lag_leaves`, `/readyz` `findings`, an error in the log with
the reason), and the follower retries the same leaf with backoff until the code is fixed; then
it catches up by itself. Findings have ids derived from what they are about, so reviewing a
leaf again stores and publishes nothing twice.

`review_leaves` decides, without I/O; `FindingsFollower` reads, writes and waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import store
from services.audit.datakeys import DataKeys
from services.audit.findings import PERSONAL_READ, RELEVANT_TYPES, LoggedEvent
from services.audit.linking import joined_by_links
from services.audit.logged import Read, events_of, readable
from services.audit.models import findings as findings_table
from services.audit.models import findings_cursor, incident_leaves, log_entries
from shared.events import CloudEvent
from shared.events.models import AccountabilityFinding
from shared.messaging import Outbox
from shared.pgnotify import Listener

log = logging.getLogger(__name__)

SOURCE = "audit"
BATCH_LEAVES = 500
FIRST_RETRY_SECONDS = 0.2

# An incident's findings from its leaves (in log order): `findings.compute` with the
# deployment's rules, or whatever a test puts in its place.
FindingsFunction = Callable[[UUID, Sequence[LoggedEvent]], list[AccountabilityFinding]]
# An incident's leaves as stored: (index, leaf bytes).
StoredLeaf = store.StoredLeaf
# An incident's history as the findings read it: its leaves' events, in log order.
History = Sequence[Read]


@dataclass(frozen=True)
class LeafHeader:
    """What the follower needs of a new leaf to know whose findings it may change."""

    index: int
    ce_type: str
    subject: str
    also: tuple[str, ...] = ()  # other incidents whose history holds it (R20: links)


@dataclass(frozen=True)
class Stop:
    """The leaf the follower could not get past, and why."""

    index: int
    incident_id: UUID
    error: Exception

    @property
    def reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class Review:
    """The outcome of one pass: where the cursor goes, the findings of the incidents reviewed
    below it, and the stop, if a review failed."""

    cursor: int
    findings: Mapping[UUID, list[AccountabilityFinding]]
    stop: Stop | None = None


def incidents_touched(leaves: Sequence[LeafHeader]) -> dict[UUID, int]:
    """The incidents whose findings the leaves may change, each with its first leaf among
    them, in log order. Leaves about no incident (checkpoints, findings) change none; a link,
    merge or unlink changes both incidents it names."""
    touched: dict[UUID, int] = {}
    for leaf in leaves:
        if leaf.ce_type not in RELEVANT_TYPES:
            continue
        for named in (leaf.subject, *leaf.also):
            try:
                incident_id = UUID(named)
            except ValueError:
                continue
            touched.setdefault(incident_id, leaf.index)
    return touched


def with_their_events(
    touched: Mapping[UUID, int], histories: Mapping[str, History]
) -> tuple[dict[UUID, int], dict[UUID, list[Read]]]:
    """R20: an incident's findings (R12) read the histories of the incidents joined to it by
    standing links and merges, and what touches one of them may change the others' findings.
    The touched incidents with those joined to them (reviewed from the same leaf, in log
    order), and for each the histories of its event, every leaf once."""
    joined = {
        incident: joined_by_links(event for event in history if isinstance(event, LoggedEvent))
        for incident, history in histories.items()
    }

    def event_of(incident: str) -> set[str]:
        found, frontier = {incident}, [incident]
        while frontier:
            for other in joined.get(frontier.pop(), ()):
                if other not in found and other in histories:
                    found.add(other)
                    frontier.append(other)
        return found

    reviewed: dict[UUID, int] = {}
    for incident_id, first in touched.items():
        for member in event_of(str(incident_id)):
            if UUID(member) not in reviewed or reviewed[UUID(member)] > first:
                reviewed[UUID(member)] = first
    together = {
        incident_id: sorted(
            {
                event.index: event
                for member in event_of(str(incident_id))
                for event in histories.get(member, ())
            }.values(),
            key=lambda event: event.index,
        )
        for incident_id in reviewed
    }
    return dict(sorted(reviewed.items(), key=lambda item: item[1])), together


def review_leaves(
    position: int,
    leaves: Sequence[LeafHeader],
    histories: Mapping[UUID, History],
    compute: FindingsFunction,
    touched: Mapping[UUID, int] | None = None,
) -> Review:
    """Review the incidents the leaves from `position` on touch (`touched`, by default
    `incidents_touched`), each over its history up to the last of them (the log as it stood
    then), in the order the leaves touch them.

    A review that raises stops the pass at the incident's first leaf: the cursor goes there,
    with the findings of the incidents touched before it, and the next pass begins with it.
    """
    if [leaf.index for leaf in leaves] != list(range(position, position + len(leaves))):
        raise ValueError(f"the leaves do not follow on from {position} without a gap")
    end = position + len(leaves)
    found: dict[UUID, list[AccountabilityFinding]] = {}
    if touched is None:
        touched = incidents_touched(leaves)
    for incident_id, first in touched.items():
        try:
            events = readable(
                event for event in histories.get(incident_id, ()) if event.index < end
            )
            found[incident_id] = compute(incident_id, events)
        except Exception as error:  # a defect of the judgement, never of the evidence
            return Review(first, found, Stop(first, incident_id, error))
    return Review(end, found)


@dataclass
class FollowerHealth:
    """What this process saw of the follower last, for `/readyz`."""

    stop: Stop | None = None
    since: datetime | None = None
    attempts: int = 0

    def record(self, review: Review) -> None:
        if review.stop is None:
            self.stop, self.since, self.attempts = None, None, 0
            return
        if self.stop is None or self.stop.index != review.stop.index:
            self.since, self.attempts = datetime.now(UTC), 0
        self.stop = review.stop
        self.attempts += 1

    def readiness(self) -> str:
        if self.stop is None or self.since is None:
            return "ok"
        return (
            f"stopped at leaf {self.stop.index} (incident {self.stop.incident_id}) since "
            f"{self.since:%Y-%m-%dT%H:%M:%SZ}, {self.attempts} attempt(s): {self.stop.reason}"
        )

    def retry_delay(self, longest: float) -> float:
        """Doubling from FIRST_RETRY_SECONDS up to `longest`, with jitter."""
        delay = min(FIRST_RETRY_SECONDS * 2 ** max(self.attempts - 1, 0), longest)
        return delay * (0.5 + random.random() / 2)


@dataclass
class FindingsFollower:
    """The worker: one pass per wake-up; one replica at a time holds the cursor."""

    sessions: async_sessionmaker[AsyncSession]
    outbox: Outbox
    compute: FindingsFunction
    # The process's listening connection: the log's appends wake the follower through it.
    listener: Listener
    poll_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    failures: Counter | None = None
    health: FollowerHealth = field(default_factory=FollowerHealth)
    # Opens the personal fields sealed in the leaves that the findings read (they quote facts
    # and names: `findings.PERSONAL_READ`).
    data_keys: DataKeys | None = None
    # After a pass that reviewed leaves, the follower lets more gather before the next: each
    # pass reads the whole history of every incident it touches, so under load one pass for an
    # incident's several events costs a fraction of one per event. The findings judge deadlines
    # of minutes; they come this much later at most.
    pace_seconds: float = 0.5

    async def run(self) -> None:
        wakeup = self.listener.wakeup(store.APPENDED_CHANNEL)
        try:
            while True:
                review, full = await self.follow_once()
                if review is not None and review.stop is not None:
                    delay = self.health.retry_delay(self.retry_max_seconds)
                    log.error(
                        "findings stopped at leaf %d (incident %s), attempt %d, retrying in "
                        "%.1fs: %s",
                        review.stop.index,
                        review.stop.incident_id,
                        self.health.attempts,
                        delay,
                        review.stop.reason,
                        # The traceback once per leaf; then only that it still fails.
                        exc_info=review.stop.error if self.health.attempts == 1 else None,
                    )
                    await asyncio.sleep(delay)
                elif not full:
                    if review is not None and review.findings:
                        await asyncio.sleep(self.pace_seconds)
                    await wakeup.wait(self.poll_seconds)
        finally:
            await wakeup.close()

    async def follow_once(self) -> tuple[Review | None, bool]:
        """One pass over up to BATCH_LEAVES new leaves; None when another replica holds the
        cursor. Also says whether the batch was full (more may be waiting)."""
        async with self.sessions() as session, session.begin():
            await store.act_as_writer(session)
            position = (
                await session.execute(
                    select(findings_cursor.c.position)
                    .where(findings_cursor.c.id == 1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if position is None:
                return None, False
            leaves = await _leaf_headers(session, position)
            if not leaves:
                self.health.record(Review(position, {}))
                return None, False
            end = leaves[-1].index + 1
            first_touched = incidents_touched(leaves)
            stored = await store.event_histories(
                session, [str(incident) for incident in first_touched], end
            )
            # Each leaf read once for the pass, the personal fields the judgements read opened
            # (or erased).
            events = (
                await self.data_keys.opened_events(session, stored, PERSONAL_READ)
                if self.data_keys is not None
                else events_of(stored)
            )
            touched, histories = with_their_events(first_touched, events)
            review = review_leaves(position, leaves, histories, self.compute, touched)
            for incident_id, computed in review.findings.items():
                await store_findings(session, self.outbox, incident_id, computed, self.data_keys)
            if review.cursor != position:
                await session.execute(
                    update(findings_cursor)
                    .where(findings_cursor.c.id == 1)
                    .values(position=review.cursor, updated_at=datetime.now(UTC))
                )
        self.health.record(review)
        if review.stop is not None and self.failures is not None:
            self.failures.inc()
        return review, len(leaves) == BATCH_LEAVES


async def _leaf_headers(session: AsyncSession, position: int) -> list[LeafHeader]:
    """Up to BATCH_LEAVES leaves from `position`, each with the other incidents it is filed
    under."""
    rows = (
        await session.execute(
            select(log_entries.c.index, log_entries.c.ce_type, log_entries.c.subject)
            .where(log_entries.c.index >= position)
            .order_by(log_entries.c.index)
            .limit(BATCH_LEAVES)
        )
    ).all()
    if not rows:
        return []
    also: dict[int, list[str]] = {}
    for index, incident in await session.execute(
        select(incident_leaves.c.index, incident_leaves.c.incident_id).where(
            incident_leaves.c.index.between(rows[0].index, rows[-1].index)
        )
    ):
        also.setdefault(index, []).append(incident)
    return [
        LeafHeader(row.index, row.ce_type, row.subject, tuple(also.get(row.index, ())))
        for row in rows
    ]


async def store_findings(
    session: AsyncSession,
    outbox: Outbox,
    incident_id: UUID,
    computed: Sequence[AccountabilityFinding],
    keys: DataKeys | None = None,
) -> list[AccountabilityFinding]:
    """Store the findings not stored before and publish those; the rest are already known.
    With `keys`, their personal fields (the detail, quoted facts) are kept sealed under the
    incident's data key, erased with it."""
    if not computed:
        return []
    kept = [finding.model_dump(mode="json") for finding in computed]
    if keys is not None:
        kept = [await keys.sealed(session, str(incident_id), data) for data in kept]
    stored = await session.execute(
        insert(findings_table)
        .values(
            [
                {
                    "finding_id": finding.finding_id,
                    "incident_id": incident_id,
                    "rule_id": finding.rule_id,
                    "party": finding.party,
                    "kind": finding.kind,
                    "evidence": list(finding.evidence_log_indexes),
                    "data": data,
                }
                for finding, data in zip(computed, kept, strict=True)
            ]
        )
        .on_conflict_do_nothing()
        .returning(findings_table.c.finding_id)
    )
    new = set(stored.scalars())
    fresh = [finding for finding in computed if finding.finding_id in new]
    await outbox.add(session, *(CloudEvent.new(SOURCE, finding, incident_id) for finding in fresh))
    return fresh


async def findings_position(session: AsyncSession) -> int:
    """Leaves below this have been reviewed."""
    return int(
        (
            await session.execute(
                select(findings_cursor.c.position).where(findings_cursor.c.id == 1)
            )
        ).scalar_one()
    )
