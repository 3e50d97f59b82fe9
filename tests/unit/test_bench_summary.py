"""`make bench`'s summary rows: each figure against its target, from a results document."""

from __future__ import annotations

from typing import Any

from bench.__main__ import TARGETS, carried, summary
from bench.report_to_alert import (
    events_per_incident,
    statements_by_service,
    statements_per_incident,
    wal_census,
)


def run(offered: float, **overrides: Any) -> dict[str, Any]:
    measured = {
        "offered_per_second": offered,
        "refused": {},
        "accepted_per_second": offered,
        "without_alert": 0,
        "sustained_per_second": offered * 0.99,
        "p50_ms": 60.0,
        "p99_ms": 120.0,
        "cpu_ms_per_incident": {
            "intake": 2.0,
            "escalation": 3.0,
            "notification": 4.0,
            "audit": 2.0,
            "postgres": 1.5,
            "broker": 9.0,
        },
    }
    return measured | overrides


def document(**system: Any) -> dict[str, Any]:
    return {
        "system": {
            "floor": {
                "three_hops_p50_ms": 40.0,
                "postgres_commit": {"p50_ms": 0.3},
            },
            "kafka": {"fetch_max_wait_ms": 20, "idle_fetch_interval_ms": 2000},
            "rates": [run(10), run(50), run(85)],
            "flat_out": run(0) | {"offered_per_second": None},
            "intake_alone": [{"processes": 1, "reports_per_second": 1200.0}],
            "idle_cpu_ms_per_second": {
                "intake": 4.0,
                "escalation": 4.5,
                "notification": 6.0,
                "audit": 4.7,
                "broker": 7.0,
            },
            "peak_rss_mb": {"intake": 120.0, "notification": 151.0},
            "random_tokens": {"rss_growth_mb": 2.0},
        }
        | system,
        "audit": {
            "append": {
                "through_the_service": {"live_events_per_second_median": 7000},
                "batched": {"events_per_second": 30000},
            },
            "inclusion_proof": {"p99_ms_median": 2.4},
        },
    }


def verdicts(rows: list[tuple[str, str, str, str, str]]) -> dict[str, tuple[str, str]]:
    return {figure: (measured, verdict) for figure, measured, _, _, verdict in rows}


def test_cpu_per_incident_counts_the_services_and_postgres_not_the_broker() -> None:
    rows = verdicts(summary(document()))
    assert rows["CPU per incident at 50/s, services + PostgreSQL (ms)"] == ("12.5", "met")
    assert TARGETS["cpu_ms_per_incident"] == 15


def test_a_run_is_carried_only_when_nothing_is_refused_or_left_without_alert() -> None:
    assert carried(run(85))
    assert not carried(run(85, refused={"503": 1}))
    assert not carried(run(85, without_alert=3))
    assert not carried(run(85, accepted_per_second=80.0))
    assert not carried(run(85, sustained_per_second=60.0))


def test_latency_is_judged_as_a_multiple_of_the_floor_of_the_same_run() -> None:
    rows = verdicts(summary(document(rates=[run(10, p50_ms=70.0), run(50, p99_ms=170.0)])))
    assert rows["report→first alert p50 at 10/s, × floor (70.0 ms)"] == ("1.75", "MISSED")
    assert rows["report→first alert p99 at 50/s, × floor (170.0 ms)"] == ("4.25", "MISSED")
    assert rows["report→first alert p50 at 50/s, × floor (60.0 ms)"] == ("1.5", "met")


def test_idle_cpu_and_memory_are_judged_per_service() -> None:
    rows = verdicts(summary(document()))
    assert rows["CPU while idle, intake (ms/s)"] == ("4", "met")
    assert rows["CPU while idle, notification (ms/s)"] == ("6", "MISSED")
    assert rows["peak RSS of notification (MB)"] == ("151", "MISSED")
    assert rows["intake flat out, 1 process(es) (reports/s)"] == ("1200", "met")
    assert rows["CPU while idle, the embedded broker (ms/s)"][1] == "chosen (docs/performance.md)"


def test_intake_is_read_against_the_bare_stack_when_the_run_measured_it() -> None:
    stack = {"reports_per_second": 2039.2, "cpu_ms_per_report": {"stack": 0.43, "postgres": 0.2}}
    rows = summary(document(stack_floor=stack))
    (intake,) = [r for r in rows if r[0].startswith("intake flat out, 1 process")]
    assert intake[1:] == ("1200", "≥ 1000", "bare stack 2039.2/s, 0.43 ms CPU/report", "met")
    (older,) = [r for r in summary(document()) if r[0].startswith("intake flat out, 1 process")]
    assert older[3] == "commit 0.3 ms"


def test_cpu_at_50_is_the_least_of_its_repeats_shown_beside_each_and_the_machine_s_speed() -> None:
    def repeat(intake: float, unit_us: float) -> dict[str, Any]:
        return {
            "cpu_ms_per_incident": run(50)["cpu_ms_per_incident"] | {"intake": intake},
            "machine_unit_us": unit_us,
        }

    system = {"cpu_repeats": [repeat(6.0, 38.6), repeat(2.0, 25.0), repeat(4.0, 30.1)]}
    (cpu,) = [r for r in summary(document(**system)) if r[0].startswith("CPU per incident")]
    assert cpu[1:] == (
        "12.5",
        "≤ 15",
        "least of 3 runs: 16.5, 12.5, 14.5 ms; machine 38.6, 25, 30.1 µs a unit",
        "met",
    )


def test_intake_alone_as_one_process_is_the_most_of_its_repeats() -> None:
    alone = [
        {"processes": 1, "reports_per_second": 950.0, "machine_unit_us": 31.0},
        {"processes": 1, "reports_per_second": 1010.0, "machine_unit_us": 26.0},
        {"processes": 2, "reports_per_second": 1180.0},
    ]
    rows = {r[0]: r[1:] for r in summary(document(intake_alone=alone))}
    one = rows["intake flat out, 1 process(es) (reports/s)"]
    assert (one[0], one[3]) == ("1010", "met")
    assert one[2].startswith("most of 2 runs: 950, 1010 /s; machine 31, 26 µs a unit; ")
    assert rows["intake flat out, 2 process(es) (reports/s)"][0] == "1180"


def test_events_per_incident_is_each_topics_growth_over_the_run_shared_by_its_incidents() -> None:
    before = {"incidents.v1": 10, "escalations.v1": 70}
    after = {"incidents.v1": 30, "escalations.v1": 217, "audit.v1": 1}
    assert events_per_incident(before, after, 20) == {
        "incidents.v1": 1.0,
        "escalations.v1": 7.35,
        "audit.v1": 0.05,
        "all": 8.4,
    }


def test_a_census_counts_each_statement_once_by_its_connection_s_application_name() -> None:
    log = [
        "intake|4242|LOG:  execute __asyncpg_stmt_1a__: SELECT known_ref FROM intake.first_report(",
        "  $1, $2)",  # a statement's further lines carry no prefix
        "intake|4242|LOG:  statement: BEGIN ISOLATION LEVEL READ COMMITTED;",
        "notification|4250|LOG:  execute <unnamed>: WITH answer AS (SELECT 1)",
        "notification|4250|DETAIL:  parameters: $1 = '1'",
        "audit|4260|LOG:  statement: COMMIT;",
        "|4270|LOG:  statement: SELECT 1",  # a connection that gave no name
        "escalation|4280|LOG:  checkpoint starting: time",  # not a statement
    ]
    counted = statements_by_service(log)
    assert counted == {"intake": 2, "notification": 1, "audit": 1, "unnamed": 1}
    assert statements_per_incident(counted, 2) == {
        "intake": 1.0,
        "escalation": 0.0,
        "notification": 0.5,
        "audit": 0.5,
        "services": 2.0,
    }
    assert statements_per_incident(counted, 0) == {}


def test_a_wal_census_counts_each_record_an_incident_by_kind_and_by_relation() -> None:
    dumped = [  # pg_waldump's lines, as the server's own prints them
        "rmgr: Heap        len (rec/tot):    160/   160, tx:        754, lsn: 0/01AF57F0, prev"
        " 0/01AF5288, desc: INSERT+INIT off: 1, flags: 0x00, blkref #0: rel 1663/16384/16385 blk 0",
        "rmgr: Btree       len (rec/tot):     90/    90, tx:        754, lsn: 0/01AF5890, prev"
        " 0/01AF57F0, desc: NEWROOT level: 0, blkref #0: rel 1663/16384/16391 blk 1, blkref #2:"
        " rel 1663/16384/16391 blk 0",
        "rmgr: Btree       len (rec/tot):     64/    64, tx:        754, lsn: 0/01AF58F0, prev"
        " 0/01AF5890, desc: INSERT_LEAF off: 1, blkref #0: rel 1663/16384/16391 blk 1",
        "rmgr: Btree       len (rec/tot):     64/    64, tx:        754, lsn: 0/01AF59D0, prev"
        " 0/01AF5930, desc: INSERT_LEAF off: 2, blkref #0: rel 1663/16384/16391 blk 1",
        "rmgr: Heap        len (rec/tot):     54/  8250, tx:        755, lsn: 0/01AF5A10, prev"
        " 0/01AF59D0, desc: UPDATE old_xmax: 755, old_off: 2, blkref #0: rel 1663/16384/16399 blk 4"
        " FPW",
        "rmgr: Transaction len (rec/tot):     34/    34, tx:        754, lsn: 0/01AF5A50, prev"
        " 0/01AF5A10, desc: COMMIT 2026-12-05 09:30:01.123456 UTC",
        "pg_waldump: error: error in WAL record at 0/01AF5A50: invalid record length",
    ]
    names = {"16385": "intake.outbox", "16391": "intake.pk_outbox"}
    census = wal_census(dumped, names, incidents=2)
    assert census["records"] == 3.0  # six records, two incidents
    assert census["bytes"] == (160 + 90 + 64 + 64 + 8250 + 34) // 2
    assert census["by_kind"] == {
        "Btree/INSERT_LEAF": 1.0,
        "Heap/INSERT+INIT": 0.5,
        "Btree/NEWROOT": 0.5,
        "Heap/UPDATE": 0.5,
        "Transaction/COMMIT": 0.5,
    }
    assert census["by_relation"] == {
        "intake.pk_outbox Btree/INSERT_LEAF": 1.0,
        "intake.outbox Heap/INSERT+INIT": 0.5,
        "intake.pk_outbox Btree/NEWROOT": 0.5,
        "16399 Heap/UPDATE": 0.5,  # a relation of no name known: its relfilenode
    }
