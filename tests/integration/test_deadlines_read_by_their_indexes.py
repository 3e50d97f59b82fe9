"""The deadline worker's statements read the duties it waits on through their partial indexes
(`ix_obligations_pending_due`, `ix_obligations_missed_due`) in any plan PostgreSQL may keep for
them, also the generic one made for any values of their parameters: the duties ever made are
many, the ones pending or missed few, and a look that walked them all grew with the county's
history (3.6 ms a look at 6,000 duties). The plans are asked for as the driver sends the
statements, parameters and all. On the suite's database, in a transaction rolled back at the
end."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from services.escalation.deadlines import (
    claim_due_duties,
    next_deadline_look,
    omitted_duties,
    overdue_duties,
)
from services.escalation.rules import Policy
from shared.db import create_engine
from shared.settings import Settings
from tests.support import kept_plan, node_reads, plan_nodes
from tools.devrun import ServiceProcesses

# Duties of a few years' incidents, all of them done.
HISTORY = 6000
DUTY_INDEXES = {"ix_obligations_pending_due", "ix_obligations_missed_due"}


def duty_reads(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """The plan's nodes that read the duties: their type and the index or table they read."""
    return [
        (node["Node Type"], node_reads(node))
        for node in plan_nodes(plan["Plan"])
        if node.get("Relation Name") == "obligations"
    ]


async def test_the_deadline_worker_reads_pending_and_missed_duties_by_their_indexes_in_any_plan(
    system: ServiceProcesses, infra_settings: Settings
) -> None:
    policy = Policy.load(infra_settings.policy_file)
    statements = {
        "the look at the next deadline": next_deadline_look(policy),
        "the pass over overdue duties": claim_due_duties(overdue_duties(), 50),
        "the pass over omitted duties (R11)": claim_due_duties(omitted_duties(policy), 50),
    }
    engine = create_engine(infra_settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(
                text(
                    "INSERT INTO escalation.obligations (id, incident_id, party, action,"
                    " action_text, rule_id, plan_section, deadline_name, due_at, explanation,"
                    " status, source_event_id)"
                    " SELECT gen_random_uuid(), gen_random_uuid(), 'county_bureau', 'REPORT',"
                    " 'report', 'R1', '4.1', 'immediate',"
                    " now() - interval '1 hour' * n, 'done', 'MET', gen_random_uuid()"
                    " FROM generate_series(1, :history) AS n"
                ),
                {"history": HISTORY},
            )
            await connection.execute(text("ANALYZE escalation.obligations"))
            plans = {
                name: await kept_plan(connection, statement)
                for name, statement in statements.items()
            }
            for statement in statements.values():  # and each still runs
                await connection.execute(statement)
            await transaction.rollback()
    finally:
        await engine.dispose()
    for name, plan in plans.items():
        reads = duty_reads(plan)
        assert reads, f"{name}: {json.dumps(plan)}"
        assert {index for _, index in reads} <= DUTY_INDEXES, f"{name}: {json.dumps(plan)}"
