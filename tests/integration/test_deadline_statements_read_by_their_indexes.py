"""The deadline worker's statements read what they wait on through their own indexes, in any
plan PostgreSQL may keep for them (also the one made for any values of their parameters, asked
for as the driver prepares them), so that their cost stays flat as the county's history grows:
- the incidents merged away (R20), which every look and pass leaves out, are read alone;
- the duties pending or missed are read by their partial indexes (`ix_obligations_pending_due`,
  `ix_obligations_missed_due`), not by a walk of every duty ever made (3.6 ms a look at 6,000
  duties, when the statuses were bound as parameters).
On the suite's database, in a transaction rolled back at the end."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Executable, text

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

# A few years of a county's incidents, none merged.
INCIDENTS = 5000
# Duties of a few years' incidents, all of them done.
DUTIES_DONE = 6000
DUTY_INDEXES = {"ix_obligations_pending_due", "ix_obligations_missed_due"}


async def plans_among(
    settings: Settings, history: str, table: str, statements: Mapping[str, Executable]
) -> dict[str, dict[str, Any]]:
    """The plans PostgreSQL may keep for `statements`, with the rows of `history` (a statement)
    in `table`, analysed; each statement is run once too."""
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(text(history))
            await connection.execute(text(f"ANALYZE {table}"))
            plans = {name: await kept_plan(connection, sql) for name, sql in statements.items()}
            for statement in statements.values():  # and each still runs
                await connection.execute(statement)
            await transaction.rollback()
    finally:
        await engine.dispose()
    return plans


def reads_of(plan: dict[str, Any], relations: set[str]) -> list[tuple[str, str]]:
    """The plan's nodes that read one of `relations` (tables or indexes): their type and what
    they read, in the plan's order."""
    nodes = [(node["Node Type"], node_reads(node)) for node in plan_nodes(plan["Plan"])]
    return [node for node in nodes if node[1] in relations]


async def test_the_look_at_the_next_deadline_reads_only_the_merged_incidents(
    system: ServiceProcesses, infra_settings: Settings
) -> None:
    look = next_deadline_look(Policy.load(infra_settings.policy_file))
    plans = await plans_among(
        infra_settings,
        "INSERT INTO escalation.incidents"
        " (id, facts, reporter, status, drill, policy_version, reported_at)"
        " SELECT gen_random_uuid(), '{}', '{}', 'REPORTED', false, 'test', now()"
        f" FROM generate_series(1, {INCIDENTS})",
        "escalation.incidents",
        {"the look": look},
    )
    plan = plans["the look"]
    # One read of the merged incidents for each kind of deadline: duties, timers, omissions.
    assert (
        reads_of(plan, {"incidents", "ix_incidents_merged"})
        == [("Index Only Scan", "ix_incidents_merged")] * 3
    ), json.dumps(plan)


async def test_the_deadline_worker_reads_pending_and_missed_duties_by_their_indexes_in_any_plan(
    system: ServiceProcesses, infra_settings: Settings
) -> None:
    policy = Policy.load(infra_settings.policy_file)
    plans = await plans_among(
        infra_settings,
        "INSERT INTO escalation.obligations (id, incident_id, party, action, action_text,"
        " rule_id, plan_section, deadline_name, due_at, explanation, status, source_event_id)"
        " SELECT gen_random_uuid(), gen_random_uuid(), 'county_bureau', 'REPORT', 'report',"
        " 'R1', '4.1', 'immediate', now() - interval '1 hour' * n, 'done', 'MET',"
        f" gen_random_uuid() FROM generate_series(1, {DUTIES_DONE}) AS n",
        "escalation.obligations",
        {
            "the look at the next deadline": next_deadline_look(policy),
            "the pass over overdue duties": claim_due_duties(overdue_duties(), 50),
            "the pass over omitted duties (R11)": claim_due_duties(omitted_duties(policy), 50),
        },
    )
    for name, plan in plans.items():
        on_duties = [
            node for node in plan_nodes(plan["Plan"]) if node.get("Relation Name") == "obligations"
        ]
        assert on_duties, f"{name}: {json.dumps(plan)}"
        assert {node_reads(node) for node in on_duties} <= DUTY_INDEXES, (
            f"{name}: {json.dumps(plan)}"
        )
