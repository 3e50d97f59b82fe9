"""The outbox relay holds its shards as a lease on its own connection (`shared.messaging`): a pass
is one statement, which marks what the pass before it sent and reads what is left, by the
outbox's indexes whatever its statistics; the shards stay its own between passes, and it gives
them up, once what it sent is marked, when the lease ends, when it checks the broker and when it
stops. A shard another relay holds is left to it (`test_exactly_once_effects.py`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from shared import messaging
from shared.messaging import OUTBOX_SHARDS, OutboxRelay
from shared.pgnotify import Listener
from shared.settings import Settings
from tests.integration.helpers import PATIENCE_SECONDS, eventually, reported_event
from tests.support import plan_nodes


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement run on a relay's own connection, in order."""
    seen: list[str] = []
    connect = asyncpg.connect

    async def logged_connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        connection = await connect(*args, **kwargs)
        connection.add_query_logger(lambda record: seen.append(record.query))
        return connection

    monkeypatch.setattr(messaging.asyncpg, "connect", logged_connect)
    return seen


async def free_shards(dsn: str, space: int) -> list[int]:
    """The shards another relay could take now (taken and given back at once)."""
    other = await asyncpg.connect(dsn)
    try:
        free = []
        for shard in range(OUTBOX_SHARDS):
            if await other.fetchval("SELECT pg_try_advisory_lock($1, $2)", space, shard):
                free.append(shard)
                await other.execute("SELECT pg_advisory_unlock($1, $2)", space, shard)
        return free
    finally:
        await other.close()


async def test_a_pass_is_one_statement_and_the_shards_stay_the_relays_until_the_lease_ends(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    statements: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)
    async with sessions() as session, session.begin():
        await outbox.add(session, *(reported_event() for _ in range(6)))
    relay = OutboxRelay(outbox, sessions, scratch_producer, dsn)
    try:
        assert await relay.publish_batch() == 6
        async with sessions() as session, session.begin():
            await outbox.add(session, *(reported_event() for _ in range(3)))
        assert await relay.publish_batch() == 3
        # Past the connection's first passes (the driver asks once about the types it meets):
        async with sessions() as session, session.begin():
            await outbox.add(session, *(reported_event() for _ in range(2)))
        statements.clear()
        assert await relay.publish_batch() == 2
        await asyncio.sleep(0)  # the driver hands a statement to its loggers on the next turn
        # The pass before's three marked sent and the two read, by one statement.
        assert len(statements) == 1, statements
        assert statements[0].startswith("WITH marked AS (UPDATE")
        assert "pg_try_advisory_lock" not in statements[0]
        assert await relay.backlog() == 2  # sent, and marked by the next pass

        # Between passes no other relay can take a shard; a pass is one statement, whether it
        # marks what was sent or not.
        assert await free_shards(dsn, relay._lock_space) == []
        statements.clear()
        assert await relay.publish_batch() == 0
        assert await relay.backlog() == 0
        assert await relay.publish_batch() == 0
        await asyncio.sleep(0)
        assert [q.split()[0] for q in statements] == ["WITH", "SELECT"]
        assert await free_shards(dsn, relay._lock_space) == []

        # The lease ended: the pass gives every shard up, however often it took them, once
        # what it sent is marked.
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        assert await relay.publish_batch() == 1
        monkeypatch.setattr(messaging, "LEASE_SECONDS", 0.0)
        statements.clear()
        assert await relay.publish_batch() == 0
        await asyncio.sleep(0)
        assert [q.split()[0] for q in statements] == ["WITH", "SELECT"], statements
        assert statements[1] == messaging.GIVE_UP_SHARDS
        assert await relay.backlog() == 0
        assert await free_shards(dsn, relay._lock_space) == list(range(OUTBOX_SHARDS))

        # Rows written later go with the next pass, which takes the shards first.
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)
        statements.clear()
        assert await relay.publish_batch() == 1
        await asyncio.sleep(0)
        assert [q.split()[0] for q in statements] == ["SELECT", "SELECT"]
        assert statements[0] == messaging.TAKE_SHARDS
        assert await free_shards(dsn, relay._lock_space) == []
        # Stopping marks what was sent before the connection closes.
        await relay.close()
        assert await relay.backlog() == 0
    finally:
        await relay.close()
    assert await free_shards(dsn, relay._lock_space) == list(range(OUTBOX_SHARDS))


async def test_a_relay_that_waits_gives_up_its_shards_when_the_lease_ends(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quiet relay does not keep its shards until its next poll: another replica's broker
    check needs every one."""
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)
    relay = OutboxRelay(outbox, sessions, scratch_producer, dsn, poll_interval=3600.0)
    try:
        assert await relay.publish_batch() == 0
        assert await free_shards(dsn, relay._lock_space) == []
        monkeypatch.setattr(messaging, "LEASE_SECONDS", 0.0)
        assert await relay._wakeup.wait(0)  # listening now: its first wake-up is spent
        waiting = asyncio.create_task(relay._wait_for_rows())
        everything = list(range(OUTBOX_SHARDS))
        await eventually(lambda: free_shards(dsn, relay._lock_space), lambda f: f == everything)
        assert not waiting.done()
        # Still waiting, now for a NOTIFY: the outbox's next rows bring one.
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        await asyncio.wait_for(waiting, PATIENCE_SECONDS)
        assert await relay.publish_batch() == 1
    finally:
        await relay.close()


async def test_the_relay_waits_through_the_processs_listener_its_connection_listens_to_nothing(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    """Each listening backend is signalled by every NOTIFY of the database: the relay waits
    through the process's one listening connection, and holds its shards and runs its
    passes on a connection that listens to nothing."""
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    listener = Listener(dsn)
    relay = OutboxRelay(
        outbox, sessions, scratch_producer, dsn, poll_interval=3600.0, listener=listener
    )
    try:
        assert await relay.publish_batch() == 0
        assert await relay._wakeup.wait(0)  # listening now: its first wake-up is spent
        waiting = asyncio.create_task(relay._wakeup.wait(3600))
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        assert await asyncio.wait_for(waiting, PATIENCE_SECONDS)
        connection = await relay.connection()
        assert connection is not listener.connection
        assert await connection.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert await relay.publish_batch() == 1
    finally:
        await relay.close()
        await listener.close()


async def test_the_broker_check_is_not_held_up_by_the_relays_own_lease(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check locks every shard on another connection: the relay's lease, held on its own,
    would make it wait for ever."""
    from shared.kafka import KafkaBrokerProbe
    from shared.messaging import BrokerCheck

    sessions, outbox, _ = scratch_schema
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)
    probe = KafkaBrokerProbe(infra_settings, "test-relay-lease")
    relay = OutboxRelay(
        outbox,
        sessions,
        scratch_producer,
        infra_settings.plain_database_url,
        broker_check=BrokerCheck(probe),
    )
    try:
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        assert await relay.publish_batch() == 1
        assert await relay.check_broker() == 0
        assert await relay.publish_batch() == 0
    finally:
        await relay.close()
        await probe.close()


async def test_what_a_lost_connection_held_unmarked_is_sent_again_in_order(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows sent and not yet marked when the relay's connection is lost: its shards went with
    it, so the next pass, on a new connection, reads them again and sends them again, oldest
    first, as after a crash between a send and its mark (inboxes absorb the repeat). Nothing
    sent is ever marked on a connection that no longer holds its shard."""
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)
    relay = OutboxRelay(outbox, sessions, scratch_producer, dsn)
    sent: list[str] = []
    send = relay._send

    async def remembered(row: asyncpg.Record) -> asyncio.Future[Any]:
        sent.append(row["key"])
        return await send(row)

    relay._send = remembered  # type: ignore[method-assign]
    events = [reported_event() for _ in range(3)]
    try:
        async with sessions() as session, session.begin():
            await outbox.add(session, *events)
        assert await relay.publish_batch() == 3
        held = await relay.connection()
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", held.get_server_pid())
        finally:
            await admin.close()

        async def lost() -> bool:
            return bool(held.is_closed())

        await eventually(lost, lambda closed: closed)
        assert await relay.publish_batch() == 3
        keys = [event.key.decode() for event in events]
        assert sent == keys + keys
        await relay.close()
        assert await relay.backlog() == 0
    finally:
        await relay.close()


async def test_a_pass_reads_the_outbox_by_its_indexes_however_cheap_a_whole_read_looks(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass's statement keeps the plan of the relay's first passes. On a new database the
    outbox looks empty then, where reading it whole looks cheapest, and such a plan read every
    row of the outbox each pass until autovacuum first analysed it. The relay's connection
    never plans that (`RELAY_SETTINGS`): here, with the pages read in order costing next to
    nothing, as an empty table's do, the pass still reads the outbox by its indexes."""
    sessions, outbox, _ = scratch_schema
    connect = asyncpg.connect

    async def whole_reads_cheap(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        cheap = {"seq_page_cost": "0.0001", "cpu_tuple_cost": "0"}
        return await connect(
            *args, **{**kwargs, "server_settings": kwargs["server_settings"] | cheap}
        )

    monkeypatch.setattr(messaging.asyncpg, "connect", whole_reads_cheap)
    relay = OutboxRelay(outbox, sessions, scratch_producer, infra_settings.plain_database_url)
    try:
        async with sessions() as session, session.begin():
            await outbox.add(session, *(reported_event() for _ in range(3)))
        assert await relay.publish_batch() == 3
        connection = await relay.connection()
        marking = zip(*relay._sent_unmarked, strict=True)
        explained = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) {relay._marked_and_unsent}", relay._held, 100, *marking
        )
        reads = [
            node
            for node in plan_nodes(json.loads(explained)[0]["Plan"])
            if node.get("Relation Name") == "outbox" and node["Node Type"].endswith("Scan")
        ]
        assert len(reads) == 2, reads  # the mark's and the read's
        assert not [node for node in reads if node["Node Type"] == "Seq Scan"], reads
    finally:
        await relay.close()


async def test_a_pass_commits_its_marks_without_waiting_for_the_disk(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    """A mark lost with the database's last moments only sends its rows again, which the
    inboxes absorb: the relay's connection commits without waiting for the flush
    (`RELAY_SETTINGS`), while the service's own transactions, whose rows are the events and
    their effects, still wait for it."""
    sessions, outbox, _ = scratch_schema
    relay = OutboxRelay(outbox, sessions, scratch_producer, infra_settings.plain_database_url)
    try:
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
            durable = (await session.execute(text("SHOW synchronous_commit"))).scalar()
        assert await relay.publish_batch() == 1
        connection = await relay.connection()
        assert await connection.fetchval("SHOW synchronous_commit") == "off"
        assert durable == "on"
    finally:
        await relay.close()
