"""The deadline worker's look at the earliest deadline leaves out the incidents merged away
(R20) by reading those alone, through their own index, not every incident ever reported: its
cost stays flat as the county's history grows. On the suite's database, in a transaction rolled
back at the end."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from services.escalation.deadlines import next_deadline_look
from services.escalation.rules import Policy
from shared.db import create_engine
from shared.settings import Settings
from tests.support import node_reads, plan_nodes
from tools.devrun import ServiceProcesses

# A few years of a county's incidents, none merged.
HISTORY = 5000


async def test_the_look_at_the_next_deadline_reads_only_the_merged_incidents(
    system: ServiceProcesses, infra_settings: Settings
) -> None:
    look = next_deadline_look(Policy.load(infra_settings.policy_file))
    sql = str(look.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = create_engine(infra_settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(
                text(
                    "INSERT INTO escalation.incidents"
                    " (id, facts, reporter, status, drill, policy_version, reported_at)"
                    " SELECT gen_random_uuid(), '{}', '{}', 'REPORTED', false, 'test', now()"
                    " FROM generate_series(1, :history)"
                ),
                {"history": HISTORY},
            )
            await connection.execute(text("ANALYZE escalation.incidents"))
            [plan] = (await connection.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar()
            answered = await connection.execute(look)  # the look itself still runs
            answered.scalar()
            await transaction.rollback()
    finally:
        await engine.dispose()
    nodes = [(node["Node Type"], node_reads(node)) for node in plan_nodes(plan["Plan"])]
    on_incidents = [node for node in nodes if node[1] in ("incidents", "ix_incidents_merged")]
    # One read of the merged incidents for each kind of deadline: duties, timers, omissions.
    assert on_incidents == [("Index Only Scan", "ix_incidents_merged")] * 3, json.dumps(plan)
