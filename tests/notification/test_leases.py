"""A lease outlives its send: two dispatchers (replicas) on one database, driven step by step.

A send in flight is renewed by the dispatcher sending it, so no replica claims it while it is
alive; the dispatcher never claims again what it is still sending, even when its renewals fell
behind (a stalled event loop); only a lease nobody renews (a crash) is taken over, and the late
answer of the replica that lost it is fenced out. Answers that come together are recorded
together, through a few connections. Between passes a dispatcher sleeps until the
next thing is due (a retry, an ACK deadline, another replica's lease running out), its own sends
in flight never among them, unless a NOTIFY wakes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.ack import AckSigner
from services.notification.channels import Channel, DeliveryResult
from services.notification.channels.registry import build_channels
from services.notification.dispatch import (
    CLAIM_DUE,
    DISPATCH_CHANNEL,
    RECORDING_CONNECTIONS,
    Dispatcher,
)
from services.notification.guard import limits_for
from services.notification.models import messaging
from services.notification.templates import Form
from shared.db import create_engine, create_session_factory
from shared.domain.directory import Contact, Directory
from shared.events.models import NotificationDelivered
from shared.pgnotify import Listener
from shared.settings import ChannelLimits, Settings
from tests.integration.helpers import eventually
from tests.support import (
    PATIENCE_SECONDS,
    execute_sql,
    fetch_rows,
    fetch_value,
    kept_plan,
    plan_nodes,
    statements_sent,
)

Replica = Callable[..., Dispatcher]


@pytest.fixture
async def replica(engine: AsyncEngine) -> AsyncIterator[Replica]:
    """Makes a dispatcher replica of the given settings; their channels close at the end."""
    built: list[dict[str, Channel]] = []

    def make(
        settings: Settings,
        own_engine: AsyncEngine | None = None,
        channels: dict[str, Channel] | None = None,
    ) -> Dispatcher:
        built.append({**build_channels(settings), **(channels or {})})
        return Dispatcher(
            create_session_factory(own_engine or engine),
            messaging.outbox,
            built[-1],
            Directory.load(settings.directory_file),
            Listener.alone(settings.plain_database_url, DISPATCH_CHANNEL),
            settings,
            AckSigner(b"lease-test", 3600, "http://notification.test"),
        )

    yield make
    for channels in built:
        for channel in channels.values():
            await channel.close()


@pytest.fixture
async def replicas(private_settings: Settings, replica: Replica) -> tuple[Dispatcher, Dispatcher]:
    """The dispatcher that claims the send, and another replica beside it."""
    return replica(private_settings), replica(private_settings)


async def due_delivery(settings: Settings, contacts: int = 1) -> UUID:
    """One alert with one delivery to the local file, due now; the alert's contact list is
    `contacts` long (each the local file)."""
    notification_id, delivery_id, incident_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    message = {
        "notification_id": str(notification_id),
        "incident_id": str(incident_id),
        "obligation_id": str(uuid.uuid4()),
        "party": "SFS:150626102",
        "text": "测试",
    }
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        await connection.execute(
            "INSERT INTO notification.notifications (id, incident_id, obligation_id, party,"
            " rule_id, drill, alert, status, contacts, contact_index)"
            " VALUES ($1, $2, $3, 'SFS:150626102', 'R6', false, $5, 'PENDING', $4, 0)",
            notification_id,
            incident_id,
            uuid.UUID(message["obligation_id"]),
            json.dumps([{"channel": "file"}] * contacts),
            json.dumps(message),  # an alert as stored before its facts were kept: its text
        )
        await connection.execute(
            "INSERT INTO notification.deliveries (id, notification_id, contact_index, channel,"
            " target, contact, status, message) VALUES ($1, $2, 0, 'file', $3, 'file', 'PENDING',"
            " $4)",
            delivery_id,
            notification_id,
            json.dumps({"channel": "file"}),
            json.dumps(message),
        )
    finally:
        await connection.close()
    return delivery_id


async def lease_of(settings: Settings, delivery_id: UUID) -> tuple[datetime, UUID, str, int]:
    [row] = await fetch_rows(
        settings,
        "SELECT lease_until, lease_id, status, attempts FROM notification.deliveries WHERE id = $1",
        delivery_id,
    )
    return row["lease_until"], row["lease_id"], row["status"], row["attempts"]


async def run_out_lease(settings: Settings, delivery_id: UUID) -> None:
    """As if every renewal had been missed: the lease ended a second ago."""
    await execute_sql(
        settings,
        "UPDATE notification.deliveries SET lease_until = now() - interval '1 second'"
        " WHERE id = $1",
        delivery_id,
    )


async def test_a_send_in_flight_is_renewed_and_never_claimed_by_another_replica(
    private_settings: Settings, replicas: tuple[Dispatcher, Dispatcher]
) -> None:
    sender, other = replicas
    delivery_id = await due_delivery(private_settings)

    [claimed] = await sender.claim_due()
    assert claimed.id == delivery_id and sender.sending == {delivery_id}
    first_until, lease_id, status, _ = await lease_of(private_settings, delivery_id)
    assert status == "SENDING"

    assert await sender.renew_leases() == 1
    renewed_until, renewed_id, _, _ = await lease_of(private_settings, delivery_id)
    assert renewed_id == lease_id and renewed_until > first_until
    assert await other.claim_due() == []

    # The renewing loop of a live dispatcher does the same by itself, a third of a lease apart.
    keeper = asyncio.create_task(sender.keep_leases())
    try:
        await eventually(
            lambda: lease_of(private_settings, delivery_id),
            lambda lease: lease[0] > renewed_until,
        )
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    assert await other.claim_due() == []


async def test_a_dispatcher_never_claims_again_what_it_is_still_sending(
    private_settings: Settings, replicas: tuple[Dispatcher, Dispatcher]
) -> None:
    sender, other = replicas
    delivery_id = await due_delivery(private_settings)
    [claimed] = await sender.claim_due()

    await run_out_lease(private_settings, delivery_id)  # its renewals fell behind
    assert await sender.claim_due() == []
    # A lease nobody renews is what a crashed replica leaves: another replica takes it over.
    [taken] = await other.claim_due()
    assert taken.id == delivery_id and taken.lease_id != claimed.lease_id

    # The first sender's late answer is recorded as an attempt but moves nothing: it is fenced
    # out by the lease it lost, and it stops renewing that send.
    await sender.deliver(claimed)
    assert sender.sending == set()
    _, lease_id, status, attempts = await lease_of(private_settings, delivery_id)
    assert (lease_id, status, attempts) == (taken.lease_id, "SENDING", 2)
    await other.deliver(taken)
    _, lease_id, status, _ = await lease_of(private_settings, delivery_id)
    assert (lease_id, status) == (None, "DELIVERED")
    assert other.sending == set()


async def test_a_dispatcher_with_nothing_due_sleeps_until_the_next_thing_is(
    private_settings: Settings, replicas: tuple[Dispatcher, Dispatcher]
) -> None:
    dispatcher, _ = replicas
    fallback = private_settings.notification_dispatch_fallback_seconds
    assert await dispatcher.step() == fallback  # nothing waits: only a NOTIFY or the fallback

    delivery_id = await due_delivery(private_settings)
    await execute_sql(
        private_settings,
        "UPDATE notification.deliveries SET next_attempt_at = now() + interval '20 seconds'"
        " WHERE id = $1",
        delivery_id,
    )
    assert 5 < await dispatcher.step() <= 20  # the retry's time

    await execute_sql(
        private_settings,
        "UPDATE notification.notifications SET status = 'DELIVERED',"
        " ack_due_at = now() + interval '5 seconds'",
    )
    assert 0 < await dispatcher.step() <= 5  # the ACK deadline comes first


async def test_only_the_lease_of_another_replica_wakes_a_dispatcher(
    private_settings: Settings, replicas: tuple[Dispatcher, Dispatcher]
) -> None:
    sender, other = replicas
    await due_delivery(private_settings)
    [claimed] = await sender.claim_due()

    # The sender renews what it sends; the other replica looks again when the lease would end.
    assert await sender.step() == private_settings.notification_dispatch_fallback_seconds
    assert 0 < await other.step() <= private_settings.notification_lease_seconds
    assert sender.sending == {claimed.id}


async def test_a_channel_out_of_tokens_is_looked_at_again_when_its_next_token_comes(
    private_settings: Settings, replica: Replica
) -> None:
    """A backlog on a rate-limited channel drains at the channel's rate, not at the poll
    interval: the sleep after a pass that used the last token is the time to the next one."""
    limited = private_settings.model_copy(
        update={
            "notification_channel_limits": {
                "file": ChannelLimits(concurrency=8, rate_per_second=2, burst=1)
            }
        }
    )
    dispatcher = replica(limited)
    backlog = [await due_delivery(limited) for _ in range(3)]
    assert limited.outbox_poll_interval_seconds > 0.5
    for taken in (1, 2):
        wait = await dispatcher.step()
        assert 0 < wait <= 0.5  # the next token comes in half a second at most
        assert await claimed_count(limited, backlog) == taken
        await asyncio.sleep(wait)


async def test_a_pass_claims_on_every_channel_within_its_room_in_one_statement(
    private_settings: Settings, replica: Replica, engine: AsyncEngine
) -> None:
    """Due deliveries on two channels, one nobody configured: a claim takes each channel's
    room (its free slots) of them, oldest first, and those of the unknown channel to fail
    them fast, in one statement; the full channel is looked at again when a slot frees."""
    narrow = private_settings.model_copy(
        update={"notification_channel_limits": {"file": ChannelLimits(concurrency=2)}}
    )
    dispatcher = replica(narrow)
    on_file = [await due_delivery(narrow) for _ in range(3)]
    unknown = await due_delivery(narrow)
    await execute_sql(
        narrow, "UPDATE notification.deliveries SET channel = 'pager' WHERE id = $1", unknown
    )
    with statements_sent(engine) as statements:
        async with create_session_factory(engine)() as session, session.begin():
            claimed, full, _ = await dispatcher._claim(session)
    assert {row.id for row in claimed} == {*on_file[:2], unknown}
    assert [guard.limits.concurrency for guard in full] == [2]  # the file channel
    assert len(statements) == 1


async def test_a_pass_is_three_statements_and_sleeps_once_it_has_taken_what_was_due(
    private_settings: Settings, replica: Replica, engine: AsyncEngine
) -> None:
    """A pass that starts an alert: it looks at the alerts, opens the delivery and moves the
    alert to its contact, and claims, reading in the claim when the next thing is due. What it
    claimed is not counted as due again (no pass straight after), nor is its new lease."""
    dispatcher = replica(private_settings)
    delivery_id = await due_delivery(private_settings)
    await execute_sql(
        private_settings,
        "UPDATE notification.notifications SET status = 'NEW', contacts = NULL"
        " WHERE id = (SELECT notification_id FROM notification.deliveries WHERE id = $1)",
        delivery_id,
    )
    await execute_sql(
        private_settings, "DELETE FROM notification.deliveries WHERE id = $1", delivery_id
    )
    with statements_sent(engine) as statements:
        wait = await dispatcher.step()
    assert [statement.split()[0:2] for statement in statements] == [
        ["WITH", "fresh"],  # the alerts due
        ["WITH", "opened"],  # the delivery opened, the alert moved to its contact
        ["WITH", "RECURSIVE"],  # the claim, and when the next thing is due
    ]
    assert len(dispatcher.sending) == 1
    assert wait == private_settings.notification_dispatch_fallback_seconds
    retry_in = 30
    await due_delivery(private_settings)
    await execute_sql(
        private_settings,
        "UPDATE notification.deliveries SET next_attempt_at = now() + make_interval(secs => $1)"
        " WHERE status = 'PENDING'",
        float(retry_in),
    )
    assert retry_in - 10 < await dispatcher.step() <= retry_in


# Deliveries waiting for their retry, as a gateway down for a while leaves them.
RETRIES_WAITING = 3000


def rows_read(plan: dict[str, Any], table: str) -> int:
    """The rows a run plan's nodes read of `table`: those they gave and those they filtered
    out, in every loop."""
    return sum(
        int(node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        * int(node.get("Actual Loops", 1))
        for node in plan_nodes(plan["Plan"])
        if node.get("Relation Name") == table
    )


async def test_a_pass_reads_what_is_due_and_being_sent_not_the_retries_waiting(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    """Thousands of deliveries waiting for their retry on two channels, a few due: a claim
    finds the channels one index probe each, and reads of each channel what is due and being
    sent, not the retries beyond now, so that a backlog costs each pass no more than an empty
    queue. It read every delivery waiting (6.5 ms a pass flat out in the bench), in any plan
    PostgreSQL kept for it."""
    due = [await due_delivery(private_settings) for _ in range(3)]
    await execute_sql(
        private_settings,
        "WITH waiting AS (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $1) AS n),"
        " alert AS (INSERT INTO notification.notifications (id, incident_id, obligation_id,"
        " party, rule_id, drill, alert, status, contacts, contact_index)"
        " SELECT id, gen_random_uuid(), gen_random_uuid(), 'SFS:150626102', 'R6', false, '{}',"
        " 'PENDING', '[]', 0 FROM waiting)"
        " INSERT INTO notification.deliveries (id, notification_id, contact_index, channel,"
        " target, contact, status, attempts, next_attempt_at, message)"
        " SELECT gen_random_uuid(), id, 0, CASE WHEN n % 2 = 0 THEN 'file' ELSE 'sms' END, '{}',"
        " 'c', 'PENDING', 1, now() + interval '10 minutes' + n * interval '1 second', '{}'"
        " FROM waiting",
        RETRIES_WAITING,
    )
    await execute_sql(private_settings, "ANALYZE notification.deliveries")
    async with engine.connect() as connection:
        transaction = await connection.begin()
        plan = await kept_plan(
            connection,
            CLAIM_DUE,
            {
                "channels": "ARRAY['file', 'sms']",
                "capacities": "ARRAY[8, 8]",
                "unknown_batch": "8",
                "sending": "'{}'",
                "lease": "interval '30 seconds'",
            },
            analyze=True,
        )
        claimed = await connection.scalar(
            text(
                "SELECT count(*) FROM notification.deliveries WHERE id = ANY(:ids)"
                " AND status = 'SENDING'"
            ),
            {"ids": due},
        )
        await transaction.rollback()
    assert claimed == len(due)
    # Each channel's first row, its due ones and the claim's own reads, not the thousands.
    assert rows_read(plan, "deliveries") < 100, json.dumps(plan)


async def claimed_count(settings: Settings, delivery_ids: list[UUID]) -> int:
    return int(
        await fetch_value(
            settings,
            "SELECT count(*) FROM notification.deliveries WHERE id = ANY($1) AND attempts > 0",
            delivery_ids,
        )
    )


async def test_an_ack_deadline_started_while_the_dispatcher_sleeps_wakes_it_alone(
    private_settings: Settings, replica: Replica
) -> None:
    """A delivery recorded wakes no dispatcher through the database; the ACK deadline it
    starts wakes the dispatcher that recorded it, in time for the next contact, though its
    fallback would let it sleep for an hour."""
    short = private_settings.model_copy(
        update={"notification_ack_seconds": 1.0, "notification_dispatch_fallback_seconds": 3600}
    )
    dispatcher = replica(short)
    delivery_id = await due_delivery(short, contacts=2)
    running = asyncio.create_task(dispatcher.run())
    try:
        connection = await asyncpg.connect(short.plain_database_url)
        heard: list[str] = []
        await connection.add_listener(DISPATCH_CHANNEL, lambda *args: heard.append(args[2]))
        try:

            async def next_contact() -> int:
                return await connection.fetchval(
                    "SELECT count(*) FROM notification.deliveries WHERE contact_index = 1"
                    " AND notification_id = (SELECT notification_id FROM"
                    " notification.deliveries WHERE id = $1)",
                    delivery_id,
                )

            await eventually(next_contact, lambda opened: opened == 1)
            assert not heard  # no other dispatcher was woken for it
        finally:
            await connection.close()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


@dataclass
class AnsweringWhenTold:
    """The local file's channel, holding each send until told to answer it: every one at once
    (`answer_all`, and those made after it at once), or one by one (`answer`)."""

    held: list[asyncio.Event] = field(default_factory=list)
    all_answered: bool = False
    name: str = "file"
    form: Form = Form.FULL

    @property
    def sends(self) -> int:
        return len(self.held)

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        turn = asyncio.Event()
        self.held.append(turn)
        if self.all_answered:
            turn.set()
        await turn.wait()
        return DeliveryResult(True, 200)

    def answer(self, send: int) -> None:
        self.held[send].set()

    def answer_all(self) -> None:
        self.all_answered = True
        for turn in self.held:
            turn.set()

    async def close(self) -> None:
        return None


@dataclass
class HeldSends:
    """A dispatcher on an engine of its own, running, whose sends to the local file answer
    when told (`channel`), with the deliveries it was given due."""

    dispatcher: Dispatcher
    channel: AnsweringWhenTold
    engine: AsyncEngine
    backlog: list[UUID]
    running: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop the dispatcher, as a service stopping does: it records the answers it holds."""
        self.running.cancel()
        await asyncio.gather(self.running, return_exceptions=True)


@contextlib.asynccontextmanager
async def held_sends(
    settings: Settings, replica: Replica, deliveries: int
) -> AsyncIterator[HeldSends]:
    engine = create_engine(settings, pool_size=4)
    channel = AnsweringWhenTold()
    dispatcher = replica(settings, engine, {"file": channel})
    backlog = [await due_delivery(settings) for _ in range(deliveries)]
    held = HeldSends(dispatcher, channel, engine, backlog, asyncio.create_task(dispatcher.run()))
    try:
        yield held
    finally:
        await held.stop()
        await engine.dispose()


async def test_answers_are_recorded_through_a_few_connections_however_many_come_at_once(
    private_settings: Settings, replica: Replica
) -> None:
    """Every send in flight answers at about the same time; their records share
    RECORDING_CONNECTIONS connections, so a burst opens none past what the pool keeps."""
    roomy = create_engine(private_settings, pool_size=32)
    out: list[int] = []
    peak: list[int] = [0]

    def checked_out(*_: object) -> None:
        out.append(1)
        peak[0] = max(peak[0], len(out))

    def checked_in(*_: object) -> None:
        out.pop()

    event.listen(roomy.sync_engine, "checkout", checked_out)
    event.listen(roomy.sync_engine, "checkin", checked_in)
    channel = AnsweringWhenTold()
    dispatcher = replica(private_settings, roomy, {"file": channel})
    in_flight = limits_for("file", private_settings).concurrency
    backlog = [await due_delivery(private_settings) for _ in range(in_flight)]
    running = asyncio.create_task(dispatcher.run())
    try:
        await eventually(lambda: asyncio.sleep(0, channel.sends), lambda n: n == in_flight)
        channel.answer_all()
        await eventually(
            lambda: recorded_count(private_settings, backlog), lambda done: done == len(backlog)
        )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await roomy.dispose()
    assert in_flight > RECORDING_CONNECTIONS + 2
    # The records, the dispatcher's pass and its lease renewals.
    assert peak[0] <= RECORDING_CONNECTIONS + 2


async def recorded_count(settings: Settings, delivery_ids: list[UUID]) -> int:
    return int(
        await fetch_value(
            settings,
            "SELECT count(*) FROM notification.attempts WHERE delivery_id = ANY($1)",
            delivery_ids,
        )
    )


async def test_answers_that_come_together_are_recorded_together_each_as_if_alone(
    private_settings: Settings, replica: Replica
) -> None:
    """Every send of a pass answers at once: their records take a statement or two, not one
    each, and each lands as it would alone: its attempt, its delivery, its alert and the ACK
    clock, its event. An answer whose lease another replica took meanwhile is fenced out on its
    own, and two answers of one alert are both recorded."""
    own_engine = create_engine(private_settings, pool_size=8)
    channel = AnsweringWhenTold()
    dispatcher = replica(private_settings, own_engine, {"file": channel})
    in_flight = limits_for("file", private_settings).concurrency
    backlog = [await due_delivery(private_settings, contacts=2) for _ in range(in_flight - 1)]
    # The first alert's second contact is being alerted too (its first one answered late).
    second_contact = uuid.uuid4()
    await execute_sql(
        private_settings,
        "INSERT INTO notification.deliveries (id, notification_id, contact_index, channel,"
        " target, contact, status, message) SELECT $1, notification_id, 1, channel, target,"
        " contact, 'PENDING', message FROM notification.deliveries WHERE id = $2",
        second_contact,
        backlog[0],
    )
    taken_over = backlog[1]
    running = asyncio.create_task(dispatcher.run())
    try:
        await eventually(lambda: asyncio.sleep(0, channel.sends), lambda n: n == in_flight)
        await execute_sql(
            private_settings,
            "UPDATE notification.deliveries SET lease_id = gen_random_uuid() WHERE id = $1",
            taken_over,
        )
        with statements_sent(own_engine) as sent:
            channel.answer_all()
            everything = [*backlog, second_contact]
            await eventually(
                lambda: recorded_count(private_settings, everything),
                lambda done: done == in_flight,
            )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await own_engine.dispose()

    records = [statement for statement in sent if statement.startswith("WITH answer AS")]
    # One for every alert's first answer, one for the first alert's second.
    assert 1 < len(records) <= 2
    deliveries = await states(
        private_settings,
        "SELECT id, status FROM notification.deliveries WHERE id = ANY($1)",
        everything,
    )
    assert deliveries == {
        **{delivery: "DELIVERED" for delivery in everything},
        taken_over: "SENDING",  # the other replica's now, under its lease
    }
    alerts = await states(
        private_settings,
        "SELECT d.id, n.status || ' ' || (n.ack_due_at IS NOT NULL)::text"
        " FROM notification.deliveries AS d JOIN notification.notifications AS n"
        " ON n.id = d.notification_id WHERE d.id = ANY($1)",
        backlog,
    )
    assert alerts == {
        **{delivery: "DELIVERED true" for delivery in backlog},
        taken_over: "PENDING false",
    }
    delivered_events = await fetch_value(
        private_settings,
        "SELECT count(*) FROM notification.outbox WHERE event_type = $1",
        NotificationDelivered.ce_type,
    )
    assert delivered_events == in_flight  # the fenced-out answer was a delivery too


async def test_answers_that_come_apart_wait_for_one_record_and_a_stopping_dispatcher_writes_it(
    private_settings: Settings, replica: Replica
) -> None:
    """A delivered answer waits NOTIFICATION_RECORD_LINGER_MS for others to join its record:
    answers that come one after another within it are recorded by one statement. A dispatcher
    that stops meanwhile records them as it stops: no send that was answered is made again
    once its lease runs out."""
    # As if the linger were an hour: nothing is recorded before the dispatcher stops.
    lingering = private_settings.model_copy(update={"notification_record_linger_ms": 3_600_000})
    async with held_sends(lingering, replica, 3) as held:
        channel, backlog = held.channel, held.backlog
        await eventually(lambda: asyncio.sleep(0, channel.sends), lambda n: n == 3)
        with statements_sent(held.engine) as sent:
            for answered in range(1, 4):
                channel.answer(answered - 1)
                await eventually(
                    lambda: asyncio.sleep(0, len(held.dispatcher._delivered)),
                    lambda waiting, answered=answered: waiting == answered,
                )
            assert await recorded_count(lingering, backlog) == 0  # each waits for the others
            await held.stop()  # the dispatcher stops: it writes the record as it does
    records = [statement for statement in sent if statement.startswith("WITH answer AS")]
    assert len(records) == 1
    assert await recorded_count(lingering, backlog) == 3
    deliveries = await states(
        lingering, "SELECT id, status FROM notification.deliveries WHERE id = ANY($1)", backlog
    )
    assert deliveries == dict.fromkeys(backlog, "DELIVERED")


def one_send_at_a_time(settings: Settings, **more: Any) -> Settings:
    """The file channel sends one alert at a time, and its answers would wait an hour for their
    record."""
    return settings.model_copy(
        update={
            "notification_record_linger_ms": 3_600_000,
            "notification_channel_limits": {
                "file": ChannelLimits(concurrency=1, rate_per_second=100, burst=100)
            },
            **more,
        }
    )


async def second_send_while_first_answer_waits(held: HeldSends) -> None:
    """The first alert sent and answered; the second sent while that answer waits for its
    record, the first send's slot given back."""
    await eventually(lambda: asyncio.sleep(0, held.channel.sends), lambda n: n == 1)
    held.channel.answer(0)
    await eventually(lambda: asyncio.sleep(0, held.channel.sends), lambda n: n == 2)


async def test_an_answer_waiting_for_its_record_leaves_its_channel_slot_to_the_next_send(
    private_settings: Settings, replica: Replica
) -> None:
    """A channel's concurrency counts its sends in flight: once the gateway has answered a send,
    its slot is free for the next send while the answer waits for its record, and the alert's
    ACK clock runs from the answer."""
    one_at_a_time = one_send_at_a_time(private_settings)
    async with held_sends(one_at_a_time, replica, 2) as held:
        channel, backlog = held.channel, held.backlog
        await second_send_while_first_answer_waits(held)
        assert len(held.dispatcher._delivered) == 1
        assert await recorded_count(one_at_a_time, backlog) == 0
        channel.answer(1)
        await eventually(
            lambda: asyncio.sleep(0, len(held.dispatcher._delivered)), lambda waiting: waiting == 2
        )
        await held.stop()  # the dispatcher stops: it records both answers as it does
    assert await recorded_count(one_at_a_time, backlog) == 2
    # Each alert's ACK clock started when its gateway answered, not when the answer was
    # recorded (here, as the dispatcher stopped).
    clocks = await fetch_rows(
        one_at_a_time,
        "SELECT extract(epoch FROM n.ack_due_at - n.delivered_at) FROM notification.deliveries d"
        " JOIN notification.notifications n ON n.id = d.notification_id WHERE d.id = ANY($1)",
        backlog,
    )
    assert [float(row[0]) for row in clocks] == [one_at_a_time.notification_ack_seconds] * 2


async def test_past_the_unrecorded_answers_limit_a_send_keeps_its_slot_until_its_record(
    private_settings: Settings, replica: Replica
) -> None:
    """Answers that wait for their record give their slots to the next sends only up to
    `NOTIFICATION_UNRECORDED_ANSWERS_LIMIT`: past it a send keeps its slot until its answer is
    recorded, so a database slower than the gateways holds the sends back rather than letting
    the answers pile up in memory."""
    one_unrecorded = one_send_at_a_time(private_settings, notification_unrecorded_answers_limit=1)
    async with held_sends(one_unrecorded, replica, 3) as held:
        channel, backlog = held.channel, held.backlog
        await second_send_while_first_answer_waits(held)
        channel.answer(1)
        await eventually(
            lambda: asyncio.sleep(0, len(held.dispatcher._delivered)), lambda waiting: waiting == 2
        )
        # The second answer came with one waiting already: its send keeps the channel's one
        # slot, and the third alert is not sent while the two wait for their record.
        assert held.dispatcher._guards["file"].in_flight == 1
        assert channel.sends == 2
        await held.stop()  # the dispatcher stops: it records both answers as it does
    assert await recorded_count(one_unrecorded, backlog) == 2


async def states(settings: Settings, sql: str, ids: list[UUID]) -> dict[UUID, str]:
    return {row[0]: row[1] for row in await fetch_rows(settings, sql, ids)}


# How long the record waits before its one deadlock check: longer than this test takes to see
# it waiting and make the batch wait on it, on a busy machine too.
RECORD_DEADLOCK_CHECK = "5s"


@pytest.mark.parametrize(
    ("answers", "asked_after_the_last"),
    [(2, [0]), (3, [1, 0])],
    ids=["the-batch-asks-for-the-first", "the-batch-asks-for-the-middle-then-the-first"],
)
async def test_a_record_that_meets_a_batch_holding_its_alerts_in_another_order_runs_again(
    private_settings: Settings, replica: Replica, answers: int, asked_after_the_last: list[int]
) -> None:
    """Deliveries answer together, and another writer holds the last of their alerts and then
    asks for earlier ones, which the record holds (as a consumer's batch did before it took its
    alerts ahead, `test_batch_locks`): a deadlock. PostgreSQL rolls the record back (it waited
    first). With three, the writer asks for the middle alert (the deadlock) and at once for the
    first, as one taking alerts one by one would: run again at once, the record would take the
    first again before the writer and meet it anew. It pauses, runs again once the writer
    commits, and each delivery is recorded once, never sent anew."""
    # PostgreSQL rolls back the waiter whose deadlock check finds the cycle, and a waiter checks
    # once, `deadlock_timeout` after it began to wait. The record waits first: its check must
    # come after the batch has asked for the alert the record holds, however slowly a busy
    # machine lets this test see it waiting; the batch never checks.
    database = urlsplit(private_settings.plain_database_url).path.lstrip("/")
    await execute_sql(
        private_settings,
        f"ALTER DATABASE \"{database}\" SET deadlock_timeout = '{RECORD_DEADLOCK_CHECK}'",
    )
    channel = AnsweringWhenTold()
    dispatcher = replica(private_settings, None, {"file": channel})
    deliveries = [await due_delivery(private_settings) for _ in range(answers)]
    alerts = sorted(
        row["notification_id"]
        for row in await fetch_rows(
            private_settings,
            "SELECT notification_id FROM notification.deliveries WHERE id = ANY($1)",
            deliveries,
        )
    )
    running = asyncio.create_task(dispatcher.run())
    batch = await asyncpg.connect(private_settings.plain_database_url)
    observer = await asyncpg.connect(private_settings.plain_database_url)
    try:
        await batch.execute("SET deadlock_timeout = '1h'")
        # Should the record have checked before the batch waited, the batch gives up.
        await batch.execute(f"SET lock_timeout = '{int(PATIENCE_SECONDS)}s'")
        await eventually(lambda: asyncio.sleep(0, channel.sends), lambda n: n == answers)
        transaction = batch.transaction()
        await transaction.start()
        lock = "SELECT id FROM notification.notifications WHERE id = $1 FOR UPDATE"
        await batch.execute(lock, alerts[-1])
        channel.answer_all()

        async def record_waiting() -> int:
            return int(
                await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'WITH answer AS%'",
                )
            )

        await eventually(record_waiting, lambda waiting: waiting == 1)
        for index in asked_after_the_last:  # the first: PostgreSQL ends the record's wait
            await batch.execute(lock, alerts[index])
        await transaction.commit()
        await eventually(
            lambda: recorded_count(private_settings, deliveries), lambda done: done == answers
        )
    finally:
        await batch.close()
        await observer.close()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await execute_sql(private_settings, f'ALTER DATABASE "{database}" RESET deadlock_timeout')
    outcomes = await states(
        private_settings,
        "SELECT d.id, d.status || ' ' || count(a.id) FROM notification.deliveries AS d"
        " JOIN notification.attempts AS a ON a.delivery_id = d.id WHERE d.id = ANY($1)"
        " GROUP BY d.id",
        deliveries,
    )
    assert outcomes == dict.fromkeys(deliveries, "DELIVERED 1")
    assert channel.sends == answers  # each sent once
