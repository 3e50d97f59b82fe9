"""The retention sweeps find old rows by a block-range index of their time (`shared.db`,
`SWEPT_BY_TIME`): every service's outbox (by when a row was written: rows sent before a moment
were written before it) and inbox, and intake's Idempotency-Keys. Writing a row adds no entry
to such an index, a sweep still reads only the ranges that hold old rows, and the relay's read
of unsent rows is never planned through one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import migrate
from shared.messaging import (
    RELAY_SETTINGS,
    Retention,
    RetentionPurge,
    marked_and_unsent_of,
    past_retention,
)
from shared.serve import SERVABLE
from shared.settings import Settings
from tests.support import migrate_down, scratch_database

SWEPT = {
    **{(schema, "ix_outbox_created_at"): "outbox" for schema in SERVABLE},
    **{(schema, "ix_inbox_processed_at"): "inbox" for schema in SERVABLE},
    ("intake", "ix_idempotency_keys_created"): "idempotency_keys",
}


# Each service's revision before the one that made them block-range indexes.
BEFORE_RANGES = {
    "intake": "0015",
    "escalation": "0008",
    "notification": "0015",
    "audit": "0008",
    "console": "0001",
}


async def access_methods(settings: Settings) -> dict[tuple[str, str], tuple[str, str, Any]]:
    """(schema, index) of each swept index: its table, access method and options."""
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        rows = await connection.fetch(
            "SELECT n.nspname, i.relname, t.relname AS table_name, am.amname, i.reloptions"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = i.relnamespace"
            " JOIN pg_am am ON am.oid = i.relam"
            " WHERE n.nspname = ANY($1::text[]) AND i.relname = ANY($2::text[])",
            list(SERVABLE),
            sorted({index for _, index in SWEPT} | {"ix_outbox_published_at"}),
        )
    finally:
        await connection.close()
    return {
        (row["nspname"], row["relname"]): (row["table_name"], row["amname"], row["reloptions"])
        for row in rows
    }


async def test_every_sweep_reads_a_block_range_index(infra_settings: Settings) -> None:
    for service in SERVABLE:
        await migrate(infra_settings, service)
    found = await access_methods(infra_settings)
    assert found == {swept: (table, "brin", ["autosummarize=on"]) for swept, table in SWEPT.items()}


async def test_the_revisions_go_back_to_b_trees_and_forward_again(
    infra_settings: Settings,
) -> None:
    async with scratch_database(infra_settings.plain_database_url) as settings:
        for service in SERVABLE:
            await migrate(settings, service)
            await migrate_down(settings, service, BEFORE_RANGES[service])
        assert {method for _, method, _ in (await access_methods(settings)).values()} == {"btree"}
        for service in SERVABLE:
            await migrate(settings, service)
        assert {method for _, method, _ in (await access_methods(settings)).values()} == {"brin"}


async def fill_outbox(
    sessions: async_sessionmaker[AsyncSession], schema: str, rows: int, written: str, sent: str
) -> None:
    """`rows` outbox rows, the n-th (from 1) written at `written` and sent at `sent` (SQL of
    `n`, `:rows` and, for `sent`, `written`), in the order of n."""
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                f'INSERT INTO "{schema}".outbox (shard, topic, key, event_id, event_type, '
                "headers, payload, created_at, published_at) "
                "SELECT n % 16, 'incidents.v1', 'k', gen_random_uuid(), 'incident.reported', "
                f"'{{}}', convert_to(repeat('x', 200), 'UTF8'), written, {sent}"
                f" FROM generate_series(1, :rows) AS n, LATERAL (SELECT {written}) AS at(written)"
                " ORDER BY n"
            ),
            {"rows": rows},
        )


async def test_a_sweep_reads_the_old_ranges_and_purges_only_their_rows(scratch_schema) -> None:
    """An outbox of 20,000 sent rows, written over 20 days in the order they were sent: a
    sweep with a few rows past their time reads the block-range index, and a sweep of a week's
    retention takes the rows past a week, and nothing else."""
    sessions, outbox, _ = scratch_schema
    schema = outbox.schema
    rows = 20_000
    await fill_outbox(
        sessions,
        schema,
        rows,
        written="now() - make_interval(secs => (:rows - n) * 86.4)",
        sent="written",
    )
    async with sessions() as session, session.begin():
        await session.execute(text(f'ANALYZE "{schema}".outbox'))
        await session.execute(
            text(f"SELECT brin_summarize_new_values('\"{schema}\".ix_outbox_created_at')")
        )
    retention = Retention.of_sent_outbox_rows(outbox.table, timedelta(days=7))
    # A sweep of the steady state, a few rows past their time: read through the index. (A
    # backlog, more rows past than a batch, is read from the table's start, where they lie.)
    async with sessions() as session:
        plan = (
            await session.execute(
                text(f"EXPLAIN {past_retention(retention)}"),
                {"keep": timedelta(days=19, hours=12), "batch": 1000},
            )
        ).scalars()
        plan_text = "\n".join(plan)
    assert "Bitmap Index Scan on ix_outbox_created_at" in plan_text, plan_text

    purge = RetentionPurge(sessions, [retention], interval=600)
    purged = await purge.purge()
    # A row every 86.4 s over 20 days: those of the 13 days before the last week go.
    assert abs(purged - rows * 13 // 20) <= 2, purged
    async with sessions() as session:
        oldest_kept = (
            await session.execute(
                text(
                    "SELECT now() - min(published_at) <= interval '7 days'"
                    f' FROM "{schema}".outbox'
                )
            )
        ).scalar()
    assert oldest_kept is True


async def test_the_relays_read_of_unsent_rows_is_planned_by_their_own_index(
    infra_settings: Settings, scratch_schema: Any
) -> None:
    """On an outbox of 10,000 rows, a hundred of them unsent, the relay's pass (the rows sent
    before marked, the next read), run as often as PostgreSQL takes to settle on the plan it
    keeps: it reads the unsent rows' index, never a block-range index of every row."""
    sessions, outbox, _ = scratch_schema
    schema = outbox.schema
    await fill_outbox(
        sessions, schema, 10_000, written="now()", sent="CASE WHEN n <= 9900 THEN now() END"
    )
    async with sessions() as session, session.begin():
        await session.execute(text(f'ANALYZE "{schema}".outbox'))
    relay = await asyncpg.connect(infra_settings.plain_database_url, server_settings=RELAY_SETTINGS)
    try:
        await relay.execute(
            "PREPARE pass(smallint[], integer, bigint[], smallint[], bigint[], text[]) AS "
            + marked_and_unsent_of(schema)
        )
        for _ in range(6):  # a kept plan is weighed after five
            await relay.execute("EXECUTE pass('{0,1,2,3}', 200, '{1}', '{0}', '{7}', '{cluster}')")
        plan = "\n".join(
            row[0]
            for row in await relay.fetch(
                "EXPLAIN EXECUTE pass('{0,1,2,3}', 200, '{1}', '{0}', '{7}', '{cluster}')"
            )
        )
    finally:
        await relay.close()
    assert "ix_outbox_unpublished" in plan, plan
    assert "ix_outbox_created_at" not in plan, plan
