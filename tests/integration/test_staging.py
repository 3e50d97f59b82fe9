"""A transaction's outbox rows and NOTIFYs wait for its commit and are written by one statement
(`shared.staging`): in the order they were added, readable as the relay reads them, with the
relay woken; nothing of a rolled-back transaction is written. Real PostgreSQL, a scratch schema
with an outbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import Table, TextClause, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import CloudEvent, decode, topics
from shared.events.models import IncidentStatusChanged
from shared.messaging import Inbox, InboxEntry, Outbox, notify_channel
from shared.pgnotify import notify
from shared.settings import Settings
from shared.staging import (
    carry,
    claim_at_commit,
    columns,
    defer,
    when_ended,
    write_deferred,
    write_staged,
)
from tests.support import statements_sent

PATIENCE_SECONDS = 30


def status_changed(incident_id: uuid.UUID, status: str) -> CloudEvent:
    data = IncidentStatusChanged(
        incident_id=incident_id,
        status=status,
        previous_status=None,
        changed_at=datetime.now(UTC),
        reason="staging test",
    )
    return CloudEvent.new("escalation", data, incident_id)


async def test_a_transactions_events_and_notifies_are_one_statement_at_commit_in_order(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    sessions, outbox, _ = scratch_schema
    incident = uuid4()
    events = [status_changed(incident, status) for status in ("REPORTED", "RESPONDING", "CLOSED")]
    listener = await asyncpg.connect(infra_settings.plain_database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    for channel in (notify_channel(outbox.schema), "staging_test_deadlines"):
        await listener.add_listener(channel, lambda *args: heard.put_nowait(args[2]))
    try:
        async with sessions() as session:
            with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
                async with session.begin():
                    await outbox.add(session, events[0])
                    await notify(session, "staging_test_deadlines")
                    await outbox.add(session, *events[1:])
                    staged_before_commit = (
                        await session.execute(select(outbox.table.c.event_id))
                    ).all()
        assert staged_before_commit == []  # nothing is written before the commit
        writes = [s for s in statements if "outbox" in s and "INSERT" in s]
        assert len(writes) == 1 and "pg_notify" in writes[0]
        async with asyncio.timeout(PATIENCE_SECONDS):
            assert {await heard.get(), await heard.get()} == {
                notify_channel(outbox.schema),
                "staging_test_deadlines",
            }
        async with sessions() as session:
            rows = (await session.execute(select(outbox.table).order_by(outbox.table.c.id))).all()
        assert [row.event_id for row in rows] == [e.id for e in events]
        assert {row.key for row in rows} == {str(incident)}
        assert len({row.shard for row in rows}) == 1  # one key, one shard: they leave in order
        for row, sent in zip(rows, events, strict=True):
            assert row.topic == topics.ESCALATIONS and row.event_type == sent.type
            assert row.headers == json.loads(json.dumps(sent.attributes()))
            read = decode(row.topic, [(k, v.encode()) for k, v in row.headers.items()], row.payload)
            assert (read.id, read.data) == (sent.id, sent.data)
    finally:
        await listener.close()


async def test_what_is_staged_can_be_written_before_the_commit_in_the_same_statements(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`write_staged`, as a consumer's batch calls it before its commit: the deferred rows,
    then the outbox rows with the NOTIFYs, sent to the driver; the commit writes nothing more,
    and the NOTIFYs are heard once it is done."""
    sessions, outbox, _ = scratch_schema
    table = f"{outbox.schema}.written_early"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    insert = text(f"INSERT INTO {table} SELECT unnest(CAST(:id AS int[]))")
    events = [status_changed(uuid4(), "REPORTED"), status_changed(uuid4(), "CLOSED")]
    listener = await asyncpg.connect(infra_settings.plain_database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(notify_channel(outbox.schema), lambda *a: heard.put_nowait(a[2]))
    try:
        async with sessions() as session:
            with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
                async with session.begin():
                    defer(session, "ids", lambda rows: (insert, columns(rows)), {"id": 1})
                    await outbox.add(session, *events)
                    defer(session, "ids", lambda rows: (insert, columns(rows)), {"id": 2})
                    await write_staged(session)
                    written = len(statements)
                    seen = (await session.execute(select(outbox.table.c.event_id))).all()
                    await write_staged(session)  # nothing left: nothing sent
                    assert heard.empty()  # a NOTIFY is delivered at commit
                    sent_before_commit = len(statements)
        assert [statement.split()[0:3] for statement in statements[:written]] == [
            ["INSERT", "INTO", table],
            ["WITH", "written", "AS"],
        ]
        assert "pg_notify" in statements[1]
        assert [row.event_id for row in seen] == [event.id for event in events]
        assert sent_before_commit == written + 1 == len(statements)  # the commit sent none
        async with asyncio.timeout(PATIENCE_SECONDS):
            assert await heard.get() == notify_channel(outbox.schema)
        async with sessions() as session:
            ids = (await session.execute(text(f"SELECT id FROM {table} ORDER BY id"))).scalars()
            assert list(ids) == [1, 2]
    finally:
        await listener.close()


async def test_a_rolled_back_transaction_writes_and_tells_nothing(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    sessions, outbox, _ = scratch_schema
    async with sessions() as session:
        await outbox.add(session, status_changed(uuid4(), "REPORTED"))  # begins a transaction
        await session.rollback()
        # The same session's next transaction stages afresh.
        kept = status_changed(uuid4(), "RESPONDING")
        async with session.begin():
            await outbox.add(session, kept)
    async with sessions() as session:
        written = (await session.execute(select(outbox.table.c.event_id))).scalars().all()
        assert written == [kept.id]
        count = await session.execute(text(f"SELECT count(*) FROM {outbox.schema}.outbox"))
        assert count.scalar_one() == 1


async def test_deferred_rows_go_in_one_statement_at_commit_or_when_asked_for(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """A service's own deferred rows (`defer`): one statement for all of them, before the
    outbox's; `write_deferred` writes them at once, for a statement about to read them; a
    rollback drops them."""
    sessions, outbox, _ = scratch_schema
    table = f"{outbox.schema}.deferred_rows"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)"))
    insert = text(
        f"INSERT INTO {table} SELECT * FROM unnest(CAST(:id AS int[]), CAST(:name AS text[]))"
    )
    writes: list[list[dict[str, Any]]] = []

    def write(rows: list[dict[str, Any]]) -> tuple[TextClause, dict[str, Any]]:
        writes.append(rows)
        return insert, columns(rows)

    async def stored() -> list[tuple[int, str]]:
        async with sessions() as session:
            found = await session.execute(text(f"SELECT id, name FROM {table} ORDER BY id"))
            return [(row.id, row.name) for row in found]

    async with sessions() as session:
        async with session.begin():
            defer(session, "rows", write, {"id": 1, "name": "一"})
            defer(session, "rows", write, {"id": 2, "name": "二"})
            await outbox.add(session, status_changed(uuid4(), "REPORTED"))
            assert (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
        assert writes == [[{"id": 1, "name": "一"}, {"id": 2, "name": "二"}]]
        assert await stored() == [(1, "一"), (2, "二")]

        async with session.begin():
            defer(session, "rows", write, {"id": 3, "name": "三"})
            await write_deferred(session, "rows")
            assert (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 3
            defer(session, "rows", write, {"id": 4, "name": "四"})
        assert writes[1:] == [[{"id": 3, "name": "三"}], [{"id": 4, "name": "四"}]]

        writes.clear()
        async with session.begin():
            defer(session, "rows", write, {"id": 5, "name": "五"})
            await session.rollback()
        async with session.begin():
            await outbox.add(session, status_changed(uuid4(), "REPORTED"))
        assert writes == []
    assert [row_id for row_id, _ in await stored()] == [1, 2, 3, 4]


async def test_a_deferred_writes_rows_are_told_to_whoever_asked_whether_written_early_or_at_commit(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`defer(..., written)`: the rows its statement returned, through the driver
    (`write_deferred`, `write_staged`) or at a commit that writes it (through SQLAlchemy)."""
    sessions, outbox, _ = scratch_schema
    table = f"{outbox.schema}.returned_rows"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    insert = text(f"INSERT INTO {table} SELECT unnest(CAST(:id AS int[])) RETURNING id * 10 AS n")
    told: list[list[int]] = []

    def write(rows: list[dict[str, Any]]) -> tuple[TextClause, dict[str, Any]]:
        return insert, columns(rows)

    def written(returned: Sequence[Any]) -> None:
        told.append(sorted(row.n for row in returned))

    async with sessions() as session:
        async with session.begin():
            defer(session, "rows", write, {"id": 1}, written)
            defer(session, "rows", write, {"id": 2}, written)
            await write_deferred(session, "rows")
            defer(session, "rows", write, {"id": 3}, written)
            await write_staged(session)
        async with session.begin():
            defer(session, "rows", write, {"id": 4}, written)  # written by the commit
    assert told == [[10, 20], [30], [40]]


async def test_what_waits_for_a_transactions_end_is_told_whether_it_committed(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`when_ended`: once for the transaction it was given in, in order, committed or rolled
    back (by the session or by an error); one that raises stops none after it."""
    sessions, _, _ = scratch_schema
    told: list[tuple[str, bool]] = []

    def tell(name: str) -> Callable[[bool], None]:
        return lambda committed: told.append((name, committed))

    def fails(_: bool) -> None:
        raise RuntimeError("told and failed")

    async with sessions() as session:
        async with session.begin():
            when_ended(session, fails)
            when_ended(session, tell("first"))
            when_ended(session, tell("second"))
            assert told == []
        assert told == [("first", True), ("second", True)]

        told.clear()
        async with session.begin():
            when_ended(session, tell("rolled back"))
            await session.rollback()
        async with session.begin():
            await session.execute(text("SELECT 1"))  # a transaction of its own: nothing told
        assert told == [("rolled back", False)]

    told.clear()
    with pytest.raises(ZeroDivisionError):
        async with sessions() as session, session.begin():
            when_ended(session, tell("failed"))
            _ = 1 / 0
    assert told == [("failed", False)]


async def test_a_claim_is_carried_by_the_last_statement_of_what_is_staged(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`claim_at_commit`, as a consumer's batch claims its events in the inbox: its INSERT
    rides on the last statement that writes what the transaction staged (a deferred write's
    with or without a WITH list, the outbox's), or is a statement of its own when nothing else
    is staged or the last statement cannot carry it (a recursive WITH list); a row it cannot
    insert fails the transaction, and nothing staged by it is written."""
    sessions, outbox, inbox_table = scratch_schema
    inbox = Inbox(inbox_table, "staging-test")
    table = f"{outbox.schema}.carried_rows"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    plain = text(f"INSERT INTO {table} SELECT unnest(CAST(:id AS int[]))")
    listed = text(
        f"WITH ids AS (SELECT unnest(CAST(:id AS int[])) AS id)"
        f" INSERT INTO {table} SELECT id FROM ids"
    )
    recursive = text(
        f"WITH RECURSIVE ids(id) AS (SELECT unnest(CAST(:id AS int[])))"
        f" INSERT INTO {table} SELECT id FROM ids"
    )
    offsets = iter(range(1, 100))

    def entry() -> InboxEntry:
        return InboxEntry.of(
            status_changed(uuid4(), "REPORTED"), topics.ESCALATIONS, 0, next(offsets)
        )

    async def claimed_with(
        entries: list[InboxEntry], deferred: TextClause | None, event: CloudEvent | None
    ) -> list[str]:
        async with sessions() as session:
            with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
                async with session.begin():
                    if deferred is not None:
                        row = {"id": next(offsets)}
                        defer(session, "rows", lambda rows: (deferred, columns(rows)), row)
                    if event is not None:
                        await outbox.add(session, event)
                    claim_at_commit(session, inbox.claim_sql, inbox.claim_parameters(entries))
                    await write_staged(session)
                    sent = list(statements)
        return [" ".join(statement.split()[:4]) for statement in sent]

    async def inbox_ids() -> set[uuid.UUID]:
        async with sessions() as session:
            return set((await session.execute(select(inbox_table.c.ce_id))).scalars())

    carried = "WITH carried AS (INSERT"
    entries = [entry(), entry()]
    assert await claimed_with(entries, plain, status_changed(uuid4(), "CLOSED")) == [
        f"INSERT INTO {table} SELECT",
        carried,
    ]
    assert await claimed_with([entry()], listed, None) == [carried]
    assert await claimed_with([entry()], plain, None) == [carried]
    assert await claimed_with([entry()], recursive, None) == [
        "WITH RECURSIVE ids(id) AS",
        f"INSERT INTO {inbox_table.schema}.inbox (ce_source,",
    ]
    assert await claimed_with([entry()], None, None) == [
        f"INSERT INTO {inbox_table.schema}.inbox (ce_source,"
    ]
    async with sessions() as session:
        rows_before = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
    assert len(await inbox_ids()) == 6 and rows_before == 4

    # An event claimed before: the statement carrying the claim fails, and the transaction.
    refused = status_changed(uuid4(), "CLOSED")
    with pytest.raises(IntegrityError):
        await claimed_with([entry(), entries[0]], plain, refused)
    async with sessions() as session:
        rows = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
        events = (await session.execute(select(outbox.table.c.event_id))).scalars().all()
    assert rows == rows_before and refused.id not in events
    assert len(await inbox_ids()) == 6


async def test_one_statement_staged_and_nothing_sent_before_is_its_own_transaction(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`write_staged` of a transaction that sent nothing before and stages one statement (a
    batch whose handlers only deferred their writes): the statement goes without `BEGIN`, and
    the commit sends nothing; with anything sent before, or more staged, the transaction is
    begun as ever. Either way what is staged is written once, and a statement that fails
    writes nothing."""
    sessions, outbox, _ = scratch_schema
    table = f"{outbox.schema}.alone_rows"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    insert = text(f"INSERT INTO {table} SELECT unnest(CAST(:id AS int[]))")

    async def staged_and_written(ids: list[int], read_first: bool, with_event: bool) -> bool:
        """Whether the driver's connection was in a transaction once the rows were written."""
        async with sessions() as session, session.begin():
            if read_first:
                await session.execute(text("SELECT 1"))
            for row_id in ids:
                defer(session, "rows", lambda rows: (insert, columns(rows)), {"id": row_id})
            if with_event:
                await outbox.add(session, status_changed(uuid4(), "REPORTED"))
            await write_staged(session)
            raw = await (await session.connection()).get_raw_connection()
            return bool(raw.driver_connection.is_in_transaction())

    assert await staged_and_written([1, 2], read_first=False, with_event=False) is False
    assert await staged_and_written([3], read_first=True, with_event=False) is True
    assert await staged_and_written([4], read_first=False, with_event=True) is True
    with pytest.raises(IntegrityError):
        await staged_and_written([5, 1], read_first=False, with_event=False)
    async with sessions() as session:
        ids = (await session.execute(text(f"SELECT id FROM {table} ORDER BY id"))).scalars()
        assert list(ids) == [1, 2, 3, 4]


async def test_carried_rows_ride_the_last_statement_or_go_alone_and_fail_with_it(
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """`carry`: a handler's rows that nothing reads before the commit are WITH queries of the
    last statement that writes what the transaction staged (the outbox's, with the claim),
    or, with nothing else staged, one statement of their own, without `BEGIN`;
    `write_deferred` writes them at once, for a statement about to read them. A row that
    cannot be written fails that statement, and with it everything staged."""
    sessions, outbox, inbox_table = scratch_schema
    inbox = Inbox(inbox_table, "staging-test-carried")
    table = f"{outbox.schema}.carried_rows_of_handlers"
    async with sessions() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY)"))
    offsets = iter(range(1, 100))

    def carried_ids(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        return (
            f"carried_ids AS (INSERT INTO {table} SELECT unnest(CAST(:carried_id AS int[])))",
            {"carried_id": [row["id"] for row in rows]},
        )

    async def staged_with(
        ids: list[int], *, event: bool, claim: bool, read_between: bool = False
    ) -> tuple[list[str], bool]:
        """The statements sent, and whether the driver's connection was in a transaction."""
        async with sessions() as session:
            with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
                async with session.begin():
                    for row_id in ids:
                        carry(session, "ids", carried_ids, {"id": row_id})
                        if read_between:
                            await write_deferred(session, "ids")
                    if event:
                        await outbox.add(session, status_changed(uuid4(), "REPORTED"))
                    if claim:
                        entry = InboxEntry.of(
                            status_changed(uuid4(), "REPORTED"),
                            topics.ESCALATIONS,
                            0,
                            next(offsets),
                        )
                        claim_at_commit(session, inbox.claim_sql, inbox.claim_parameters([entry]))
                    await write_staged(session)
                    raw = await (await session.connection()).get_raw_connection()
                    began = bool(raw.driver_connection.is_in_transaction())
                    sent = list(statements)
        return [" ".join(statement.split()[:3]) for statement in sent], began

    async def stored() -> list[int]:
        async with sessions() as session:
            return list(
                (await session.execute(text(f"SELECT id FROM {table} ORDER BY id"))).scalars()
            )

    # With the outbox's statement and the claim: one statement, and no transaction begun
    # (nothing was sent before it).
    assert await staged_with([1, 2], event=True, claim=True) == (
        ["WITH carried_ids AS"],
        False,
    )
    # Alone.
    assert await staged_with([3], event=False, claim=False) == (["WITH carried_ids AS"], False)
    # Written at once for a statement about to read them, then the rest as ever.
    assert await staged_with([4, 5], event=True, claim=False, read_between=True) == (
        ["WITH carried_ids AS", "WITH carried_ids AS", "WITH written AS"],
        True,
    )
    assert await stored() == [1, 2, 3, 4, 5]

    # A row that cannot be written fails the statement: nothing staged with it is written.
    refused = status_changed(uuid4(), "CLOSED")
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            carry(session, "ids", carried_ids, {"id": 6})
            carry(session, "ids", carried_ids, {"id": 1})
            await outbox.add(session, refused)
            await write_staged(session)
    async with sessions() as session:
        events = (await session.execute(select(outbox.table.c.event_id))).scalars().all()
    assert refused.id not in events and await stored() == [1, 2, 3, 4, 5]
