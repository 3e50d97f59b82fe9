"""`intake.first_report` (services/intake/first_report.py, migrations 0011, 0012, 0014 and
0015): a first report that opens an incident is one statement, holding the township to its
transaction's end; a key claimed for a report whose reference another township's report took
just then is let go; a new incident's candidates are the township's open incidents, never
itself; reports that arrive together are one call, each written as it would be alone; the call
keeps one plan, which reads the incidents of the same event by their ids, and no table whole,
whatever the statistics it was made on. On the suite's database, in transactions rolled back at
the end, but for the calls `FirstReports` makes, which commit."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import first_report
from services.intake.first_report import call_arguments
from services.intake.models import metadata as intake_metadata
from shared.domain.correlation import Correlation
from shared.driver import fetch
from shared.settings import Settings
from tests.integration.helpers import eventually, reported_event, subject_id
from tests.support import node_reads, plan_nodes, statements_sent

TOWNSHIP = "150626102"


@pytest.fixture
def sessions(
    system_sessions: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    return system_sessions


def report(
    settings: Settings, *, key: tuple[str, str] | None = None, external_ref: str | None = None
) -> dict[str, Any]:
    event = reported_event()
    facts = {"category": "VIOLENCE", "phase": "IN_PROGRESS", "township_code": TOWNSHIP}
    reporter = {"party": f"SFS:{TOWNSHIP}", "name": "李明"}
    return first_report.first_report(
        incident_id=UUID(event.subject),
        report_id=uuid4(),
        key=key,
        request_hash="0" * 64,
        reporter_party=f"SFS:{TOWNSHIP}",
        external_ref=external_ref,
        category="VIOLENCE",
        phase="IN_PROGRESS",
        township_code=TOWNSHIP,
        drill=False,
        subject_ids=[subject_id()],
        sealed_facts=facts,
        incident_reporter=reporter,
        report_reporter=reporter,
        now=datetime.now(UTC),
        policy=Correlation.load(settings.policy_file),
        event=event,
    )


async def count(session: AsyncSession, table: str, column: str, value: object) -> int:
    found = await session.execute(
        text(f"SELECT count(*) FROM intake.{table} WHERE {column} = :value"), {"value": value}
    )
    return int(found.scalar_one())


async def test_a_report_that_opens_an_incident_is_one_statement_holding_the_township(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    written_report = report(
        infra_settings, key=("SFS:" + TOWNSHIP, str(uuid4())), external_ref=uuid4().hex[:20]
    )
    incident_id = written_report["incident_id"]
    async with sessions() as session:
        transaction = await session.begin()
        engine = session.bind
        with statements_sent(engine) as statements:  # type: ignore[arg-type]
            written = await first_report.write_incident(session, written_report)
        rows = {
            table: await count(session, table, "incident_id", incident_id)
            for table in ("incident_subjects", "reports", "idempotency_keys", "external_refs")
        }
        rows["incidents"] = await count(session, "incidents", "id", incident_id)
        rows["outbox"] = await count(session, "outbox", "key", str(incident_id))
        township_held = await session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objid = hashtext(:key)::oid"
            ),
            {"key": f"intake.match:{TOWNSHIP}"},
        )
        held = township_held.scalar_one()
        await transaction.rollback()
    assert written.written and written.key_claimed and not written.known_ref
    assert written.open_incidents is None
    assert len(statements) == 1 and "intake.first_report(" in statements[0]
    assert rows == {
        "incidents": 1,
        "incident_subjects": 1,
        "reports": 1,
        "idempotency_keys": 1,
        "external_refs": 1,
        "outbox": 1,
    }
    assert held == 1  # to the end of the transaction that called it


async def test_a_reference_already_used_by_the_source_writes_nothing(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    reference = uuid4().hex[:20]
    async with sessions() as session:
        transaction = await session.begin()
        first = await first_report.write_incident(
            session, report(infra_settings, external_ref=reference)
        )
        again_report = report(infra_settings, key=("SFS:" + TOWNSHIP, str(uuid4())))
        again_report["external_ref"] = reference
        again = await first_report.write_incident(session, again_report)
        keys = await count(session, "idempotency_keys", "incident_id", again_report["incident_id"])
        incidents = await count(session, "incidents", "id", again_report["incident_id"])
        await transaction.rollback()
    assert first.written
    assert again.known_ref and not again.written and not again.key_claimed
    assert (keys, incidents) == (0, 0)


async def test_a_key_claimed_for_a_reference_just_taken_elsewhere_is_let_go(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    reference, key = uuid4().hex[:20], ("SFS:" + TOWNSHIP, str(uuid4()))
    late_report = report(infra_settings, key=key, external_ref=reference)
    other_township = await asyncpg.connect(infra_settings.plain_database_url)
    try:
        # Another township's report takes the same reference of the same source, uncommitted.
        taking = other_township.transaction()
        await taking.start()
        await other_township.execute(
            "INSERT INTO intake.external_refs (source_party, external_ref, incident_id,"
            " request_hash) VALUES ($1, $2, $3, $4)",
            f"SFS:{TOWNSHIP}",
            reference,
            uuid4(),
            "1" * 64,
        )
        async with sessions() as session:
            transaction = await session.begin()
            call_pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            call = asyncio.create_task(first_report.write_incident(session, late_report))

            async def waiting_for_the_reference() -> bool:
                return bool(
                    await other_township.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", call_pid
                    )
                )

            await eventually(waiting_for_the_reference, bool)
            await taking.commit()
            written = await call
            keys = await count(session, "idempotency_keys", "key", key[1])
            incidents = await count(session, "incidents", "id", late_report["incident_id"])
            await transaction.rollback()
    finally:
        await other_township.execute(
            "DELETE FROM intake.external_refs WHERE source_party = $1 AND external_ref = $2",
            f"SFS:{TOWNSHIP}",
            reference,
        )
        await other_township.close()
    assert written.key_claimed and not written.written and not written.known_ref
    assert (keys, incidents) == (0, 0)


async def test_a_new_incidents_candidates_are_its_townships_open_incidents_never_itself(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """R20: the incidents written before it are its candidates, nearest first; it is not its
    own (a walk of the candidates in a snapshot that sees the new incident must leave it out)."""
    async with sessions() as session:
        transaction = await session.begin()
        earlier = [report(infra_settings) for _ in range(2)]
        for written_report in earlier:
            assert (await first_report.write_incident(session, written_report)).written
        latest = report(infra_settings)
        written = await first_report.write_incident(session, latest)
        await transaction.rollback()
    assert written.written
    assert latest["incident_id"] not in written.candidates
    first, second = (written.candidates.index(r["incident_id"]) for r in earlier)
    assert second < first  # the one reported later is nearer
    assert len(written.candidates) <= 100


async def test_reports_in_one_call_are_each_written_as_alone_seeing_those_before_them(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """`FIRST_REPORTS`: a report naming the subject of one written before it in the same call
    is matched to it (R20) and writes nothing; a report of another subject has it for a
    candidate; the answers come in the order of the reports."""
    opening = report(infra_settings, key=("SFS:" + TOWNSHIP, str(uuid4())))
    same_subject = report(infra_settings)
    same_subject["subject_ids"] = list(opening["subject_ids"])
    other = report(infra_settings)
    reports = [opening, same_subject, other]
    async with sessions() as session:
        transaction = await session.begin()
        with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
            rows = await fetch(session, first_report.FIRST_REPORTS, call_arguments(reports))
        written = [first_report.written_of(r, row) for r, row in zip(reports, rows, strict=True)]
        incidents = [await count(session, "incidents", "id", r["incident_id"]) for r in reports]
        keys = await count(session, "idempotency_keys", "incident_id", opening["incident_id"])
        await transaction.rollback()
    assert len(statements) == 1 and "intake.first_report(" in statements[0]
    assert incidents == [1, 0, 1] and keys == 1
    assert written[0].written and written[2].written
    assert not written[1].written and written[1].open_incidents is not None
    assert [found.id for found in written[1].open_incidents] == [opening["incident_id"]]
    assert written[1].open_incidents[0].subject_ids == frozenset(opening["subject_ids"])
    assert opening["incident_id"] in written[2].candidates


async def test_reports_that_arrive_together_are_one_call_committed_before_they_are_answered(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    first_reports = first_report.FirstReports(lambda: sessions)
    reports = [report(infra_settings) for _ in range(5)]
    with statements_sent(sessions.kw["bind"]) as statements:
        written = await asyncio.gather(*(first_reports.write(r) for r in reports))
    assert all(each.written for each in written)
    assert len(statements) == 1 and "intake.first_report(" in statements[0]
    async with sessions() as session:  # committed: another session reads them
        found = [await count(session, "incidents", "id", r["incident_id"]) for r in reports]
    assert found == [1] * 5


async def test_when_a_call_fails_each_report_is_written_alone_and_a_failure_is_its_own(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """A report that cannot be written (here an incident id already taken) fails the call of
    all of them: nothing of it stays, and each is written again alone."""
    first_reports = first_report.FirstReports(lambda: sessions)
    taken = report(infra_settings)
    assert (await first_reports.write(taken)).written
    clashing = report(infra_settings)
    clashing["incident_id"] = taken["incident_id"]
    fine = [report(infra_settings) for _ in range(2)]
    with statements_sent(sessions.kw["bind"]) as statements:
        outcomes = await asyncio.gather(
            first_reports.write(fine[0]),
            first_reports.write(clashing),
            first_reports.write(fine[1]),
            return_exceptions=True,
        )
    assert len(statements) == 1 and "intake.first_report(" in statements[0]  # the one call
    assert isinstance(outcomes[1], asyncpg.UniqueViolationError)
    assert all(isinstance(each, first_report.Written) and each.written for each in outcomes[::2])
    async with sessions() as session:
        found = [await count(session, "incidents", "id", r["incident_id"]) for r in fine]
        clashing_report = await count(session, "reports", "id", clashing["report_id"])
    assert found == [1, 1] and clashing_report == 0


@dataclass
class KeptPlan:
    """A first report's call into a township with 2,000 open incidents in its window, and the
    plan its statement ran by (`auto_explain`, with what each node read)."""

    settings: list[str]
    written: first_report.Written
    plan: dict[str, Any]
    # Every statement's plan, the call's own and those of the statements it runs.
    every_plan: list[dict[str, Any]]


async def call_into_a_busy_township(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    planner: dict[str, str] | None = None,
) -> KeptPlan:
    """`planner`: the planner's settings for the call's transaction (`SET LOCAL`)."""
    async with sessions() as session:
        transaction = await session.begin()
        await session.execute(
            text(
                "INSERT INTO intake.incidents (id, category, phase, township_code, facts,"
                " reporter, status, reported_at) SELECT gen_random_uuid(), 'VIOLENCE',"
                " 'IN_PROGRESS', :township, '{}', '{}', 'REPORTED',"
                " now() - make_interval(secs => n) FROM generate_series(1, 2000) AS n"
            ),
            {"township": TOWNSHIP},
        )
        await session.execute(
            text(
                "INSERT INTO intake.external_refs (source_party, external_ref, incident_id,"
                " request_hash) SELECT 'PLATFORM', 'ref-' || id, id, '' FROM intake.incidents"
                " WHERE township_code = :township"
            ),
            {"township": TOWNSHIP},
        )
        await session.execute(text("ANALYZE intake.incidents, intake.external_refs"))
        planning = await session.execute(
            text("SELECT proconfig FROM pg_proc WHERE oid = 'intake.first_report'::regproc")
        )
        # The plans of the call's own statements, sent to this connection as notices.
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        plans: list[str] = []
        driver.add_log_listener(lambda _connection, message: plans.append(message.message))
        await session.execute(text("LOAD 'auto_explain'"))
        for setting, value in {
            "log_min_duration": "0",
            "log_nested_statements": "on",
            "log_analyze": "on",
            "log_timing": "off",
            "log_format": "json",
            "log_level": "notice",
        }.items():
            await session.execute(text(f"SET LOCAL auto_explain.{setting} = '{value}'"))
        for setting, value in (planner or {}).items():
            await session.execute(text(f"SET LOCAL {setting} = '{value}'"))
        written = await first_report.write_incident(session, report(settings))
        await transaction.rollback()
    [statement] = [plan for plan in plans if "WITH naming AS" in plan]
    return KeptPlan(
        planning.scalar_one(), written, plan_tree(statement), [plan_tree(p) for p in plans]
    )


def plan_tree(notice: str) -> dict[str, Any]:
    """The plan `auto_explain` sent as a notice: its JSON after the text that leads it."""
    return json.loads(notice[notice.index("{") :])["Plan"]


async def test_the_incidents_of_the_same_event_are_read_by_their_ids_under_the_one_plan_kept(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """The call keeps one plan for any values (0012): the incidents naming the report's subjects
    or quoting its reference are read by their key, never by walking the township's incidents
    of the window, however many it holds (a plan so kept once did, and cost more the busier the
    township); so are the references each is known by, however many the sources sent."""
    called = await call_into_a_busy_township(sessions, infra_settings)
    assert "plan_cache_mode=force_generic_plan" in called.settings
    assert called.written.written and len(called.written.candidates) == 100  # the nearest page
    [naming] = [n for n in plan_nodes(called.plan) if n.get("Subplan Name") == "CTE naming"]
    read = {node_reads(node) for node in plan_nodes(naming)}
    assert "pk_incidents" in read
    assert read.isdisjoint(
        {"incidents", "ix_incidents_township_reported", "ix_incidents_candidates"}
    ), read
    # And the references each of them is known by, by their incident (0013).
    assert "ix_external_refs_incident" in read and "external_refs" not in read, read


async def test_the_candidates_are_the_nearest_read_in_order_never_the_whole_window(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """A new incident's candidates (R20) are the nearest page of the township's open incidents
    of the window: the kept plan walks the index of candidates (township, category, time) in
    order from the report's moment, both ways, and stops at the page (0014). A plan for any
    values once gathered every incident of the window in a bitmap and sorted them, reading them
    all: 4,000 rows and 4 ms a report in a disaster's township, where the page is 100."""
    called = await call_into_a_busy_township(sessions, infra_settings)
    assert "enable_bitmapscan=off" in called.settings
    assert len(called.written.candidates) == 100
    nodes = plan_nodes(called.plan)
    walks = [n for n in nodes if node_reads(n) == "ix_incidents_candidates"]
    assert walks and all(n["Node Type"] == "Index Scan" for n in walks), walks
    assert {n["Scan Direction"] for n in walks} == {"Backward", "Forward"}
    # The page and no more: none of the window's other 1,900 is read.
    assert sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in walks) <= 100
    assert not [n for n in nodes if n["Node Type"].startswith("Bitmap")]


async def test_no_read_of_the_call_walks_a_table_whole_even_where_that_looks_cheapest(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    """The call's plan is made once per connection from the statistics of that moment (0012).
    On a new database they say the tables are empty, where reading a table whole looks
    cheapest, and such a plan was kept until autovacuum first analysed the tables: the look-up
    of the incidents naming the report's subjects read every subject ever written, a report
    after report (0015). Here pages read in order cost next to nothing, as a new database's
    empty tables look: every read is still by a key or an index."""
    called = await call_into_a_busy_township(
        sessions, infra_settings, planner={"seq_page_cost": "0.0001", "cpu_tuple_cost": "0"}
    )
    assert "enable_seqscan=off" in called.settings
    assert called.written.written and len(called.written.candidates) == 100
    # Intake's tables: the driver's look-ups of the catalog on the way are not the call's.
    intake_tables = {table.name for table in intake_metadata.tables.values()}
    scans = [
        node
        for tree in called.every_plan
        for node in plan_nodes(tree)
        if node.get("Relation Name") in intake_tables
    ]
    subjects = [n for n in scans if n["Relation Name"] == "incident_subjects"]
    assert {node_reads(n) for n in subjects} >= {"ix_incident_subjects_subject"}, subjects
    whole = [n["Relation Name"] for n in scans if n["Node Type"] == "Seq Scan"]
    assert not whole, whole
