"""The investigation report draft (services/audit/report.py): pure rendering."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.audit.findings import LoggedEvent, compute
from services.audit.linking import LINK_TYPES
from services.audit.report import (
    Anchor,
    Duties,
    Judgements,
    ProofRow,
    build_view,
    describe,
    latest_sealed_subjects,
    place,
    render,
)
from shared.domain.vocabulary import COUNTY_TIME
from shared.events.models import AccountabilityRecorded, FindingReviewed
from tests.unit.test_audit_findings import (
    COUNTY,
    INCIDENT,
    OTHER,
    RULES,
    SFS,
    T0,
    Log,
    joined,
    linked_report,
    moved,
    office_follow_up,
    other_reported,
)


def view_of(log: Log, anchor: Anchor | None = None):
    return build_view(
        str(INCIDENT), log.events, log.compute(), anchor, RULES.party_names or {}, T0, zone=COUNTY
    )


def scripted() -> Log:
    log = Log()
    log.reported(discovered_minutes_before=200, summary="对象<script>失联</script>|未归")
    log.add(
        "incident.action_recorded",
        5,
        action="SEARCH_STARTED",
        party=SFS,
        actor_name="赵六",
        note="已组织人员",
    )
    log.add(
        "incident.status_changed",
        6,
        status="SEARCHING",
        previous_status="REPORTED",
        changed_at=(T0 + timedelta(minutes=6)).isoformat(),
    )
    return log


ANCHOR = Anchor(
    note="sqjz.wushen.example/audit\n3\nAAAA\n\n— sqjz.wushen.example/audit abc=\n",
    size=3,
    root_hash="AAAA",
    proofs=(
        ProofRow(0, "bGVhZg==", ("cDE=", "cDI="), True),
        ProofRow(1, "bGVhZjI=", ("cDM=",), True),
        ProofRow(2, "bGVhZjM=", (), True),
    ),
)


def test_markdown_has_every_section_the_plan_asks_for() -> None:
    text = render(view_of(scripted(), ANCHOR), "markdown")
    for heading in (
        "一、事件概况",
        "二、处置经过",
        "三、责任调查",
        "四、经验总结",
        "五、整改意见建议",
    ):
        assert f"## {heading}" in text
    assert text.count("（待填写）") >= 3
    assert "| 事件种类 | 脱离监督管理 |" in text
    assert "2025-03-01 10:05:00" in text  # Asia/Shanghai
    assert "| 图克镇司法所（SFS:150626102） | 赵六 | 记录处置：组织查找，已组织人员 | 1 |" in text
    assert "### 1. 疑似瞒报，供核查（R12）— 图克镇司法所（SFS:150626102）" in text
    assert "证据：日志序号 0（包含证明见附录）" in text
    assert "```\nsqjz.wushen.example/audit\n3\nAAAA\n\n— " in text
    assert "| 0 | `bGVhZg==` | `cDE=`<br>`cDI=` |" in text
    assert "失联</script>\\|未归" in text  # a pipe cannot break the table


def test_html_escapes_what_people_typed() -> None:
    html = render(view_of(scripted(), ANCHOR), "html")
    assert html.startswith("<!DOCTYPE html>")
    assert "<script>失联" not in html and "&lt;script&gt;失联" in html
    assert "<h2>三、责任调查</h2>" in html and "疑似瞒报，供核查" in html


def test_without_findings_or_checkpoint_the_report_says_so() -> None:
    log = Log()
    log.reported()
    text = render(view_of(log), "markdown")
    assert "未发现疑似迟报、谎报、瞒报、漏报情形。" in text
    assert "日志尚无签名检查点。" in text


def test_timeline_follows_event_time_and_names_the_system_for_its_own_events() -> None:
    view = view_of(scripted())
    assert [row.index for row in view.timeline] == [0, 1, 2]
    assert view.timeline[2].party == "系统"
    assert view.timeline[2].what == "状态：已报告 → 查找中"
    assert view.generated_at == "2025-03-01 10:00:00"


RAW_CODES = (
    "IMMEDIATE",
    "CONTROLLED",
    "subjects",
    "location",
    "PLATFORM",
    "ABSCONDED",
    "OCCURRED",
    "webhook",
)


def everyday_incident() -> Log:
    """Reported by the police platform, a duty met, one missed, a correction, a refused action."""
    log = Log()
    log.reported(party="PLATFORM", location="图克镇中心街")
    search = log.obligation(1, "R3", SFS, "ORGANISE_SEARCH", due=15, deadline_text="立即（15分钟）")
    notice = log.obligation(1, "R4", "PPS:150626102", "WRITTEN_NOTICE", due=61)
    action = log.add("incident.action_recorded", 5, action="SEARCH_STARTED", party=SFS)
    log.add(
        "obligation.met",
        5,
        obligation_id=search.data["obligation_id"],
        party=SFS,
        rule_id="R3",
        status="MET",
        met_at=(T0 + timedelta(minutes=5)).isoformat(),
        met_by_event_id=action.id,
    )
    log.missed(62, notice, escalated_to="TCG:150626102")
    log.add(
        "incident.report_filed",
        70,
        report_id=str(uuid.uuid4()),
        kind="CORRECTION",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=70)).isoformat(),
        changes={"subjects": [{"id": "S2", "name": "张**"}], "location": "图克镇南街"},
        previous={"subjects": [{"id": "S1", "name": "王**"}], "location": "图克镇中心街"},
    )
    log.add(
        "action.rejected",
        80,
        action_id=str(uuid.uuid4()),
        action="CONTROLLED",
        status="CONTROLLED",
        reason="「事态已控制」不适用于事件当前状态「已控制」",
    )
    log.add("notification.delivered", 81, party=SFS, channel="webhook")
    return log


def test_the_report_speaks_words_not_codes_and_names_each_duty() -> None:
    text = render(view_of(everyday_incident(), ANCHOR), "markdown").split("## 附录")[0]
    assert [code for code in RAW_CODES if code in text] == []
    assert "| 发生地 | 图克镇中心街 |" in text.replace("图克镇南街", "图克镇中心街")
    assert "图克镇图克镇" not in text and "图克镇 图克镇" not in text
    assert "更正：地点、涉及对象" in text
    assert "按时办结：ORGANISE_SEARCH 的中文（R3），2025-03-01 10:05:00" in text
    assert "时限：立即（15分钟）" in text
    assert "逾期未办（R4）：WRITTEN_NOTICE 的中文，升级至苏木(镇)社区矫正突发事件" in text
    assert "记录未被接受：事态已控制（「事态已控制」不适用于事件当前状态「已控制」）" in text
    assert "通知已送达，经系统接口" in text
    assert "| 首报 | 公安机关警情平台 李明，2025-03-01 10:00:00 |" in text


def test_the_place_is_named_once() -> None:
    assert place("图克镇", "图克镇中心街") == "图克镇中心街"
    assert place("图克镇", "中心街") == "图克镇中心街"
    assert place("图克镇", None) == "图克镇"
    assert place(None, None) == "—"


def r6_incident_with_four_duties_met() -> Log:
    log = Log()
    log.reported(category="VIOLENCE", phase="IN_PROGRESS")
    duties = [
        log.obligation(1, "R6", party, action, due=15)
        for party, action in (
            ("PPS:150626102", "CALL_POLICE"),
            ("TCG:150626102", "REPORT"),
            ("BLO", "REPORT"),
            (SFS, "GO_ON_SCENE"),
        )
    ]
    action = log.add("incident.action_recorded", 5, action="ON_SCENE", party=SFS, actor_name="李明")
    for duty in duties:
        log.add(
            "obligation.met",
            6,
            obligation_id=duty.data["obligation_id"],
            party=duty.data["party"],
            rule_id="R6",
            status="MET",
            met_at=(T0 + timedelta(minutes=6)).isoformat(),
            met_by_event_id=action.id,
        )
    return log


def test_each_duty_met_is_named_not_only_its_rule() -> None:
    text = render(view_of(r6_incident_with_four_duties_met()), "markdown")
    met = [line for line in text.splitlines() if "| 按时办结：" in line]
    assert len(met) == 4
    for action in ("CALL_POLICE", "REPORT", "GO_ON_SCENE"):
        assert any(f"按时办结：{action} 的中文（R6）" in line for line in met), met


def test_the_timeline_names_the_person_who_acted_or_reported() -> None:
    view = view_of(r6_incident_with_four_duties_met())
    assert view.timeline[0].person == "李明"  # the reporter of the first report
    (on_scene,) = [row for row in view.timeline if "已到现场" in row.what]
    assert on_scene.person == "李明"
    assert {row.person for row in view.timeline if row.what.startswith("应办")} == {"—"}


def test_a_summary_up_front_says_how_duties_ended_and_how_many_findings() -> None:
    text = render(view_of(everyday_incident(), ANCHOR), "markdown")
    # The notice is overdue, not omitted (R11 waits for closure or seven days): R12, R13.
    summary = "共产生义务 2 项：按时办结 1 项、逾期未办 1 项；疑似情形 2 条"
    assert summary in text.split("## 一、事件概况")[0]


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_the_hashes_come_last_folded_away_from_the_reading(fmt) -> None:
    text = render(view_of(scripted(), ANCHOR), fmt)
    assert text.index("五、整改意见建议") < text.index("附录：日志锚定（供核验，阅读可略过）")
    assert text.index("<details>") < text.index("bGVhZg==") < text.index("</details>")
    assert "bGVhZg==" not in text.split("附录")[0]


CLEAR_SUBJECTS = [{"id": "S1", "name": "王某某", "id_number": "150626199001011234"}]
SEALED_FIRST = {"kid": "k1", "nonce": "bm9uY2Ux", "ct": "Zmlyc3Q="}
SEALED_CORRECTED = {"kid": "k1", "nonce": "bm9uY2Uy", "ct": "Y29ycmVjdGVk"}


def masked_report_with_sealed_subjects() -> Log:
    """Subjects masked as events carry them (王**), sealed beside them; a correction of them."""
    reported = Log()
    reported.reported(
        subjects=[{"id": "S1", "name": "王**", "id_number_masked": "150626********1234"}]
    )
    first = {**reported.events[0].data, "sealed_subjects": SEALED_FIRST}
    log = Log()
    log.add("incident.reported", 0, **first)
    log.add(
        "incident.report_filed",
        30,
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=30)).isoformat(),
        changes={"summary": "已找到"},
        previous={"summary": None},
    )
    return log


def test_with_subjects_in_clear_the_report_names_them_as_the_city_office_needs() -> None:
    log = masked_report_with_sealed_subjects()
    view = build_view(
        str(INCIDENT),
        log.events,
        [],
        None,
        RULES.party_names or {},
        T0,
        CLEAR_SUBJECTS,
        zone=COUNTY,
    )
    text = render(view, "markdown")
    assert "| 涉及对象 | 王某某（编号 S1，身份证号 150626199001011234） |" in text
    assert "| 个人信息 | 明文（依 pii:read 查阅，本次查阅已记入审计日志） |" in text
    html = render(view, "html")
    assert "王某某（编号 S1，身份证号 150626199001011234）" in html


def test_without_subjects_in_clear_the_report_shows_only_what_events_carry() -> None:
    text = render(view_of(masked_report_with_sealed_subjects()), "markdown")
    assert "| 涉及对象 | 王**（编号 S1，身份证号 150626********1234） |" in text
    assert "| 个人信息 | 已遮蔽（持 pii:read 权限查阅可见明文） |" in text
    assert "王某某" not in text and "150626199001011234" not in text
    assert "Zmlyc3Q=" not in text  # the ciphertext is no reading matter
    retired = build_view(
        str(INCIDENT),
        masked_report_with_sealed_subjects().events,
        [],
        None,
        {},
        T0,
        masked_because="密封的对象信息无法解密：密钥已停用或记录不完整",
        zone=COUNTY,
    )
    assert ("个人信息", "已遮蔽（密封的对象信息无法解密：密钥已停用或记录不完整）") in (
        retired.overview
    )


def test_the_subjects_to_open_are_the_latest_sealed_in_log_order() -> None:
    log = masked_report_with_sealed_subjects()
    assert latest_sealed_subjects(log.events) == SEALED_FIRST  # a follow-up without subjects
    log.add(
        "incident.report_filed",
        40,
        report_id=str(uuid.uuid4()),
        kind="CORRECTION",
        reporter={"party": SFS, "name": "李明"},
        filed_at=(T0 + timedelta(minutes=40)).isoformat(),
        changes={"subjects": [{"id": "S2", "name": "张**"}]},
        previous={"subjects": [{"id": "S1", "name": "王**"}]},
        sealed_subjects=SEALED_CORRECTED,
    )
    assert latest_sealed_subjects(list(reversed(log.events))) == SEALED_CORRECTED
    # R20: a merge that changed the subjects states them for the incident it keeps only.
    merge = joined(log, 50, sealed_subjects=SEALED_FIRST)
    assert latest_sealed_subjects(log.events) == SEALED_FIRST
    kept_elsewhere = LoggedEvent(
        merge.index,
        merge.id,
        merge.type,
        merge.time,
        {**merge.data, "incident_id": str(OTHER), "merged_incident_id": str(INCIDENT)},
    )
    assert latest_sealed_subjects([*log.events[:-1], kept_elsewhere]) == SEALED_CORRECTED
    unsealed = Log()
    unsealed.reported()
    assert latest_sealed_subjects(unsealed.events) is None


def test_a_read_of_personal_data_reads_as_who_read_what() -> None:
    log = Log()
    log.reported()
    log.add(
        "incident.personal_data_read",
        50,
        party="BJO",
        subject="bjo-duty-officer",
        fields=["subjects.name", "subjects.id_number"],
        read_at=(T0 + timedelta(minutes=50)).isoformat(),
    )
    row = view_of(log).timeline[-1]
    assert (row.party, row.person) == ("BJO", "bjo-duty-officer")
    assert row.what == "查阅个人信息明文：对象姓名、身份证号"


def test_every_notification_event_reads_in_words_in_the_timeline() -> None:
    from services.audit.report import NOTIFICATION_NAMES_ZH
    from shared.events import topics
    from shared.events.registry import EVENT_TYPES

    on_the_topic = {
        name for name, spec in EVENT_TYPES.items() if spec.topic == topics.NOTIFICATIONS
    }
    assert on_the_topic <= NOTIFICATION_NAMES_ZH.keys()


def judged_incident() -> tuple[Log, list]:
    """An omission done later (R11 superseded by R10), a concealment reviewed twice."""
    log = Log()
    log.reported(discovered_minutes_before=200)
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    log.closed(60)
    omission = log.compute()
    log.met(90, duty)
    return log, omission


def test_the_report_shows_reviews_superseded_omissions_and_r15_records() -> None:
    log, omission = judged_incident()
    findings = sorted({*omission, *log.compute()}, key=lambda f: f.evidence_log_indexes)
    concealed = next(f for f in findings if f.rule_id == "R12")
    late = next(f for f in findings if f.rule_id == "R10")
    (omitted,) = [f for f in findings if f.rule_id == "R11"]

    def review(decision: str, reason: str, minutes: int) -> FindingReviewed:
        return FindingReviewed(
            review_id=uuid.uuid4(),
            finding_id=concealed.finding_id,
            incident_id=INCIDENT,
            rule_id="R12",
            decision=decision,
            reason=reason,
            reviewer_party="BJO",
            reviewer="bjo-duty-officer",
            reviewed_at=T0 + timedelta(minutes=minutes),
        )

    record = AccountabilityRecorded(
        record_id=uuid.uuid4(),
        incident_id=INCIDENT,
        rule_id="R15",
        kind="DISCIPLINE",
        person="张三",
        role="司法所所长",
        party=SFS,
        decision="通报批评",
        document_number="乌司发〔2026〕12号",
        finding_ids=(late.finding_id,),
        recorded_by="BJO",
        recorded_at=T0 + timedelta(days=9),
    )
    view = build_view(
        str(INCIDENT),
        log.events,
        findings,
        None,
        RULES.party_names or {},
        T0,
        zone=COUNTY,
        judgements=Judgements(
            reviews=(review("CONFIRMED", "初核属实", 100), review("DISMISSED", "系群众误报", 200)),
            records=(record,),
        ),
    )
    assert view.superseded == {omitted.finding_id: late.finding_id}
    for fmt in ("markdown", "html"):
        text = render(view, fmt)
        assert (
            "核查意见：确认，理由：初核属实（旗司法局办公室 bjo-duty-officer，2025-03-01 11:40:00）"
            in text
        )
        assert "核查意见（现行）：排除，理由：系群众误报" in text
        number = view.number_of(late.finding_id)
        assert f"本条已由第 {number} 条（疑似迟报，R10）取代" in text
        assert "六、表彰与处分（R15）" in text
        assert "处分：张三（司法所所长，图克镇司法所（SFS:150626102））" in text
        assert "乌司发〔2026〕12号" in text and "通报批评" in text
        assert f"依据：第 {number} 条 疑似迟报，供核查（R10）— 图克镇司法所" in text
    assert "（其中 1 条已被取代）" in view.summary


def test_without_r15_records_the_report_says_none_yet() -> None:
    text = render(view_of(scripted()), "markdown")
    assert (
        "## 六、表彰与处分（R15）\n\n调查报告报送后，由旗司法局办公室记录表彰与处分；尚无记录。"
        in text
    )


def test_the_report_writes_times_in_the_county_zone_and_names_it() -> None:
    view = build_view(
        str(INCIDENT), scripted().events, [], None, {}, T0, zone=ZoneInfo("Asia/Urumqi")
    )
    text = render(view, "markdown")
    assert view.generated_at == "2025-03-01 08:00:00"
    assert "| 时间（Asia/Urumqi时间） |" in text and "北京时间" not in text
    assert "北京时间" in render(view_of(scripted()), "markdown")


def test_new_escalation_and_audit_events_read_in_words() -> None:
    log = Log()
    log.reported()
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    log.omitted(15 + 7 * 1440, duty)
    log.add(
        "incident.went_quiet",
        7 * 1440,
        party="BLO",
        rule_id="R9",
        last_news_at=T0.isoformat(),
        noticed_at=(T0 + timedelta(days=7)).isoformat(),
        township_code="150626102",
    )
    log.add(
        "finding.reviewed",
        7 * 1440 + 20,
        rule_id="R11",
        decision="DISMISSED",
        reason="系统外已办理",
        reviewer_party="CEO",
    )
    log.add(
        "accountability.recorded",
        9 * 1440,
        kind="COMMENDATION",
        person="李明",
        decision="通报表扬",
        document_number="乌司发〔2026〕13号",
        recorded_by="BJO",
    )
    rows = view_of(log).timeline
    whats = [row.what for row in rows]
    assert "逾期仍未办理（R3）：ORGANISE_SEARCH 的中文" in whats
    assert "续报中断：自 2025-03-01 10:00:00 起无新进展（R9）" in whats
    assert "核查审计发现（R11）：排除，理由：系统外已办理" in whats
    assert "记录表彰（R15）：李明，通报表扬，文号 乌司发〔2026〕13号" in whats
    assert {row.party for row in rows[-2:]} == {"CEO", "BJO"}


@pytest.mark.parametrize(
    ("about", "words"),
    [
        ("action.rejected", "已告知记录方：记录未被采纳"),
        ("incident.updated", "已告知事件新情况（R19）"),
        ("incident.went_quiet", "已告知续报中断（R9）"),
        ("accountability.recorded", "已告知表彰与处分（R15）"),
    ],
)
def test_a_notice_in_the_report_says_what_it_told(about: str, words: str) -> None:
    notice = LoggedEvent(
        index=7,
        id="e7",
        type="notification.notice_attempted",
        time=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        data={"party": "PPS:150626102", "about": about, "channel": "sms", "outcome": "DELIVERED"},
    )
    party, text = describe(notice, Duties.of([], {}, COUNTY_TIME))
    assert party == "PPS:150626102"
    assert text.startswith(words)


def linked_event() -> Log:
    """The platform reports, the 司法所 two minutes later (linked on arrival), a second incident
    the police station opened is merged in by the BLO, then a link by people is undone."""
    log = Log(explicit=True)
    log.reported(party="PLATFORM")
    linked_report(log, 2, SFS)
    log.under = OTHER
    other_reported(log, 5, "PPS:150626102")
    log.add(
        "incident.report_filed",
        8,
        report_id=str(uuid.uuid4()),
        kind="CORRECTION",
        reporter={"party": "PPS:150626102", "name": "钱警官"},
        filed_at=(T0 + timedelta(minutes=8)).isoformat(),
        changes={"location": "图克镇北街"},
        previous={"location": "图克镇中心街"},
        reason="地点有误",
    )
    log.under = None
    joined(log, 30)
    office_follow_up(log, 40)
    third = uuid.UUID("5e2c1b0a-9d8f-4e7c-b6a5-43210fedcba9")
    link = log.add(
        "incident.linked",
        50,
        link_id=str(uuid.uuid4()),
        linked_by="PEOPLE",
        linked_at=(T0 + timedelta(minutes=50)).isoformat(),
        linked_incident_id=str(third),
        party="TCG:150626102",
        actor_name="孙组长",
        reason="疑似同一对象",
    )
    log.add(
        "incident.unlinked",
        55,
        linked_incident_id=str(third),
        link_id=link.data["link_id"],
        was="LINK",
        party="BLO",
        actor_name="周主任",
        reason="并非同一对象",
        unlinked_at=(T0 + timedelta(minutes=55)).isoformat(),
    )
    return log


def event_view(log: Log):
    mine = [e for e in log.events if e.subject == str(INCIDENT) or e.type in LINK_TYPES]
    joined_history = [e for e in log.events if e not in mine]
    return build_view(
        str(INCIDENT),
        mine,
        compute(INCIDENT, log.events, RULES),
        None,
        RULES.party_names or {},
        T0,
        zone=COUNTY,
        joined=joined_history,
    )


def test_R20_the_report_lists_every_report_of_the_event_with_its_source_and_time() -> None:
    view = event_view(linked_event())
    assert [(row.time[11:], row.party, row.kind, row.incident) for row in view.reports] == [
        ("10:00:00", "PLATFORM", "首报", "本事件"),
        ("10:02:00", SFS, "关联报告", "本事件"),
        ("10:05:00", "PPS:150626102", "首报", "事件 0c5d9a1e"),
        ("10:08:00", "PPS:150626102", "更正", "事件 0c5d9a1e"),
        ("10:40:00", SFS, "续报", "本事件"),
    ]
    assert view.findings == ()  # the 司法所 reported two minutes after the platform
    text = render(view, "markdown")
    assert (
        "| 2025-03-01 10:02:00 | 图克镇司法所（SFS:150626102） | 赵所长 | 关联报告 | 本事件 | 1 |"
        in text
    )
    assert (
        "| 2025-03-01 10:05:00 | 图克镇派出所（PPS:150626102） | 赵所长 | 首报 | 事件 0c5d9a1e |"
        in (text)
    )


def test_R20_the_report_lists_links_merges_and_unlinks_with_who_when_and_why() -> None:
    view = event_view(linked_event())
    rows = [(row.time[11:], row.party, row.person, row.reason) for row in view.links]
    assert rows == [
        ("10:02:00", SFS, "赵所长", "社区矫正对象编号相同"),
        ("10:30:00", "BLO", "周主任", "同一对象同一事件"),
        ("10:50:00", "TCG:150626102", "孙组长", "疑似同一对象"),
        ("10:55:00", "BLO", "周主任", "并非同一对象"),
    ]
    whats = [row.what for row in view.links]
    assert whats[0].startswith("关联报告（R20）：同一事件的另一来源首报，因社区矫正对象编号相同")
    assert "合并（R20）：事件 0c5d9a1e并入事件 6f1f5a55，理由：同一对象同一事件" in whats
    assert "人工关联（R20）：事件 5e2c1b0a与事件 6f1f5a55为同一事件，理由：疑似同一对象" in whats
    assert (
        "解除关联（R20）：事件 6f1f5a55与事件 5e2c1b0a重新作为两起事件，理由：并非同一对象" in whats
    )
    assert {row.party for row in view.links} == {SFS, "BLO", "TCG:150626102"}
    html = render(view, "html")
    assert "<h3>关联、合并与解除（R20）</h3>" in html and "孙组长" in html
    # The timeline shows them too, with who acted.
    timeline = {row.what: (row.party, row.person) for row in view.timeline}
    assert timeline["合并（R20）：事件 0c5d9a1e并入事件 6f1f5a55，理由：同一对象同一事件"] == (
        "BLO",
        "周主任",
    )


def test_without_links_the_report_says_the_incident_stands_alone() -> None:
    text = render(view_of(scripted()), "markdown")
    assert "本事件未与其他报告或事件关联。" in text
    assert (
        "| 2025-03-01 10:00:00 | 图克镇司法所（SFS:150626102） | 李明 | 首报 | 本事件 | 0 |" in text
    )


def test_R20_a_moved_duty_reads_as_moved_not_as_no_longer_needed() -> None:
    log = Log()
    log.reported()
    log.under = OTHER  # the merged incident's duty, moved to the judged one
    duty = log.obligation(0, "R3", SFS, "ORGANISE_SEARCH", due=15)
    log.under = None
    moved(log, duty, 20)
    view = view_of(log)
    assert view.summary.startswith("共产生义务 2 项：随事件合并移出 1 项、尚待办理 1 项；")
    whats = [row.what for row in view.timeline]
    assert (
        "义务移至合并后保留的事件：ORGANISE_SEARCH 的中文（R3），事件合并，义务移至保留的事件"
        in whats
    )
    assert any(what.endswith("由关联合并的事件移来，到期时间不变") for what in whats)
