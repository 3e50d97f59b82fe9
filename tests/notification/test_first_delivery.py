"""A new alert's first delivery is opened by the consumer's transaction that stores the alert,
claimed there while its channel has room, and sent by the dispatcher of the same process once
that transaction commits: no pass of the dispatcher stands between the two. Nothing is sent
before the commit, nothing of a rolled-back transaction is sent or kept, what finds no room is
left to a pass, and an alert whose party has no contact is given up by a pass, as before.
A dispatcher driven by hand on a database of its own; the consumer's transaction is the one
a batch runs (`write_staged` before the commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notification.ack import AckSigner
from services.notification.channels import DeliveryResult
from services.notification.dispatch import DISPATCH_CHANNEL, Dispatcher, LocalDispatcher
from services.notification.handlers import NotificationHandlers
from services.notification.models import messaging
from services.notification.templates import Form, default_texts
from shared.db import create_session_factory
from shared.domain.directory import Contact, Directory
from shared.events import CloudEvent
from shared.events.models import ObligationCreated
from shared.kafka import RecordPosition
from shared.messaging import OUTBOX_SHARDS, Outbox, notify_channel
from shared.pgnotify import Listener
from shared.settings import ChannelLimits, Settings
from shared.staging import write_staged
from tests.integration.helpers import eventually
from tests.notification.builders import obligation
from tests.support import directory_with_contacts, fetch_rows, listening

REACHABLE = "SFS:150626102"  # one contact, on the channel below
UNREACHABLE = "SFS:150626103"  # no contact at all
POSITION = RecordPosition("escalations.v1", 0, 0)


@dataclass
class HeldChannel:
    """The local file's channel, answering each send once let go (`gate`)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[dict[str, Any]] = field(default_factory=list)
    name: str = "file"
    form: Form = Form.FULL

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        self.sent.append(message)
        await self.gate.wait()
        return DeliveryResult(True, 200)

    async def close(self) -> None:
        return None


@dataclass
class Consumer:
    """Notification's consumer and the dispatcher of its process, by hand."""

    sessions: async_sessionmaker[AsyncSession]
    handlers: NotificationHandlers
    dispatcher: Dispatcher
    channel: HeldChannel
    settings: Settings

    async def consume(self, *parties: str, commit: bool = True) -> list[uuid.UUID]:
        """One batch's transaction: an obligation for each party; their obligation ids."""
        data = [obligation(party) for party in parties]

        class RolledBack(Exception):
            pass

        try:
            async with self.sessions() as session, session.begin():
                if not commit:
                    # Rolled back after its alerts are written: a batch that sent a statement
                    # before them (a moved duty's claim, R20), so that its transaction is begun.
                    # The alerts' statement alone would be its own commit.
                    await session.execute(text("SELECT 1"))
                await self.stage(session, data)
                # Written, not committed: nothing is sent yet.
                await asyncio.sleep(0.05)
                assert self.channel.sent == []
                if not commit:
                    raise RolledBack
        except RolledBack:
            pass
        return [created.obligation_id for created in data]

    async def stage(self, session: AsyncSession, data: list[ObligationCreated]) -> None:
        """What a batch's transaction writes before its commit for these obligations."""
        for created in data:
            event = CloudEvent.new("escalation", created, created.incident_id)
            await self.handlers.handle(session, event, POSITION)
        await write_staged(session)

    async def alert(self, obligation_id: uuid.UUID) -> Any:
        rows = await fetch_rows(
            self.settings,
            "SELECT n.status, n.contacts, n.contact_index, d.status AS delivery,"
            " d.attempts, d.lease_id FROM notification.notifications n"
            " LEFT JOIN notification.deliveries d ON d.notification_id = n.id"
            " WHERE n.obligation_id = $1",
            obligation_id,
        )
        return rows[0] if rows else None


def dispatcher_of(
    sessions: async_sessionmaker[AsyncSession],
    channel: HeldChannel,
    settings: Settings,
    outbox: Outbox = messaging.outbox,
) -> Dispatcher:
    """A dispatcher of the process, its one channel `channel`, by hand (never `run`)."""
    return Dispatcher(
        sessions,
        outbox,
        {"file": channel},
        Directory.load(settings.directory_file),
        Listener.alone(settings.plain_database_url, DISPATCH_CHANNEL),
        settings,
        AckSigner(b"first-delivery-test", 3600, "http://notification.test"),
        default_texts(settings.county_zone),
    )


@pytest.fixture
async def consumer(
    private_settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Consumer]:
    directory_file = directory_with_contacts(
        tmp_path / "directory.yaml",
        lambda party: [{"channel": "file"}] if party["code"] == REACHABLE else [],
    )
    settings = private_settings.model_copy(
        update={
            "directory_file": directory_file,
            "notification_channel_limits": {
                "file": ChannelLimits(concurrency=1, rate_per_second=100, burst=100)
            },
        }
    )
    directory = Directory.load(directory_file)
    texts = default_texts(settings.county_zone)
    channel = HeldChannel()
    sessions = create_session_factory(engine)
    dispatcher = dispatcher_of(sessions, channel, settings)
    handlers = NotificationHandlers(
        directory, messaging.outbox, texts, LocalDispatcher(running=dispatcher)
    )
    yield Consumer(sessions, handlers, dispatcher, channel, settings)
    channel.gate.set()
    await asyncio.sleep(0.1)  # the sends in flight end


async def test_a_delivered_answer_wakes_the_relay_of_its_process_and_notifies_nobody(
    consumer: Consumer,
) -> None:
    """The outbox's relay runs in the process and holds every shard: the record of the answer
    leaves out its NOTIFY, and wakes that relay once committed (`woken_in_process`)."""
    woken: list[bool] = []
    outbox = Outbox(messaging.outbox.table)
    assert outbox.local.attach(lambda: woken.append(True))
    outbox.local.held = frozenset(range(OUTBOX_SHARDS))
    dispatcher = dispatcher_of(consumer.sessions, consumer.channel, consumer.settings, outbox)
    consumer.handlers.dispatcher.running = dispatcher
    dsn = consumer.settings.plain_database_url
    async with listening(dsn, notify_channel(outbox.schema)) as heard:
        [duty] = await consumer.consume(REACHABLE)  # its alert's event notifies, as before
        before = await heard.so_far(dsn)
        consumer.channel.gate.set()
        await eventually(lambda: consumer.alert(duty), lambda row: row["delivery"] == "DELIVERED")
        assert await heard.so_far(dsn) == before
    assert woken == [True] and outbox.local.writing == 0


@pytest.fixture
def successor(consumer: Consumer) -> Dispatcher:
    """A dispatcher started in the process after the first one, on the same channel."""
    return dispatcher_of(consumer.sessions, consumer.channel, consumer.settings)


async def test_the_first_delivery_is_claimed_with_the_alert_and_sent_once_committed(
    consumer: Consumer,
) -> None:
    [duty] = await consumer.consume(REACHABLE)

    stored = await consumer.alert(duty)
    assert stored["status"] == "PENDING"
    assert stored["contact_index"] == 0
    assert stored["contacts"] == '[{"channel": "file"}]'
    assert stored["delivery"] == "SENDING"
    assert stored["attempts"] == 1
    # Sent from here, without a pass, under the lease the statement gave it.
    await eventually(lambda: asyncio.sleep(0, consumer.channel.sent), lambda sent: len(sent) == 1)
    assert consumer.dispatcher.sending == set(consumer.dispatcher._leases)
    assert list(consumer.dispatcher._leases.values()) == [stored["lease_id"]]
    assert consumer.channel.sent[0]["obligation_id"] == str(duty)
    assert consumer.channel.sent[0]["contact_index"] == 0

    consumer.channel.gate.set()
    delivered = await eventually(
        lambda: consumer.alert(duty), lambda row: row["delivery"] == "DELIVERED"
    )
    assert delivered["status"] == "DELIVERED"
    assert consumer.dispatcher.sending == set()


async def test_a_rolled_back_transaction_sends_nothing_and_gives_its_room_back(
    consumer: Consumer,
) -> None:
    guard = consumer.dispatcher._guards["file"]
    [duty] = await consumer.consume(REACHABLE, commit=False)

    assert await consumer.alert(duty) is None
    await asyncio.sleep(0.1)
    assert consumer.channel.sent == []
    assert guard.in_flight == 0
    assert consumer.dispatcher.sending == set()


async def test_what_finds_no_room_is_left_for_a_pass(consumer: Consumer) -> None:
    # The channel takes one send at a time: the second alert's delivery waits, PENDING.
    first, second = await consumer.consume(REACHABLE, REACHABLE)

    assert (await consumer.alert(first))["delivery"] == "SENDING"
    waiting = await consumer.alert(second)
    assert waiting["status"] == "PENDING"
    assert waiting["delivery"] == "PENDING"
    assert waiting["attempts"] == 0

    consumer.channel.gate.set()
    await eventually(lambda: consumer.alert(first), lambda row: row["delivery"] == "DELIVERED")
    # A pass claims what was left, now that the channel has room.
    await consumer.dispatcher.step()
    delivered = await eventually(
        lambda: consumer.alert(second), lambda row: row["delivery"] == "DELIVERED"
    )
    assert delivered["status"] == "DELIVERED"
    assert len(consumer.channel.sent) == 2


async def test_an_alert_to_a_party_without_contacts_is_left_new_and_given_up_by_a_pass(
    consumer: Consumer,
) -> None:
    [duty] = await consumer.consume(UNREACHABLE)

    stored = await consumer.alert(duty)
    assert stored["status"] == "NEW"
    assert stored["delivery"] is None

    await consumer.dispatcher.step()
    assert (await consumer.alert(duty))["status"] == "FAILED"
    assert consumer.channel.sent == []


async def test_without_a_dispatcher_here_the_alert_is_stored_new_for_a_pass(
    consumer: Consumer,
) -> None:
    consumer.handlers.dispatcher.running = None
    [duty] = await consumer.consume(REACHABLE)

    stored = await consumer.alert(duty)
    assert stored["status"] == "NEW"
    assert stored["delivery"] is None

    consumer.channel.gate.set()
    await consumer.dispatcher.step()
    delivered = await eventually(
        lambda: consumer.alert(duty), lambda row: row["delivery"] == "DELIVERED"
    )
    assert delivered["status"] == "DELIVERED"


async def stopped(dispatcher: Dispatcher) -> None:
    running = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.2)  # its first pass done, asleep
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def consumed_across_a_stop(consumer: Consumer, then: Dispatcher | None) -> uuid.UUID:
    """An obligation's batch whose transaction began while the dispatcher ran, and commits
    after it stopped and `then` runs in the process in its place; the obligation's id."""
    created = obligation(REACHABLE)
    transaction = consumer.sessions()
    async with transaction, transaction.begin():
        await consumer.stage(transaction, [created])
        await stopped(consumer.dispatcher)
        consumer.handlers.dispatcher.running = then
    return created.obligation_id


async def test_deliveries_handed_over_as_the_dispatcher_stops_go_to_the_one_started_after_it(
    consumer: Consumer, successor: Dispatcher
) -> None:
    """A transaction that began while the dispatcher ran may commit after it stopped (its
    worker failed and was started again): what it claimed is sent by the dispatcher running
    now, counted against that one's room."""
    duty = await consumed_across_a_stop(consumer, successor)
    consumer.channel.gate.set()

    delivered = await eventually(
        lambda: consumer.alert(duty), lambda row: row["delivery"] == "DELIVERED"
    )
    assert delivered["status"] == "DELIVERED"
    assert [message["obligation_id"] for message in consumer.channel.sent] == [str(duty)]
    assert successor._guards["file"].in_flight == 0  # taken, and given back once sent


async def test_deliveries_handed_over_with_no_dispatcher_running_are_left_to_their_leases(
    consumer: Consumer,
) -> None:
    """With no dispatcher running in the process any more (it is stopping), nobody sends them
    from here: their leases run out and a pass, of a replica or of the process started
    again, takes them over."""
    duty = await consumed_across_a_stop(consumer, None)

    assert (await consumer.alert(duty))["delivery"] == "SENDING"
    await asyncio.sleep(0.1)
    assert consumer.channel.sent == []
    assert consumer.dispatcher.sending == set()
