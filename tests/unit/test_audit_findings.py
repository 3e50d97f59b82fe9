"""Accountability findings computed from an incident's log (services/audit/findings.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.audit import findings
from services.audit.datakeys import incident_cipher
from services.audit.findings import (
    PERSONAL_READ,
    FindingRules,
    LoggedEvent,
    duration_zh,
    fact_now,
    local,
    superseded_by,
)
from services.audit.leaves import canonical_json
from services.audit.linking import concerns
from services.audit.personal import open_personal, seal_personal
from shared.domain.vocabulary import DEFAULT_COUNTY_TIME_ZONE, party_name_zh

INCIDENT = uuid.UUID("6f1f5a55-3c33-4d3e-9b1f-2b8f0f3d9a01")
T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
SFS = "SFS:150626102"
COUNTY = ZoneInfo(DEFAULT_COUNTY_TIME_ZONE)  # the setting COUNTY_TIME_ZONE's default
RULES = FindingRules(
    timedelta(hours=1), {SFS: "图克镇司法所", "PPS:150626102": "图克镇派出所"}, zone=COUNTY
)


def as_the_follower_reads(events: list[LoggedEvent]) -> list[LoggedEvent]:
    """The log as the findings follower reads it: each event's personal fields sealed as audit
    stores them, then only those the judgements read opened (`PERSONAL_READ`)."""
    read = []
    for event in events:
        cipher = incident_cipher(event.subject or str(INCIDENT), bytes(range(32)))
        stored = seal_personal(dict(event.data), cipher)
        opened = open_personal(stored, cipher, only=PERSONAL_READ.get(event.type, frozenset()))
        read.append(
            LoggedEvent(event.index, event.id, event.type, event.time, opened, event.subject)
        )
    return read


def compute(incident_id: uuid.UUID, events: list[LoggedEvent], rules: FindingRules):
    """The incident's findings, which must be the same from the log as the follower reads it,
    with only the personal fields the judgements name opened: a judgement reading a field it
    does not name would read it sealed, and its findings would differ."""
    found = findings.compute(incident_id, events, rules)
    assert findings.compute(incident_id, as_the_follower_reads(events), rules) == found
    return found


# What every report of the scripted event states (R7's 种类、地点、涉及人员).
ABSCONDING: dict[str, Any] = {
    "category": "ABSCONDED",
    "phase": "OCCURRED",
    "township_code": "150626102",
    "township_name": "图克镇",
    "subjects": [{"id": "S1", "name": "王某某"}],
}


class Log:
    """Builds an incident's log one event at a time, as audit would see it."""

    def __init__(self, explicit: bool = False) -> None:
        self.events: list[LoggedEvent] = []
        # Every event names the incident it is published under, as in a log of several.
        self.explicit = explicit
        self.under: uuid.UUID | None = None  # where events go now, when `add` says nowhere

    def add(
        self, type_: str, minutes: float, under: uuid.UUID | None = None, **data: Any
    ) -> LoggedEvent:
        """An event published under the incident `under` (its subject), or the judged one."""
        under = under or self.under or (INCIDENT if self.explicit else None)
        leaf = canonical_json(
            {
                "id": str(uuid.uuid4()),
                "type": type_,
                "time": (T0 + timedelta(minutes=minutes)).isoformat(),
                **({"subject": str(under)} if under is not None else {}),
                "data": {"incident_id": str(under or INCIDENT), **data},
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
                **ABSCONDING,
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

    def met(
        self, minutes: float, duty: LoggedEvent, status: str = "MET_LATE", **more: Any
    ) -> tuple[LoggedEvent, LoggedEvent]:
        """The owner's action received `minutes` after T0, and the duty met by it."""
        action = self.add(
            "incident.action_recorded", minutes, action="DONE", party=duty.data["party"]
        )
        met = self.add(
            "obligation.met",
            minutes,
            obligation_id=duty.data["obligation_id"],
            party=duty.data["party"],
            rule_id=duty.data["rule_id"],
            status=status,
            met_at=(T0 + timedelta(minutes=minutes)).isoformat(),
            met_by_event_id=action.id,
            **more,
        )
        return action, met

    def omitted(self, minutes: float, duty: LoggedEvent) -> LoggedEvent:
        """Escalation's word that the duty is still undone long after its deadline (R11)."""
        return self.add(
            "obligation.omitted",
            minutes,
            obligation_id=duty.data["obligation_id"],
            party=duty.data["party"],
            rule_id=duty.data["rule_id"],
            action=duty.data["action"],
            due_at=duty.data["due_at"],
            omitted_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        )

    def waived(self, minutes: float, duty: LoggedEvent, reason: str) -> LoggedEvent:
        return self.add(
            "obligation.waived",
            minutes,
            obligation_id=duty.data["obligation_id"],
            party=duty.data["party"],
            rule_id=duty.data["rule_id"],
            reason=reason,
            waived_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        )

    def closed(self, minutes: float) -> LoggedEvent:
        """The closure, complete once R14's investigation duty follows it."""
        closed = self.add(
            "incident.status_changed",
            minutes,
            status="CLOSED",
            changed_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        )
        self.obligation(
            minutes,
            "R14",
            "BJO",
            "INVESTIGATION_REPORT",
            due=minutes + 10080,
            trigger="action:CLOSED",
        )
        return closed

    def compute(self, rules: FindingRules = RULES):
        return compute(INCIDENT, self.events, rules)


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
    log.omitted(15 + 7 * 1440, duty)
    (finding,) = [f for f in log.compute() if f.rule_id == "R11"]
    assert "时限：立即（15分钟））" in finding.detail


def test_r11_only_at_closure_or_seven_days() -> None:
    """R11: a deadline passing is no omission (the duty may yet be done); undone when the
    incident closes, or still undone when escalation says so 7 days past due, it is."""
    log = Log()
    log.reported()
    notice = log.obligation(1, "R4", "PPS:150626102", "WRITTEN_NOTICE", due=61)
    follow_up = log.obligation(1, "R9", SFS, "FOLLOW_UP_REPORT", due=1441)
    counsel = log.obligation(1, "R5", SFS, "COUNSEL", due=500)
    search = log.obligation(1, "R3", SFS, "ORGANISE_SEARCH", due=15)
    missed_search = log.missed(16, search)
    missed_notice = log.missed(62, notice)
    assert log.compute() == []  # missed, not (yet) omitted
    omitted = log.omitted(61 + 7 * 1440, notice)
    (notice_finding,) = log.compute()
    assert (notice_finding.rule_id, notice_finding.kind) == ("R11", "OMITTED")
    assert notice_finding.evidence_log_indexes == (
        notice.index,
        missed_notice.index,
        omitted.index,
    )
    assert "（逾期 7天）仍未见办理记录" in notice_finding.detail
    closed = log.add(
        "incident.status_changed",
        20000,
        status="CLOSED",
        changed_at=(T0 + timedelta(minutes=20000)).isoformat(),
    )
    log.waived(20000, follow_up, "CLOSED 后不再需要")
    assert len(log.compute()) == 1  # the closure is complete only with R14's duty
    log.obligation(20000, "R14", "BJO", "INVESTIGATION_REPORT", due=30080, trigger="action:CLOSED")
    findings = {f.obligation_id: f for f in log.compute()}
    assert set(findings) == {
        uuid.UUID(duty.data["obligation_id"]) for duty in (notice, counsel, search)
    }
    assert findings[uuid.UUID(notice.data["obligation_id"])] == notice_finding  # one each
    at_closure = findings[uuid.UUID(counsel.data["obligation_id"])]
    assert at_closure.evidence_log_indexes == (counsel.index, closed.index)
    assert "处置结束时仍未办理" in at_closure.detail
    missed_then_closed = findings[uuid.UUID(search.data["obligation_id"])]
    assert missed_then_closed.rule_id == "R11"
    assert missed_then_closed.evidence_log_indexes == (
        search.index,
        missed_search.index,
        closed.index,
    )
    assert all(f.title == "疑似漏报，供核查" for f in findings.values())


def test_r11_a_duty_waived_because_the_facts_changed_gives_no_finding() -> None:
    log = Log()
    log.reported()
    police = log.obligation(0, "R6", "PPS:150626102", "CALL_POLICE", due=15)
    log.missed(16, police)
    log.waived(30, police, "更正：事态阶段由「正在实施」改为「苗头」，不再需要")
    log.closed(60)
    assert log.compute() == []


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


def office_follow_up(log: Log, minutes: float, under: uuid.UUID | None = None) -> LoggedEvent:
    """A 续报 of the township's 司法所, adding nothing."""
    return log.add(
        "incident.report_filed",
        minutes,
        under,
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        changes={},
        previous={},
    )


def test_police_reporting_first_and_the_office_reporting_late_is_suspected() -> None:
    log = Log()
    log.reported(party="PLATFORM")
    later = office_follow_up(log, 70)
    (finding,) = log.compute()
    assert (finding.rule_id, finding.party) == ("R12", SFS)
    assert finding.evidence_log_indexes == (0, later.index)
    assert "本事件由公安机关警情平台于 2025-03-01 10:00:00 首报" in finding.detail
    assert "PLATFORM" not in finding.detail and "11:10:00 才报告（续报），相隔 1小时10分" in (
        finding.detail
    )
    assert "超过 1小时" in finding.detail and "（日志序号 0）" in finding.detail


def test_police_reporting_first_is_no_suspicion_when_the_office_follows_within_the_threshold():
    log = Log()
    log.reported(party="PLATFORM")
    office_follow_up(log, 40)
    log.add("incident.action_recorded", 200, action="CONTROLLED", party=SFS)
    assert log.compute() == []


def test_while_the_office_has_not_reported_the_threshold_is_judged_at_the_latest_event() -> None:
    log = Log()
    log.reported(party="PLATFORM")
    log.obligation(0, "R1", SFS, "FIRST_RESPONSE", due=15)
    log.add("deadline.missed", 16, obligation_id=str(uuid.uuid4()), party=SFS)
    assert log.compute() == []  # 16 minutes on: the office may still report
    latest = log.add("incident.action_recorded", 61, action="POLICE_ON_SCENE", party="PPS:1")
    (unreported,) = log.compute()
    assert (unreported.rule_id, unreported.party) == ("R12", SFS)
    assert unreported.evidence_log_indexes == (0, latest.index)
    assert "截至 2025-03-01 11:01:00（日志中本事件最新一条记录的时间）" in unreported.detail
    assert "未见图克镇司法所（SFS:150626102）报告" in unreported.detail
    # The office reports at last: a finding naming both times supersedes "not reported yet".
    office_follow_up(log, 90)
    found = log.compute()
    late = next(f for f in found if f.finding_id != unreported.finding_id)
    assert "11:30:00 才报告（续报），相隔 1小时30分" in late.detail
    published = [unreported, *found]
    assert superseded_by(published) == {unreported.finding_id: late.finding_id}


def linked_report(
    log: Log, minutes: float, party: str, discovered_minutes_before: float | None = None
):
    """A first report from another source linked on arrival to the judged incident (R20)."""
    facts = dict(ABSCONDING)
    if discovered_minutes_before is not None:
        discovered = T0 + timedelta(minutes=minutes - discovered_minutes_before)
        facts["discovered_at"] = discovered.isoformat()
    return log.add(
        "incident.linked",
        minutes,
        link_id=str(uuid.uuid4()),
        linked_by="SUBJECT_ID",
        linked_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        report={
            "report_id": str(uuid.uuid4()),
            "reporter": {"party": party, "name": "赵所长"},
            "reported_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "facts": facts,
        },
    )


def test_R20_the_office_reporting_two_minutes_after_the_platform_is_no_concealment() -> None:
    log = Log()
    log.reported(party="PLATFORM")
    linked_report(log, 2, SFS)
    log.add("incident.action_recorded", 300, action="CONTROLLED", party=SFS)
    assert log.compute() == []


def test_R20_a_linked_report_taken_out_of_the_incident_is_no_report_of_its_event() -> None:
    """The office's report was linked by a mistyped subject id and taken out by the BLO (an
    incident of its own now): the office has not reported this event, so once the threshold
    has passed it is suspected again."""
    log = Log()
    log.reported(party="PLATFORM")
    linked = linked_report(log, 2, SFS)
    log.add(
        "incident.unlinked",
        30,
        linked_incident_id=str(OTHER),
        link_id=linked.data["link_id"],
        was="LINK",
        party="BLO",
        actor_name="赵刚",
        reason="对象编号录入错误",
        unlinked_at=(T0 + timedelta(minutes=30)).isoformat(),
    )
    log.add("incident.action_recorded", 90, action="CONTROLLED", party="TCG:150626102")
    (suspected,) = log.compute()
    assert (suspected.rule_id, suspected.party) == ("R12", SFS)


def test_R20_a_linked_report_stating_an_earlier_discovery_is_judged_against_the_first_report():
    log = Log()
    log.reported(party="PLATFORM", discovered_minutes_before=5)
    # The office says it knew two hours before the police platform reported: it is suspected,
    # against the earliest report of the event, not its own.
    linked = linked_report(log, 2, SFS, discovered_minutes_before=122)
    (discovered,) = log.compute()
    assert (discovered.rule_id, discovered.party) == ("R12", SFS)
    assert discovered.evidence_log_indexes == (0, linked.index)
    assert "事件于 2025-03-01 08:00:00 被发现" in discovered.detail
    assert "警情平台于 2025-03-01 10:00:00 才首报" in discovered.detail
    assert "相隔 2小时" in discovered.detail and "发现时间系图克镇司法所所报" in discovered.detail
    assert (
        "本事件的报告：公安机关警情平台 2025-03-01 10:00:00 首报（日志序号 0）；"
        in discovered.detail
    )
    assert discovered.asserted == ("图克镇司法所称事件于 2025-03-01 08:00:00 被发现",)


OTHER = uuid.UUID("0c5d9a1e-7f43-4b6e-8a2f-3d1e6b7c9f10")


def other_reported(log: Log, minutes: float, party: str) -> LoggedEvent:
    """The first report of another incident of the same event, published under it."""
    return log.add(
        "incident.reported",
        minutes,
        OTHER,
        facts=ABSCONDING,
        reporter={"party": party, "name": "赵所长"},
        reported_at=(T0 + timedelta(minutes=minutes)).isoformat(),
    )


def joined(log: Log, minutes: float, how: str = "incident.merged", **more: Any) -> LoggedEvent:
    """People join OTHER into the judged incident (a merge, or a link)."""
    other = {"merged_incident_id" if how == "incident.merged" else "linked_incident_id": str(OTHER)}
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    fields = {"merged_at" if how == "incident.merged" else "linked_at": at}
    if how == "incident.linked":
        fields["linked_by"] = "PEOPLE"
    return log.add(
        how,
        minutes,
        link_id=str(uuid.uuid4()),
        party="BLO",
        actor_name="周主任",
        reason="同一对象同一事件",
        **other,
        **fields,
        **more,
    )


def test_R20_the_first_report_of_an_incident_merged_in_is_a_report_of_the_event() -> None:
    log = Log(explicit=True)
    log.reported(party="PLATFORM")
    other_reported(log, 3, SFS)
    merge = joined(log, 90)
    assert log.compute() == []
    # The merged incident is judged on the one it was merged into: no finding of its own.
    assert compute(OTHER, log.events, RULES) == []
    # Undone, they are two events again: the platform's stands alone and the office never
    # reported it.
    log.add(
        "incident.unlinked",
        120,
        linked_incident_id=str(OTHER),
        link_id=merge.data["link_id"],
        was="MERGE",
        party="BLO",
        actor_name="周主任",
        reason="并非同一事件",
        unlinked_at=(T0 + timedelta(minutes=120)).isoformat(),
    )
    mine = [event for event in log.events if event.subject == str(INCIDENT)]
    (unreported,) = compute(INCIDENT, mine, RULES)
    assert "未见图克镇司法所" in unreported.detail


def test_R20_a_follow_up_the_office_filed_on_an_incident_linked_by_people_counts() -> None:
    log = Log()
    log.reported(party="PLATFORM")
    other_reported(log, 80, "PPS:150626102")
    office_follow_up(log, 30, OTHER)
    joined(log, 100, how="incident.linked")
    assert log.compute() == []


def test_a_link_concerns_both_incidents_but_their_duties_stay_apart() -> None:
    log = Log(explicit=True)
    log.reported()
    theirs = log.obligation(0, "R1", SFS, "FIRST_RESPONSE", due=15)
    log.add("deadline.missed", 16, OTHER, obligation_id=theirs.data["obligation_id"])
    joined(log, 20)
    assert compute(INCIDENT, log.events, RULES) == []


def test_R20_a_merge_changes_the_facts_of_the_incident_it_keeps_only() -> None:
    log = Log(explicit=True)
    log.reported()
    log.under = OTHER
    other_reported(log, 1, SFS)
    log.under = None
    joined(log, 20, changes={"phase": "IN_PROGRESS"}, previous={"phase": "OCCURRED"})
    kept = [event for event in log.events if concerns(event, str(INCIDENT))]
    merged = [event for event in log.events if concerns(event, str(OTHER))]
    assert merged[-1].type == "incident.merged"  # filed under both
    assert fact_now(kept, "phase") == "IN_PROGRESS"
    assert fact_now(merged, "phase") == "OCCURRED"


def moved(log: Log, original: LoggedEvent, minutes: float) -> LoggedEvent:
    """Escalation moves a merged incident's open duty to the surviving one (R20)."""
    copy_id = str(uuid.uuid4())
    log.add(
        "obligation.waived",
        minutes,
        OTHER,
        obligation_id=original.data["obligation_id"],
        party=original.data["party"],
        rule_id=original.data["rule_id"],
        reason="事件合并，义务移至保留的事件",
        waived_at=(T0 + timedelta(minutes=minutes)).isoformat(),
        moved_to=copy_id,
    )
    data = {**original.data, "obligation_id": copy_id, "moved_from": original.data["obligation_id"]}
    del data["incident_id"]
    return log.add("obligation.created", minutes, **data)


def test_R20_a_duty_moved_by_a_merge_is_judged_once_on_the_surviving_incident() -> None:
    log = Log(explicit=True)
    log.reported()
    log.under = OTHER  # the duty is first the merged incident's
    other_reported(log, 1, SFS)
    original = log.obligation(1, "R3", SFS, "ORGANISE_SEARCH", due=16)
    missed = log.missed(17, original)
    log.under = None
    joined(log, 20)
    copy = moved(log, original, 20)
    log.under = OTHER  # escalation's later word about the old duty, and its closure
    log.omitted(20 + 7 * 1440, original)
    log.add("incident.status_changed", 50, status="CLOSED", changed_at=T0.isoformat())
    log.under = None
    _, met = log.met(40, copy)
    # The old duty gives nothing on the merged incident.
    assert compute(OTHER, log.events, RULES) == []
    (late,) = log.compute()
    assert (late.rule_id, late.obligation_id) == ("R10", uuid.UUID(copy.data["obligation_id"]))
    assert "应于 2025-03-01 10:16:00 前" in late.detail and "逾期 24分" in late.detail
    assert "由另一事件移来，到期时间不变" in late.detail
    assert "此前于 2025-03-01 10:17:00 已逾期未办" in late.detail
    assert {missed.index, met.index} <= set(late.evidence_log_indexes)


def test_R20_a_moved_duty_undone_at_closure_is_one_omission_of_the_surviving_incident() -> None:
    log = Log(explicit=True)
    log.reported()
    log.under = OTHER
    original = log.obligation(1, "R3", SFS, "ORGANISE_SEARCH", due=16)
    log.under = None
    joined(log, 20)
    copy = moved(log, original, 20)
    log.closed(600)
    (omitted,) = log.compute()
    assert (omitted.rule_id, omitted.obligation_id) == (
        "R11",
        uuid.UUID(copy.data["obligation_id"]),
    )
    assert compute(OTHER, log.events, RULES) == []


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


def test_R13_a_follow_up_that_moves_the_phase_on_reports_news_not_a_contradiction() -> None:
    """Signs, then the subject attacking someone: the 续报 that says so is no 谎报. The same
    change made as a correction, or a phase moved back in a 续报, is still judged."""
    log = Log()
    log.reported(phase="SIGNS", category="VIOLENCE")
    follow_up(log, 10, changes={"phase": "IN_PROGRESS"}, previous={"phase": "SIGNS"})
    follow_up(log, 20, changes={"phase": "OCCURRED"}, previous={"phase": "IN_PROGRESS"})
    assert [f for f in log.compute() if f.rule_id == "R13"] == []
    follow_up(log, 30, changes={"phase": "SIGNS"}, previous={"phase": "OCCURRED"})
    (back,) = [f for f in log.compute() if f.rule_id == "R13"]
    assert [v.label for v in back.versions] == ["事态阶段"]


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
    assert local(T0, COUNTY) == "2025-03-01 10:00:00"
    assert duration_zh(timedelta(days=1, hours=2, seconds=3)) == "1天2小时3秒"
    assert duration_zh(timedelta(0)) == "0秒"


def test_r10_done_after_missed_is_late_not_omitted() -> None:
    """R10/R11: missed, seen omitted, then done: the duty is MET_LATE and its finding R10;
    the R11 published before stays on record, superseded by the R10."""
    log = Log()
    log.reported()
    duty = log.obligation(0, "R1", SFS, "START_FIRST_RESPONSE", due=15)
    missed = log.missed(16, duty)
    omitted = log.omitted(15 + 7 * 1440, duty)
    (omission,) = log.compute()
    assert omission.rule_id == "R11"
    action, met = log.met(15 + 8 * 1440, duty)
    (late,) = log.compute()
    assert (late.rule_id, late.kind, late.party) == ("R10", "LATE", SFS)
    assert late.obligation_id == omission.obligation_id
    assert late.evidence_log_indexes == (
        duty.index,
        missed.index,
        omitted.index,
        action.index,
        met.index,
    )
    assert "逾期 8天" in late.detail
    assert "曾列为疑似漏报（R11），补办后改按迟报（R10）核查" in late.detail
    assert superseded_by([omission, late]) == {omission.finding_id: late.finding_id}
    assert superseded_by([late]) == {}


def test_r10_after_closure_supersedes_the_omission_seen_at_closure() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R5", SFS, "COUNSEL", due=60)
    log.closed(90)
    (omission,) = log.compute()
    log.met(100, duty)
    (late,) = log.compute()
    assert late.rule_id == "R10" and "曾列为疑似漏报" in late.detail
    assert superseded_by([omission, late]) == {omission.finding_id: late.finding_id}


def test_r10_finding_names_the_owner() -> None:
    """Who failed is the duty's owner (the 司法所 that must report to the command group), not
    the party to be informed; the detail names both."""
    log = Log()
    log.reported()
    report = log.obligation(0, "R5", "TCG:150626102", "REPORT", due=60, owner=SFS)
    log.met(75, report)
    (late,) = log.compute()
    assert (late.rule_id, late.party) == ("R10", SFS)
    assert late.detail.startswith("图克镇司法所（SFS:150626102）应于 2025-03-01 11:00:00 前")
    assert f"告知对象：{party_name_zh('TCG:150626102')}；依据 R5" in late.detail


def test_r11_finding_names_the_owner_and_old_events_fall_back_to_the_party() -> None:
    log = Log()
    log.reported()
    procuratorate = log.obligation(0, "R18", "PRO", "NOTIFY_PRO", due=60, owner="BLO")
    old = log.obligation(0, "R4", "PPS:150626102", "WRITTEN_NOTICE", due=60)
    log.closed(90)
    parties = {f.obligation_id: f.party for f in log.compute()}
    assert parties == {
        uuid.UUID(procuratorate.data["obligation_id"]): "BLO",
        uuid.UUID(old.data["obligation_id"]): "PPS:150626102",
    }


def test_r10_lateness_is_measured_from_receipt_and_asserted_times_are_evidence() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    # Received 20 minutes in; the office says it searched at 10:10, before the deadline.
    log.met(20, duty, asserted_at=(T0 + timedelta(minutes=10)).isoformat(), recorded_by=SFS)
    (late,) = log.compute()
    assert late.rule_id == "R10" and "逾期 5分" in late.detail
    assert late.happened_at == T0 + timedelta(minutes=20)
    assert late.asserted == ("图克镇司法所称实际于 2025-03-01 10:10:00 完成",)
    assert "系统于 2025-03-01 10:20:00 收到办理记录" in late.detail
    assert "图克镇司法所称实际于 2025-03-01 10:10:00 完成（系记录方自述" in late.detail


def test_r10_recorded_on_the_owners_behalf_says_who_recorded_it() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    log.met(30, duty, recorded_by="TCG:150626102", on_behalf_of=SFS)
    (late,) = log.compute()
    assert late.party == SFS
    command_group = party_name_zh("TCG:150626102")
    assert f"由{command_group}代图克镇司法所（SFS:150626102）记录" in late.detail


def test_r9_went_quiet_gives_one_staleness_finding() -> None:
    log = Log()
    log.reported()
    quiet = {
        "party": "BLO",
        "rule_id": "R9",
        "last_news_at": (T0 + timedelta(minutes=30)).isoformat(),
        "noticed_at": (T0 + timedelta(days=7, minutes=30)).isoformat(),
        "township_code": "150626102",
    }
    told = log.add("incident.went_quiet", 7 * 1440 + 30, **quiet)
    log.add("incident.went_quiet", 7 * 1440 + 31, **quiet)  # redelivered or repeated
    beijing = (T0 + timedelta(minutes=30)).astimezone(COUNTY).isoformat()
    log.add("incident.went_quiet", 7 * 1440 + 32, **{**quiet, "last_news_at": beijing})
    (stale,) = log.compute()
    assert (stale.rule_id, stale.kind, stale.party) == ("R9", "STALE", "BLO")
    assert stale.title == "续报中断，供核查"
    assert "自 2025-03-01 10:30:00 起未见新的续报或处置记录" in stale.detail
    assert "已 7天" in stale.detail
    assert stale.evidence_log_indexes == (0, told.index)
    # Quiet again after news: a second spell, a second finding.
    log.add(
        "incident.went_quiet",
        15 * 1440,
        **{**quiet, "last_news_at": (T0 + timedelta(days=8)).isoformat()},
    )
    assert [f.rule_id for f in log.compute()] == ["R9", "R9"]


def test_r12_times_the_reporter_asserts_are_shown_with_who_asserted_them() -> None:
    log = Log()
    log.reported(discovered_minutes_before=185, occurred_at=(T0 - timedelta(hours=4)).isoformat())
    (concealed,) = log.compute()
    assert concealed.asserted == (
        "图克镇司法所称事件于 2025-03-01 06:55:00 被发现",
        "图克镇司法所称事件发生于 2025-03-01 06:00:00",
    )
    assert "发现时间系图克镇司法所所报" in concealed.detail


def test_findings_write_times_in_the_county_zone_of_the_setting() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    log.met(20, duty)
    urumqi = FindingRules(timedelta(hours=1), RULES.party_names, zone=ZoneInfo("Asia/Urumqi"))
    (late,) = log.compute(urumqi)
    assert "应于 2025-03-01 08:15:00 前" in late.detail  # UTC+6, not Beijing time
    (beijing,) = log.compute()
    assert "应于 2025-03-01 10:15:00 前" in beijing.detail
