"""Accountability findings computed from an incident's log (services/audit/findings.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.audit.findings import FindingRules, LoggedEvent, compute, duration_zh, local
from services.audit.leaves import canonical_json

INCIDENT = uuid.UUID("6f1f5a55-3c33-4d3e-9b1f-2b8f0f3d9a01")
T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
SFS = "SFS:150626102"
RULES = FindingRules(timedelta(hours=1), {SFS: "图克镇司法所", "PPS:150626102": "图克镇派出所"})


class Log:
    """Builds an incident's log one event at a time, as audit would see it."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []

    def add(self, type_: str, minutes: float, **data: Any) -> LoggedEvent:
        leaf = canonical_json(
            {
                "id": str(uuid.uuid4()),
                "type": type_,
                "time": (T0 + timedelta(minutes=minutes)).isoformat(),
                "data": {"incident_id": str(INCIDENT), **data},
            }
        )
        event = LoggedEvent.from_leaf(len(self.events), leaf)
        self.events.append(event)
        return event

    def reported(self, party: str = SFS, discovered_minutes_before: float = 10, **facts: Any):
        return self.add(
            "incident.reported",
            0,
            facts={
                "category": "ABSCONDED",
                "phase": "OCCURRED",
                "township_code": "150626102",
                "township_name": "图克镇",
                "subjects": [{"id": "S1", "name": "王某某"}],
                "discovered_at": (T0 - timedelta(minutes=discovered_minutes_before)).isoformat(),
                "location": "图克镇中心街",
                "drill": False,
                **facts,
            },
            reporter={"party": party, "name": "李明"},
            reported_at=T0.isoformat(),
        )

    def obligation(self, minutes: float, rule: str, party: str, action: str, due: float, **more):
        return self.add(
            "obligation.created",
            minutes,
            obligation_id=str(uuid.uuid4()),
            party=party,
            action=action,
            action_text=f"{action} 的中文",
            deadline_name="IMMEDIATE",
            due_at=(T0 + timedelta(minutes=due)).isoformat(),
            rule_id=rule,
            plan_section="四",
            incident={"subject_names": ["王某某"], "drill": False},
            **more,
        )

    def missed(self, minutes: float, duty: LoggedEvent, **more: Any) -> LoggedEvent:
        """The duty's deadline seen passed, `minutes` after T0."""
        return self.add(
            "deadline.missed",
            minutes,
            obligation_id=duty.data["obligation_id"],
            party=duty.data["party"],
            action=duty.data["action"],
            rule_id=duty.data["rule_id"],
            due_at=duty.data["due_at"],
            missed_at=(T0 + timedelta(minutes=minutes)).isoformat(),
            **more,
        )

    def compute(self):
        return compute(INCIDENT, self.events, RULES)


def test_met_late_is_suspected_late_reporting_with_its_evidence() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    action = log.add("incident.action_recorded", 20, action="SEARCH_STARTED", party=SFS)
    met = log.add(
        "obligation.met",
        20,
        obligation_id=duty.data["obligation_id"],
        party=SFS,
        rule_id="R3",
        status="MET_LATE",
        met_at=(T0 + timedelta(minutes=20, seconds=30)).isoformat(),
        met_by_event_id=action.id,
    )
    (finding,) = log.compute()
    assert (finding.rule_id, finding.kind, finding.party) == ("R10", "LATE", SFS)
    assert finding.title == "疑似迟报，供核查"
    assert finding.evidence_log_indexes == (duty.index, action.index, met.index)
    assert finding.obligation_rule_id == "R3" and finding.deadline_name == "IMMEDIATE"
    assert "图克镇司法所（SFS:150626102）应于 2025-03-01 10:15:00 前" in finding.detail
    assert "逾期 5分30秒" in finding.detail
    assert "时限：立即）" in finding.detail and "IMMEDIATE" not in finding.detail


def test_a_duty_says_its_deadline_as_the_routing_decision_worded_it() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15, deadline_text="立即（15分钟）")
    log.missed(16, duty)
    (finding,) = [f for f in log.compute() if f.rule_id == "R11"]
    assert "时限：立即（15分钟））" in finding.detail


def test_missed_deadline_and_pending_at_closure_are_one_omission_each() -> None:
    log = Log()
    log.reported()
    notice = log.obligation(1, "R4", "PPS:150626102", "WRITTEN_NOTICE", due=61)
    follow_up = log.obligation(1, "R9", SFS, "FOLLOW_UP_REPORT", due=1441)
    counsel = log.obligation(1, "R5", SFS, "COUNSEL", due=500)
    missed = log.missed(62, notice)
    closed = log.add(
        "incident.status_changed",
        90,
        status="CLOSED",
        changed_at=(T0 + timedelta(minutes=90)).isoformat(),
    )
    log.add(
        "obligation.waived",
        90,
        obligation_id=follow_up.data["obligation_id"],
        party=SFS,
        rule_id="R9",
        reason="CLOSED 后不再需要",
    )
    before_settled = log.compute()
    assert [f.obligation_id for f in before_settled] == [uuid.UUID(notice.data["obligation_id"])]
    log.obligation(90, "R14", "BJO", "INVESTIGATION_REPORT", due=10080, trigger="action:CLOSED")
    findings = log.compute()
    assert [(f.rule_id, f.party, f.evidence_log_indexes) for f in findings] == [
        ("R11", "PPS:150626102", (notice.index, missed.index)),
        ("R11", SFS, (counsel.index, closed.index)),
    ]
    assert all(f.title == "疑似漏报，供核查" for f in findings)
    assert "处置结束时仍未办理" in findings[1].detail
    # Missed after closure too: still one finding for the obligation.
    log.missed(501, counsel)
    again = log.compute()
    assert len(again) == 2
    assert {f.finding_id for f in again} == {f.finding_id for f in findings}


def test_reported_long_after_discovery_is_suspected_concealment() -> None:
    log = Log()
    log.reported(discovered_minutes_before=185)
    (finding,) = log.compute()
    assert (finding.rule_id, finding.kind, finding.party) == ("R12", "CONCEALED", SFS)
    assert "相隔 3小时5分" in finding.detail and "超过 1小时" in finding.detail
    assert finding.title == "疑似瞒报，供核查"
    quick = Log()
    quick.reported(discovered_minutes_before=30)
    assert quick.compute() == []


def test_police_reporting_first_puts_the_judicial_office_under_suspicion() -> None:
    log = Log()
    log.reported(party="PLATFORM")
    later = log.add(
        "incident.report_filed",
        40,
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=40)).isoformat(),
        changes={},
        previous={},
    )
    (finding,) = log.compute()
    assert (finding.rule_id, finding.party) == ("R12", SFS)
    assert finding.evidence_log_indexes == (0, later.index)
    assert "本事件由公安机关警情平台于 2025-03-01 10:00:00 首报" in finding.detail
    assert "PLATFORM" not in finding.detail and "10:40:00 才报告" in finding.detail


def test_a_correction_contradicting_facts_shows_both_versions() -> None:
    log = Log()
    log.reported()
    follow_up = log.add(
        "incident.report_filed",
        10,
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": "PLATFORM", "name": "张警官"},
        filed_at=(T0 + timedelta(minutes=10)).isoformat(),
        changes={"location": "图克镇北街"},
        previous={"location": "图克镇中心街"},
    )
    correction = log.add(
        "incident.report_filed",
        30,
        report_id=str(uuid.uuid4()),
        kind="CORRECTION",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=30)).isoformat(),
        changes={
            "category": "OTHER",
            "location": "图克镇南街",
            "persons_involved": "对象1人",
            "occurred_at": "2025-03-01T09:00:00+08:00",
        },
        previous={
            "category": "ABSCONDED",
            "location": "图克镇北街",
            "persons_involved": None,
            "occurred_at": "2025-03-01T01:00:00+00:00",  # the same instant: no contradiction
        },
    )
    moved, *findings = log.compute()
    # The follow-up moved the place the office had stated: R13 judges it like a correction.
    assert (moved.party, moved.evidence_log_indexes) == (SFS, (0, follow_up.index))
    by_party = {f.party: f for f in findings}
    assert set(by_party) == {SFS, "PLATFORM"}
    (category,) = by_party[SFS].versions
    assert (category.label, category.previous, category.current) == (
        "种类",
        "脱离监督管理",
        "其他突发事件",
    )
    (place,) = by_party["PLATFORM"].versions
    assert (place.previous, place.current, place.stated_by) == (
        "图克镇北街",
        "图克镇南街",
        "PLATFORM",
    )
    assert by_party["PLATFORM"].evidence_log_indexes == (follow_up.index, correction.index)
    assert all(f.rule_id == "R13" and f.title == "疑似谎报，供核查" for f in findings)
    assert "原报「图克镇北街」，更正为「图克镇南街」" in by_party["PLATFORM"].detail


def follow_up(log: Log, minutes: float, changes: dict, previous: dict) -> LoggedEvent:
    return log.add(
        "incident.report_filed",
        minutes,
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        changes=changes,
        previous=previous,
        text="续报",
    )


def test_R13_a_follow_up_rewriting_stated_facts_is_judged_as_a_correction() -> None:
    log = Log()
    log.reported(phase="OCCURRED", occurred_at="2025-03-01T09:30:00+08:00")
    rewrite = follow_up(
        log,
        40,
        changes={
            "category": "VIOLENCE",
            "phase": "IN_PROGRESS",
            "occurred_at": "2025-03-01T08:00:00+08:00",
            "location": "乌审召镇某村",
            "subjects": [{"id": "S9", "name": "赵**"}],
        },
        previous={
            "category": "ABSCONDED",
            "phase": "OCCURRED",
            "occurred_at": "2025-03-01T09:30:00+08:00",
            "location": "图克镇中心街",
            "subjects": [{"id": "S1", "name": "王**"}],
        },
    )
    (finding,) = log.compute()
    assert (finding.rule_id, finding.kind, finding.party) == ("R13", "FALSE", SFS)
    assert finding.evidence_log_indexes == (0, rewrite.index)
    labels = [v.label for v in finding.versions]
    assert labels == ["种类", "事态阶段", "发生时间", "地点", "涉及对象"]
    assert "在续报中改变了图克镇司法所（SFS:150626102）所报事实" in finding.detail
    assert "发生时间：原报「2025-03-01 09:30:00」，更正为「2025-03-01 08:00:00」" in finding.detail


def test_R13_a_follow_up_adding_what_was_unknown_contradicts_nothing() -> None:
    log = Log()
    log.reported(location=None)
    follow_up(
        log,
        40,
        changes={"location": "图克镇南街", "persons_involved": "对象1人", "summary": "已找到"},
        previous={"location": None, "persons_involved": None, "summary": None},
    )
    assert [f for f in log.compute() if f.rule_id == "R13"] == []


def test_repeated_signs_suggest_key_monitoring() -> None:
    log = Log()
    log.reported(phase="SIGNS", category="VIOLENCE")
    suggestion = log.obligation(0, "R17", SFS, "SUGGEST_KEY_MONITORING", due=60)
    (finding,) = log.compute()
    assert (finding.rule_id, finding.kind) == ("R17", "KEY_MONITORING_SUGGESTED")
    assert finding.evidence_log_indexes == (0, suggestion.index)
    assert "王某某" in finding.detail and finding.title == "建议列为重点监控，供核查"


def test_the_same_log_gives_the_same_findings_and_ids_per_incident() -> None:
    log = Log()
    log.reported(discovered_minutes_before=300)
    first, second = log.compute(), log.compute()
    assert first == second
    other = compute(uuid.uuid4(), log.events, RULES)
    assert first[0].finding_id != other[0].finding_id
    assert json.loads(first[0].model_dump_json())["rule_id"] == "R12"


def test_times_and_durations_in_chinese() -> None:
    assert local(T0) == "2025-03-01 10:00:00"
    assert duration_zh(timedelta(days=1, hours=2, seconds=3)) == "1天2小时3秒"
    assert duration_zh(timedelta(0)) == "0秒"


def test_an_omission_done_later_is_late_not_omitted() -> None:
    """R11: "if done later it becomes R10" — missed, then met late: one R10, no R11."""
    log = Log()
    log.reported()
    duty = log.obligation(0, "R1", SFS, "START_FIRST_RESPONSE", due=15)
    log.add(
        "deadline.missed",
        16,
        obligation_id=duty.data["obligation_id"],
        party=SFS,
        action="START_FIRST_RESPONSE",
        rule_id="R1",
        due_at=duty.data["due_at"],
        missed_at=(T0 + timedelta(minutes=16)).isoformat(),
    )
    assert [f.rule_id for f in log.compute()] == ["R11"]
    action = log.add("incident.action_recorded", 30, action="FIRST_RESPONSE_STARTED", party=SFS)
    log.add(
        "obligation.met",
        30,
        obligation_id=duty.data["obligation_id"],
        party=SFS,
        rule_id="R1",
        status="MET_LATE",
        met_at=(T0 + timedelta(minutes=30)).isoformat(),
        met_by_event_id=action.id,
    )
    (finding,) = log.compute()
    assert (finding.rule_id, finding.kind) == ("R10", "LATE")
    assert "逾期 15分" in finding.detail
