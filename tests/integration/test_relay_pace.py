"""A relay with a pace (`OutboxRelay`, intake's `INTAKE_RELAY_PACE_MS`): after a pass that sent
rows, the next comes no sooner than the pace after it began, so the rows written meanwhile go
out in one pass; a pass that sent nothing is followed by no rest, nor is a full one (a backlog
goes at once), and a row after a quiet spell goes at once. The rest is held by the test, not
timed: what is asserted is which rows went together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.messaging import OutboxRelay
from shared.pgnotify import Listener
from shared.settings import Settings
from tests.integration.helpers import PATIENCE_SECONDS, eventually, reported_event


class HeldRelay(OutboxRelay):
    """Counts the rows of each pass, and rests until the test lets it go on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[int] = []
        self.rests: list[float] = []
        self.resting = asyncio.Event()
        self.go_on = asyncio.Event()

    async def publish_batch(self) -> int:
        sent = await super().publish_batch()
        self.passes.append(sent)
        return sent

    async def sent(self) -> list[int]:
        """The rows of each pass so far."""
        return list(self.passes)

    async def _rest(self, seconds: float) -> None:
        self.rests.append(seconds)
        self.resting.set()
        await self.go_on.wait()
        self.go_on.clear()
        self.resting.clear()


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    scratch_schema: Any,
    producer: AIOKafkaProducer,
    relay_class: type[HeldRelay] = HeldRelay,
    **options: Any,
) -> AsyncIterator[HeldRelay]:
    """A held relay of the scratch outbox (`relay_class`), running, woken through a listener
    of its own; it waits for NOTIFY only (no poll within a test)."""
    sessions, outbox, _ = scratch_schema
    dsn = settings.plain_database_url
    listener = Listener(dsn)
    relay = relay_class(
        outbox, sessions, producer, dsn, poll_interval=3600.0, listener=listener, **options
    )
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listener.close()


async def test_rows_written_while_the_relay_rests_go_out_in_its_next_pass(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    sessions, outbox, _ = scratch_schema
    async with running(infra_settings, scratch_schema, scratch_producer, pace=0.04) as relay:
        await eventually(relay.sent, bool)  # its first pass, over an empty outbox
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        await asyncio.wait_for(relay.resting.wait(), PATIENCE_SECONDS)
        # The relay's first pass found nothing and did not rest; the row after that quiet
        # went at once, and its pass rests for what is left of the pace.
        assert relay.passes[0] == 0
        assert [sent for sent in relay.passes if sent] == [1]
        (rest,) = relay.rests
        assert 0 < rest <= 0.04

        for _ in range(3):  # three writers, each its own commit and NOTIFY
            async with sessions() as session, session.begin():
                await outbox.add(session, reported_event())
        relay.go_on.set()
        await asyncio.wait_for(relay.resting.wait(), PATIENCE_SECONDS)
        assert [sent for sent in relay.passes if sent] == [1, 3]
        assert len(relay.rests) == 2


async def test_a_backlog_goes_out_without_rests(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    """A full pass says more rows are waiting: they go at once, in full passes, and only the
    pass that empties the outbox rests."""
    sessions, outbox, _ = scratch_schema
    async with sessions() as session, session.begin():
        await outbox.add(session, *(reported_event() for _ in range(5)))
    async with running(
        infra_settings, scratch_schema, scratch_producer, pace=0.04, batch_size=2
    ) as relay:
        await asyncio.wait_for(relay.resting.wait(), PATIENCE_SECONDS)
        assert relay.passes == [2, 2, 1]
        assert len(relay.rests) == 1


async def test_a_relay_without_a_pace_never_rests(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    sessions, outbox, _ = scratch_schema
    async with running(infra_settings, scratch_schema, scratch_producer) as relay:
        for written in (1, 2):
            async with sessions() as session, session.begin():
                await outbox.add(session, reported_event())
            await eventually(relay.sent, lambda sent, written=written: sum(sent) == written)
        assert relay.rests == []
