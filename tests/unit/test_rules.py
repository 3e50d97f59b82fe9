"""The rules engine (services/escalation/rules.py) over the real policy file, rule by rule.

Rule ids, sections and meanings are those of docs/rules.md; each rule's test is named after its id.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from services.escalation.rules import (
    Decision,
    Evidence,
    ObligationSpec,
    ObligationView,
    Policy,
    PriorSigns,
    Situation,
    StandingDuty,
    TimerStart,
    Trigger,
    caused_by,
    condition_reasons,
    deadline_text,
    duration_words,
    evaluate,
    grouped_into_alert,
    is_met_by,
    is_waived_by,
    ladder_step,
    may_still_be_met,
    met_status,
    missing_report_fields,
    obligation_id,
    outlives_closure,
    owner_of,
    recurrence,
    repeated_signs,
    report_evidence,
    unfold_chinese,
)
from shared.domain.ownership import ON_BEHALF_OF
from shared.domain.policyfile import merge
from shared.domain.vocabulary import (
    DEADLINE_WORDS_ZH,
    ActionCode,
    Category,
    Phase,
    county_time,
    party_name_zh,
)
from shared.events.models import IncidentFacts, Subject

from .conftest import POLICY_FILE

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPORTED_AT = datetime(2025, 3, 1, 10, 0, tzinfo=SHANGHAI)
TUKE = "150626102"
SFS, TCG, PPS = f"SFS:{TUKE}", f"TCG:{TUKE}", f"PPS:{TUKE}"
INCIDENT = UUID("00000000-0000-4000-8000-000000000001")
EARLIER_INCIDENT = UUID("00000000-0000-4000-8000-000000000002")
EVENT = UUID("00000000-0000-4000-8000-0000000000e1")
SUBJECT = "WS-2025-001"

QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
TWO_HOURS = timedelta(hours=2)
DAY = timedelta(hours=24)
WEEK = timedelta(days=7)

# Categories whose SIGNS (R5) and IN_PROGRESS (R6) the plan names: 行凶、闹事、自杀、违法犯罪.
CONDUCT = (Category.VIOLENCE, Category.MASS_INCIDENT, Category.DISRUPTION, Category.OTHER)


def make_facts(
    category: Category,
    phase: Phase,
    *,
    drill: bool = False,
    complete: bool = True,
    subjects: tuple[str, ...] = (SUBJECT,),
) -> IncidentFacts:
    """Facts of 图克镇; `complete` states every R7 element, otherwise only the place."""
    stated: dict[str, Any] = {}
    if complete:
        stated = {
            "occurred_at": REPORTED_AT - timedelta(minutes=20),
            "summary": "持刀与人冲突",
            "measures_taken": "已劝阻并报警",
            "persons_involved": "对象1人",
        }
    return IncidentFacts(
        category=category,
        phase=phase,
        township_code=TUKE,
        township_name="图克镇",
        subjects=tuple(Subject(id=sid, name="王某某") for sid in subjects),
        location="图克镇中心街",
        drill=drill,
        **stated,
    )


def situation(
    facts: IncidentFacts,
    *,
    reported_at: datetime = REPORTED_AT,
    fired: frozenset[str] = frozenset(),
    prior: tuple[PriorSigns, ...] = (),
    reporter: str = SFS,
    incident_id: UUID = INCIDENT,
) -> Situation:
    return Situation(incident_id, facts, reporter, reported_at, fired, prior)


def trigger(
    name: str = "reported", at: datetime = REPORTED_AT, actor: str | None = SFS, event_id=EVENT
) -> Trigger:
    return Trigger(name, at, event_id, actor)


def duties(decision: Decision, rule_id: str | None = None) -> list[tuple]:
    return [
        (s.rule_id, s.party, s.action, s.deadline_name, s.due_at)
        for s in decision.obligations
        if rule_id is None or s.rule_id == rule_id
    ]


def of_rule(decision: Decision, rule_id: str) -> list[ObligationSpec]:
    return [s for s in decision.obligations if s.rule_id == rule_id]


def policy_dict() -> dict[str, Any]:
    return yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


def assert_explained(spec: ObligationSpec, party_names: dict[str, str], *words: str) -> None:
    """Every explanation cites rule and section, the township, party, deadline and due time,
    in words and Beijing time: no deadline, category or phase codes, no UTC."""
    assert spec.explanation.startswith(f"依据 {spec.rule_id}（预案{spec.plan_section}）："), (
        spec.explanation
    )
    assert "发生在图克镇" in spec.explanation
    assert f"{party_names.get(spec.party, party_name_zh(spec.party))}须在" in spec.explanation
    assert f"内（{DEADLINE_WORDS_ZH[spec.deadline_name]}）" in spec.explanation
    assert spec.action_text in spec.explanation
    assert f"截止北京时间 {county_time(spec.due_at)}" in spec.explanation
    codes = [spec.deadline_name, *Category, *Phase, "+00:00", "+08:00"]
    assert not [code for code in codes if code in spec.explanation], spec.explanation
    for word in words:
        assert word in spec.explanation, (word, spec.explanation)


# --- R1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("category", list(Category))
def test_R1_every_report_obliges_the_sfs_to_respond_immediately(
    policy, party_names, category, phase
):
    decision = evaluate(policy, situation(make_facts(category, phase)), trigger(), party_names)
    (first,) = of_rule(decision, "R1")
    assert (first.party, first.action, first.deadline_name) == (
        SFS,
        "START_FIRST_RESPONSE",
        "IMMEDIATE",
    )
    assert first.due_at == REPORTED_AT + QUARTER
    assert first.plan_section == "四"
    assert first.action_text == "开展先期处置"
    assert first.trigger == "reported"
    assert first.drill is False
    assert first.escalated_from is None
    # The SFS reported it itself: nobody needs to tell it.
    assert first.notify is False
    assert "R1" in decision.fired_rules
    assert_explained(first, party_names, "事件报告", "图克镇司法所", "须在15分钟内（立即）")
    assert "截止北京时间 2025-03-01 10:15。" in first.explanation


def test_R1_sfs_is_alerted_when_the_police_platform_reported(policy, party_names):
    facts = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    decision = evaluate(
        policy, situation(facts, reporter="PLATFORM"), trigger(actor="PLATFORM"), party_names
    )
    assert all(spec.notify for spec in decision.obligations)


def test_R1_deadline_runs_from_the_report_never_from_before_it(policy, party_names):
    facts = make_facts(Category.DISASTER, Phase.OCCURRED)
    early = evaluate(
        policy, situation(facts), trigger(at=REPORTED_AT - timedelta(hours=3)), party_names
    )
    late = evaluate(policy, situation(facts), trigger(at=REPORTED_AT + HOUR), party_names)
    assert of_rule(early, "R1")[0].due_at == REPORTED_AT + QUARTER
    assert of_rule(late, "R1")[0].due_at == REPORTED_AT + HOUR + QUARTER


def test_R1_explanation_names_the_kind_of_body_without_a_directory_name(policy):
    """No codes in text for people: a party the directory does not name is named by kind."""
    decision = evaluate(
        policy, situation(make_facts(Category.ABSCONDED, Phase.OCCURRED)), trigger(), {}
    )
    assert "；司法所须在" in of_rule(decision, "R1")[0].explanation
    assert SFS not in of_rule(decision, "R1")[0].explanation


# --- R2 ---------------------------------------------------------------------------------------


def test_R2_uncontrollable_first_response_reports_to_blo_and_asks_tcg_to_activate_the_plan(
    policy, party_names
):
    at = REPORTED_AT + timedelta(minutes=40)
    facts = make_facts(Category.VIOLENCE, Phase.OCCURRED)
    decision = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R9"})),
        trigger("action:UNCONTROLLABLE", at),
        party_names,
    )
    assert duties(decision) == [
        ("R2", "BLO", "REPORT", "IMMEDIATE", at + QUARTER),
        ("R2", TCG, "ACTIVATE_PLAN", "IMMEDIATE", at + QUARTER),
    ]
    assert decision.fired_rules == ("R2",)
    assert decision.timers == ()
    for spec in decision.obligations:
        assert spec.notify is True
        assert spec.plan_section == "四"
        assert spec.trigger == "action:UNCONTROLLABLE"
        assert_explained(spec, party_names, "先期处置记录为不能控制")
    assert "旗社区矫正工作领导小组办公室须在" in decision.obligations[0].explanation
    assert "图克镇社区矫正突发事件应急处置指挥小组须在" in decision.obligations[1].explanation


def test_R2_fires_only_once_per_incident(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.OCCURRED)
    again = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R2", "R9"})),
        trigger("action:UNCONTROLLABLE", REPORTED_AT + HOUR),
        party_names,
    )
    assert again == Decision()


# --- R3 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(Phase))
def test_R3_absconded_subject_is_searched_for_at_once_and_the_search_window_starts(
    policy, party_names, phase
):
    decision = evaluate(
        policy, situation(make_facts(Category.ABSCONDED, phase)), trigger(), party_names
    )
    assert duties(decision) == [
        ("R1", SFS, "START_FIRST_RESPONSE", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R3", SFS, "ORGANISE_SEARCH", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R9", SFS, "FOLLOW_UP_REPORT", "FOLLOW_UP", REPORTED_AT + DAY),
    ]
    assert decision.timers == (TimerStart("SEARCH_WINDOW", "R3", REPORTED_AT + DAY),)
    assert decision.fired_rules == ("R1", "R3", "R9")
    (search,) = of_rule(decision, "R3")
    assert search.plan_section == "四(一)"
    assert_explained(search, party_names, "类别「脱离监督管理」")


def test_R3_search_window_is_cancelled_by_found_failed_or_closed(policy):
    timer = policy.timer("SEARCH_WINDOW")
    assert timer.after == "SEARCH_WINDOW"
    assert set(timer.cancelled_by) == {
        ActionCode.FOUND,
        ActionCode.SEARCH_FAILED,
        ActionCode.CLOSED,
    }


@pytest.mark.parametrize("category", [c for c in Category if c is not Category.ABSCONDED])
def test_R3_only_for_absconded_subjects(policy, party_names, category):
    decision = evaluate(
        policy, situation(make_facts(category, Phase.OCCURRED)), trigger(), party_names
    )
    assert "R3" not in decision.fired_rules
    assert decision.timers == ()


# --- R4 ---------------------------------------------------------------------------------------


def test_R4_search_failed_reports_up_and_hands_the_search_to_the_police_in_writing(
    policy, party_names
):
    at = REPORTED_AT + timedelta(hours=5)
    facts = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    decision = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R3", "R9"})),
        trigger("action:SEARCH_FAILED", at),
        party_names,
    )
    assert duties(decision) == [
        ("R4", TCG, "REPORT", "PROMPT", at + HOUR),
        ("R4", "BLO", "REPORT", "PROMPT", at + HOUR),
        ("R4", PPS, "WRITTEN_NOTICE", "PROMPT", at + HOUR),
        ("R4", SFS, "ASSIST_POLICE_SEARCH", "FOLLOW_UP", at + DAY),
    ]
    assert decision.fired_rules == ("R4",)
    # The SFS recorded the failed search itself; everyone else is told.
    assert [s.notify for s in decision.obligations] == [True, True, True, False]
    for spec in decision.obligations:
        assert spec.plan_section == "四(一)"
        assert_explained(spec, party_names, "查找记录为未果")
    assert "图克镇派出所须在" in decision.obligations[2].explanation


def test_R4_search_window_timer_passing_without_found_escalates_like_a_failed_search(
    policy, party_names
):
    at = REPORTED_AT + DAY
    facts = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    decision = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R3", "R9"})),
        trigger("timer:SEARCH_WINDOW", at, actor=None),
        party_names,
    )
    assert duties(decision) == [
        ("R4", TCG, "REPORT", "PROMPT", at + HOUR),
        ("R4", "BLO", "REPORT", "PROMPT", at + HOUR),
        ("R4", PPS, "WRITTEN_NOTICE", "PROMPT", at + HOUR),
        ("R4", SFS, "ASSIST_POLICE_SEARCH", "FOLLOW_UP", at + DAY),
    ]
    # Nobody reported the timer: every party, the SFS included, is alerted.
    assert all(spec.notify for spec in decision.obligations)
    for spec in decision.obligations:
        assert spec.trigger == "timer:SEARCH_WINDOW"
        assert_explained(spec, party_names, "查找时限已过仍未找到")


@pytest.mark.parametrize("name", ["action:SEARCH_FAILED", "timer:SEARCH_WINDOW"])
def test_R4_fires_once_whichever_comes_first(policy, party_names, name):
    facts = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    decision = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R3", "R4", "R9"})),
        trigger(name, REPORTED_AT + DAY),
        party_names,
    )
    assert decision == Decision()


# --- R5 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", CONDUCT)
def test_R5_signs_of_violence_or_disturbance_are_reported_and_the_subject_counselled(
    policy, party_names, category
):
    decision = evaluate(
        policy, situation(make_facts(category, Phase.SIGNS)), trigger(), party_names
    )
    assert duties(decision, "R5") == [
        ("R5", TCG, "REPORT", "PROMPT", REPORTED_AT + HOUR),
        ("R5", "BLO", "REPORT", "PROMPT", REPORTED_AT + HOUR),
        ("R5", SFS, "COUNSEL", "PROMPT", REPORTED_AT + HOUR),
        ("R5", SFS, "KEY_MONITORING", "PROMPT", REPORTED_AT + HOUR),
    ]
    assert decision.fired_rules == ("R1", "R5", "R9")
    for spec in of_rule(decision, "R5"):
        assert spec.plan_section == "四(二)"
        assert_explained(spec, party_names, "阶段「苗头迹象」", "（及时）")


@pytest.mark.parametrize(
    ("category", "phase"),
    [
        *((c, Phase.IN_PROGRESS) for c in CONDUCT),
        *((c, Phase.OCCURRED) for c in CONDUCT),
        (Category.ABSCONDED, Phase.SIGNS),
        (Category.ABNORMAL_DEATH, Phase.SIGNS),
        (Category.DISASTER, Phase.SIGNS),
    ],
)
def test_R5_not_outside_signs_of_the_named_conduct(policy, party_names, category, phase):
    decision = evaluate(policy, situation(make_facts(category, phase)), trigger(), party_names)
    assert "R5" not in decision.fired_rules


# --- R6 ---------------------------------------------------------------------------------------


def test_R6_violence_in_progress_calls_the_police_reports_up_and_sends_the_sfs_on_scene(
    policy, party_names
):
    decision = evaluate(
        policy, situation(make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)), trigger(), party_names
    )
    assert duties(decision) == [
        ("R1", SFS, "START_FIRST_RESPONSE", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R6", PPS, "CALL_POLICE", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R6", TCG, "REPORT", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R6", "BLO", "REPORT", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R6", SFS, "GO_ON_SCENE", "IMMEDIATE", REPORTED_AT + QUARTER),
        ("R6", SFS, "FULL_WRITTEN_REPORT", "WRITTEN", REPORTED_AT + TWO_HOURS),
        ("R9", SFS, "FOLLOW_UP_REPORT", "FOLLOW_UP", REPORTED_AT + DAY),
    ]
    assert decision.fired_rules == ("R1", "R6", "R9")
    assert decision.timers == ()
    r6 = of_rule(decision, "R6")
    assert [s.notify for s in r6] == [True, True, True, False, False]
    for spec in r6:
        assert spec.plan_section == "四(三)"
        assert_explained(spec, party_names, "类别「暴力犯罪或以要挟为目的的自杀、自焚、自残」")
        assert "阶段「正在实施」" in spec.explanation
    assert "图克镇派出所须在" in r6[0].explanation
    assert "须在2小时内（书面报告）" in r6[-1].explanation


@pytest.mark.parametrize("category", CONDUCT)
def test_R6_applies_to_every_in_progress_category_the_plan_names(policy, party_names, category):
    decision = evaluate(
        policy, situation(make_facts(category, Phase.IN_PROGRESS)), trigger(), party_names
    )
    assert [s.action for s in of_rule(decision, "R6")] == [
        "CALL_POLICE",
        "REPORT",
        "REPORT",
        "GO_ON_SCENE",
        "FULL_WRITTEN_REPORT",
    ]


@pytest.mark.parametrize("phase", list(Phase))
def test_R6_applies_to_abnormal_death_in_any_phase(policy, party_names, phase):
    decision = evaluate(
        policy, situation(make_facts(Category.ABNORMAL_DEATH, phase)), trigger(), party_names
    )
    r6 = of_rule(decision, "R6")
    assert len(r6) == 5
    assert r6[0].party == PPS
    assert "类别「非正常死亡」" in r6[0].explanation


@pytest.mark.parametrize(
    ("category", "phase"),
    [
        *((c, Phase.SIGNS) for c in CONDUCT),
        *((c, Phase.OCCURRED) for c in (Category.DISRUPTION, Category.OTHER)),
        (Category.ABSCONDED, Phase.IN_PROGRESS),
        (Category.DISASTER, Phase.IN_PROGRESS),
    ],
)
def test_R6_not_for_other_categories_or_phases(policy, party_names, category, phase):
    decision = evaluate(policy, situation(make_facts(category, phase)), trigger(), party_names)
    assert "R6" not in decision.fired_rules
    assert not any(spec.party == PPS for spec in decision.obligations)


# --- R7 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "phase"),
    [(Category.VIOLENCE, Phase.IN_PROGRESS), (Category.ABNORMAL_DEATH, Phase.OCCURRED)],
)
def test_R7_a_report_under_R6_missing_elements_owes_them_in_writing(
    policy, party_names, category, phase
):
    facts = make_facts(category, phase, complete=False)
    decision = evaluate(policy, situation(facts), trigger(), party_names)
    assert duties(decision, "R7") == [
        ("R7", SFS, "COMPLETE_REPORT", "WRITTEN", REPORTED_AT + TWO_HOURS)
    ]
    assert "R6" in decision.fired_rules
    (complete,) = of_rule(decision, "R7")
    assert complete.plan_section == "四(三)"
    # A notify action: the SFS is told even though it reported.
    assert complete.notify is True
    assert_explained(
        complete, party_names, "报告缺少：时间、涉及人员基本情况、事态发展情况、已采取的措施"
    )
    assert "地点" not in complete.explanation.split("报告缺少：")[1].split("，")[0]


def test_R7_missing_report_fields_in_the_plans_words(policy):
    assert missing_report_fields(policy, make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)) == []
    bare = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS, complete=False)
    assert missing_report_fields(policy, bare) == [
        "时间",
        "涉及人员基本情况",
        "事态发展情况",
        "已采取的措施",
    ]
    blank = bare.model_copy(update={"location": "", "summary": "已控制"})
    assert missing_report_fields(policy, blank) == [
        "时间",
        "地点",
        "涉及人员基本情况",
        "已采取的措施",
    ]


@pytest.mark.parametrize(
    ("category", "phase", "complete"),
    [
        (Category.VIOLENCE, Phase.IN_PROGRESS, True),
        (Category.ABNORMAL_DEATH, Phase.OCCURRED, True),
        (Category.VIOLENCE, Phase.SIGNS, False),
        (Category.ABSCONDED, Phase.OCCURRED, False),
        (Category.DISASTER, Phase.IN_PROGRESS, False),
    ],
)
def test_R7_not_for_complete_reports_or_outside_R6(policy, party_names, category, phase, complete):
    facts = make_facts(category, phase, complete=complete)
    decision = evaluate(policy, situation(facts), trigger(), party_names)
    assert "R7" not in decision.fired_rules


# --- R8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(Phase))
def test_R8_disaster_reports_to_tcg_and_blo_the_sfs_joins_relief_and_blo_contacts_departments(
    policy, party_names, phase
):
    decision = evaluate(
        policy, situation(make_facts(Category.DISASTER, phase)), trigger(), party_names
    )
    assert duties(decision, "R8") == [
        ("R8", TCG, "REPORT", "PROMPT", REPORTED_AT + HOUR),
        ("R8", SFS, "JOIN_RELIEF", "PROMPT", REPORTED_AT + HOUR),
        ("R8", "BLO", "REPORT", "PROMPT", REPORTED_AT + HOUR),
        ("R8", "BLO", "CONTACT_DEPARTMENTS", "PROMPT", REPORTED_AT + HOUR),
    ]
    assert decision.fired_rules == ("R1", "R8", "R9")
    for spec in of_rule(decision, "R8"):
        assert spec.plan_section == "四(四)"
        assert_explained(spec, party_names, "类别「不可抗拒力和其他重大突发事件」")
    assert [s.notify for s in of_rule(decision, "R8")] == [True, False, True, True]


# --- R9 ---------------------------------------------------------------------------------------


def view_of(spec: ObligationSpec, township: str = TUKE) -> ObligationView:
    return ObligationView(
        id=spec.id,
        incident_id=INCIDENT,
        rule_id=spec.rule_id,
        plan_section=spec.plan_section,
        party=spec.party,
        action=spec.action,
        action_text=spec.action_text,
        deadline_name=spec.deadline_name,
        due_at=spec.due_at,
        drill=spec.drill,
        township_code=township,
    )


def test_R9_every_incident_owes_a_follow_up_report_within_a_day(policy, party_names):
    decision = evaluate(
        policy, situation(make_facts(Category.OTHER, Phase.OCCURRED)), trigger(), party_names
    )
    (follow_up,) = of_rule(decision, "R9")
    assert (follow_up.party, follow_up.action, follow_up.deadline_name, follow_up.due_at) == (
        SFS,
        "FOLLOW_UP_REPORT",
        "FOLLOW_UP",
        REPORTED_AT + DAY,
    )
    assert follow_up.plan_section == "四"
    assert_explained(follow_up, party_names, "须在1天内（续报）")
    assert is_met_by(policy, duty("FOLLOW_UP_REPORT"), Evidence("report", party=SFS), TUKE)
    assert is_waived_by(policy, "FOLLOW_UP_REPORT", ActionCode.CLOSED)


def test_R9_follow_up_recurs_after_it_is_met_or_missed(policy, party_names):
    decision = evaluate(
        policy, situation(make_facts(Category.OTHER, Phase.OCCURRED)), trigger(), party_names
    )
    first = view_of(of_rule(decision, "R9")[0])
    due = first.due_at

    met_at = due - timedelta(hours=20)
    met_early = recurrence(policy, first, met_at, party_names)
    assert met_early is not None
    # Met early: the next one is due a day after this follow-up, not after the previous due
    # time (which would leave 44 hours between follow-ups).
    assert met_early.due_at == met_at + DAY
    assert (met_early.rule_id, met_early.party, met_early.action) == (
        "R9",
        SFS,
        "FOLLOW_UP_REPORT",
    )
    assert met_early.deadline_name == "FOLLOW_UP"
    assert met_early.trigger == "recurs:FOLLOW_UP_REPORT"
    assert met_early.notify is policy.actions["FOLLOW_UP_REPORT"].notify
    assert met_early.escalated_from is None
    assert met_early.id == obligation_id(
        INCIDENT, f"after:{first.id}", "R9", SFS, "FOLLOW_UP_REPORT"
    )
    assert met_early.explanation.startswith("依据 R9（预案四）：事件仍在处置中，需定期续报")
    assert "图克镇司法所须在" in met_early.explanation

    missed_at = due + timedelta(hours=3)
    missed = recurrence(policy, first, missed_at, party_names)
    assert missed is not None
    assert missed.due_at == missed_at + DAY
    # Same cause, same id: a replay cannot double it; the next one in the chain is new.
    assert missed.id == met_early.id
    following = recurrence(policy, view_of(missed), missed.due_at, party_names)
    assert following is not None
    assert following.id not in {first.id, missed.id}
    assert following.due_at == missed.due_at + DAY


@pytest.mark.parametrize("hours_after_report", [1, 12, 23, 30])
def test_R9_the_next_follow_up_is_due_a_day_after_the_last_one(
    policy, party_names, hours_after_report
):
    """A 续报 an hour after the report makes the next due 24 h later, not 47 h later."""
    decision = evaluate(
        policy, situation(make_facts(Category.OTHER, Phase.OCCURRED)), trigger(), party_names
    )
    first = view_of(of_rule(decision, "R9")[0])
    filed_at = REPORTED_AT + timedelta(hours=hours_after_report)
    following = recurrence(policy, first, filed_at, party_names)
    assert following is not None
    assert following.due_at == filed_at + DAY
    assert f"截止北京时间 {county_time(following.due_at)}" in following.explanation


@pytest.mark.parametrize("action", list(policy_dict()["actions"]))
def test_R9_only_recurring_actions_come_due_again(policy, party_names, action):
    view = ObligationView(
        INCIDENT, INCIDENT, "R1", "四", SFS, action, "x", "IMMEDIATE", REPORTED_AT, False, TUKE
    )
    again = recurrence(policy, view, REPORTED_AT + HOUR, party_names)
    assert (again is not None) is (policy.actions[action].recurs is not None)
    assert (again is not None) is (action == "FOLLOW_UP_REPORT")


# --- R14 --------------------------------------------------------------------------------------


def test_R14_closing_asks_the_bureau_office_for_an_investigation_report_within_7_days(
    policy, party_names
):
    at = REPORTED_AT + timedelta(days=2)
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    decision = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R6", "R9"})),
        trigger("action:CLOSED", at),
        party_names,
    )
    assert duties(decision) == [("R14", "BJO", "INVESTIGATION_REPORT", "INVESTIGATION", at + WEEK)]
    assert decision.fired_rules == ("R14",)
    (report,) = decision.obligations
    assert report.plan_section == "六(一)"
    assert report.notify is True
    assert_explained(report, party_names, "事件处置结束", "旗司法局办公室须在7天内（调查报告）")
    filed = Evidence("action", ActionCode.INVESTIGATION_REPORT_FILED, party="BJO")
    assert is_met_by(policy, duty("INVESTIGATION_REPORT"), filed, TUKE)


def test_R14_fires_once(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    again = evaluate(
        policy,
        situation(facts, fired=frozenset({"R1", "R6", "R9", "R14"})),
        trigger("action:CLOSED", REPORTED_AT + WEEK),
        party_names,
    )
    assert again == Decision()


# --- R16 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "phase", "name"),
    [
        (Category.VIOLENCE, Phase.IN_PROGRESS, "reported"),
        (Category.ABNORMAL_DEATH, Phase.OCCURRED, "reported"),
        (Category.ABSCONDED, Phase.OCCURRED, "reported"),
        (Category.ABSCONDED, Phase.OCCURRED, "action:SEARCH_FAILED"),
        (Category.ABSCONDED, Phase.OCCURRED, "timer:SEARCH_WINDOW"),
        (Category.DISRUPTION, Phase.SIGNS, "reported"),
        (Category.DISASTER, Phase.OCCURRED, "reported"),
        (Category.OTHER, Phase.IN_PROGRESS, "action:UNCONTROLLABLE"),
        (Category.OTHER, Phase.IN_PROGRESS, "action:CLOSED"),
    ],
)
def test_R16_drill_obligations_are_marked_drill_and_follow_the_same_rules(
    policy, party_names, category, phase, name
):
    """Drills run through the same pipeline, marked drill (so they never reach real police)."""
    at = REPORTED_AT + HOUR
    real = evaluate(
        policy,
        situation(make_facts(category, phase, complete=False)),
        trigger(name, at),
        party_names,
    )
    drill = evaluate(
        policy,
        situation(make_facts(category, phase, complete=False, drill=True)),
        trigger(name, at),
        party_names,
    )
    assert drill.obligations
    assert all(spec.drill is True for spec in drill.obligations)
    assert all(spec.drill is False for spec in real.obligations)
    assert duties(drill) == duties(real)
    assert drill.fired_rules == real.fired_rules
    assert drill.timers == real.timers
    assert [(s.notify, s.id) for s in drill.obligations] == [
        (s.notify, s.id) for s in real.obligations
    ]


def test_R16_each_sfs_runs_a_drill_every_year(policy):
    requirement = policy.drill_requirement
    assert (requirement.rule_id, requirement.plan_section) == ("R16", "七")
    assert (requirement.party, requirement.per_year) == ("SFS", 1)


# --- R17 --------------------------------------------------------------------------------------


def prior_signs(
    days_before: float, incident_id: UUID = EARLIER_INCIDENT, *, drill: bool = False
) -> PriorSigns:
    return PriorSigns(incident_id, SUBJECT, REPORTED_AT - timedelta(days=days_before), drill)


@pytest.mark.parametrize("days_before", [0, 1, 10, 29.9, 30])
def test_R17_signs_again_within_30_days_suggest_key_monitoring(policy, party_names, days_before):
    earlier = prior_signs(days_before)
    facts = make_facts(Category.VIOLENCE, Phase.SIGNS)
    decision = evaluate(policy, situation(facts, prior=(earlier,)), trigger(), party_names)
    assert duties(decision, "R17") == [
        ("R17", SFS, "SUGGEST_KEY_MONITORING", "PROMPT", REPORTED_AT + HOUR)
    ]
    assert decision.fired_rules == ("R1", "R5", "R9", "R17")
    (suggestion,) = of_rule(decision, "R17")
    assert suggestion.plan_section == "五(三)"
    assert suggestion.notify is True
    assert_explained(
        suggestion,
        party_names,
        "阶段「苗头迹象」",
        "30天内再次出现苗头迹象",
        SUBJECT,
        f"事件 {EARLIER_INCIDENT}",
        f"{earlier.reported_at:%Y-%m-%d}",
    )


@pytest.mark.parametrize("category", list(Category))
def test_R17_applies_to_signs_of_any_category(policy, party_names, category):
    facts = make_facts(category, Phase.SIGNS)
    decision = evaluate(policy, situation(facts, prior=(prior_signs(3),)), trigger(), party_names)
    assert "R17" in decision.fired_rules


@pytest.mark.parametrize(
    ("why", "prior", "phase"),
    [
        ("no earlier signs", (), Phase.SIGNS),
        ("older than 30 days", (prior_signs(30.01),), Phase.SIGNS),
        ("older than 30 days", (prior_signs(45),), Phase.SIGNS),
        ("this very incident", (prior_signs(2, INCIDENT),), Phase.SIGNS),
        ("reported after this one", (prior_signs(-1),), Phase.SIGNS),
        ("this report is not of signs", (prior_signs(2),), Phase.IN_PROGRESS),
        ("this report is not of signs", (prior_signs(2),), Phase.OCCURRED),
    ],
)
def test_R17_not_outside_the_window_nor_for_the_same_incident(
    policy, party_names, why, prior, phase
):
    facts = make_facts(Category.VIOLENCE, phase)
    decision = evaluate(policy, situation(facts, prior=prior), trigger(), party_names)
    assert "R17" not in decision.fired_rules, why


@pytest.mark.parametrize(("earlier_drill", "now_drill"), [(True, False), (False, True)])
def test_R17_drills_and_real_incidents_never_feed_each_others_history(
    policy, party_names, earlier_drill, now_drill
):
    facts = make_facts(Category.VIOLENCE, Phase.SIGNS, drill=now_drill)
    other_world = situation(facts, prior=(prior_signs(3, drill=earlier_drill),))
    assert repeated_signs(policy, other_world) == []
    assert "R17" not in evaluate(policy, other_world, trigger(), party_names).fired_rules


def test_R17_a_drill_repeating_a_drills_signs_is_suggested_as_a_drill(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.SIGNS, drill=True)
    drill = situation(facts, prior=(prior_signs(3, drill=True),))
    (suggestion,) = of_rule(evaluate(policy, drill, trigger(), party_names), "R17")
    assert suggestion.drill is True


def test_R17_repeated_signs_lists_only_earlier_incidents_in_the_window(policy):
    inside, outside, same = prior_signs(5), prior_signs(31), prior_signs(1, INCIDENT)
    facts = make_facts(Category.VIOLENCE, Phase.SIGNS)
    assert repeated_signs(policy, situation(facts, prior=(outside, inside, same))) == [inside]
    assert policy.repeat_signs_window == timedelta(days=30)


# --- explanations, notify, ids ----------------------------------------------------------------

EVERY_RULE_CASES = [
    (Category.VIOLENCE, Phase.IN_PROGRESS, "reported"),
    (Category.ABNORMAL_DEATH, Phase.OCCURRED, "reported"),
    (Category.ABSCONDED, Phase.OCCURRED, "reported"),
    (Category.ABSCONDED, Phase.OCCURRED, "action:SEARCH_FAILED"),
    (Category.ABSCONDED, Phase.OCCURRED, "timer:SEARCH_WINDOW"),
    (Category.MASS_INCIDENT, Phase.SIGNS, "reported"),
    (Category.DISASTER, Phase.OCCURRED, "reported"),
    (Category.VIOLENCE, Phase.OCCURRED, "action:UNCONTROLLABLE"),
    (Category.VIOLENCE, Phase.OCCURRED, "action:CLOSED"),
]


@pytest.mark.parametrize("actor", [SFS, "PLATFORM", PPS, None])
@pytest.mark.parametrize(("category", "phase", "name"), EVERY_RULE_CASES)
def test_notify_for_notify_actions_and_for_everyone_but_the_actor(
    policy, party_names, category, phase, name, actor
):
    facts = make_facts(category, phase, complete=False)
    decision = evaluate(
        policy,
        situation(facts, prior=(prior_signs(3),)),
        trigger(name, REPORTED_AT + HOUR, actor=actor),
        party_names,
    )
    assert decision.obligations
    for spec in decision.obligations:
        expected = policy.actions[spec.action].notify or spec.party != actor
        assert spec.notify is expected, spec
        assert spec.action_text == policy.actions[spec.action].text
        assert_explained(spec, party_names)


def test_every_rule_of_the_engine_is_exercised_by_these_cases(policy, party_names):
    fired: set[str] = set()
    for category, phase, name in EVERY_RULE_CASES:
        facts = make_facts(category, phase, complete=False)
        decision = evaluate(
            policy, situation(facts, prior=(prior_signs(3),)), trigger(name), party_names
        )
        fired |= set(decision.fired_rules)
    # R19 asks nothing of anyone: it tells (tests of update_recipients).
    assert fired == {rule.id for rule in policy.rules if rule.then or rule.timers}


def test_obligation_ids_derive_from_the_cause(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    first = evaluate(policy, situation(facts), trigger(), party_names)
    replay = evaluate(policy, situation(facts), trigger(), party_names)
    other_event = evaluate(
        policy, situation(facts), trigger(event_id=UUID(int=EVENT.int + 1)), party_names
    )
    assert [s.id for s in first.obligations] == [s.id for s in replay.obligations]
    assert len({s.id for s in first.obligations}) == len(first.obligations)
    assert not {s.id for s in first.obligations} & {s.id for s in other_event.obligations}
    for spec in first.obligations:
        assert spec.id == obligation_id(INCIDENT, str(EVENT), spec.rule_id, spec.party, spec.action)


def test_condition_reasons_name_the_matched_facts(policy):
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS, complete=False)
    r7 = policy.rule("R7").when.any[0]
    assert condition_reasons(policy, r7, situation(facts)) == [
        "类别「暴力犯罪或以要挟为目的的自杀、自焚、自残」",
        "阶段「正在实施」",
        "报告缺少：时间、涉及人员基本情况、事态发展情况、已采取的措施",
    ]
    complete = situation(make_facts(Category.VIOLENCE, Phase.IN_PROGRESS))
    assert condition_reasons(policy, r7, complete) is None
    r1 = policy.rule("R1").when.any[0]
    assert condition_reasons(policy, r1, situation(facts)) == []


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        (timedelta(minutes=15), "15分钟"),
        (timedelta(hours=1), "1小时"),
        (timedelta(hours=2), "2小时"),
        (timedelta(hours=24), "1天"),
        (timedelta(days=7), "7天"),
        (timedelta(minutes=90), "90分钟"),
        (timedelta(seconds=5), "5秒"),
        (timedelta(seconds=90), "90秒"),
    ],
)
def test_duration_words(duration, words):
    assert duration_words(duration) == words


def test_R14_the_investigation_report_outlives_closure_and_nothing_else_does(policy):
    """Closing ends every duty but the one closing calls for; that one is still pursued up the
    ladder (BJO → BLO) when it is missed."""
    assert [rule.id for rule in policy.rules if outlives_closure(policy, rule.id)] == ["R14"]


# --- the ladder -------------------------------------------------------------------------------

ORIGINAL = UUID("00000000-0000-4000-8000-0000000000a1")
MISSED_AT = REPORTED_AT + timedelta(minutes=20)


def pending(party: str, action: str, *, drill: bool = False) -> ObligationView:
    return ObligationView(
        id=ORIGINAL,
        incident_id=INCIDENT,
        rule_id="R6",
        plan_section="四(三)",
        party=party,
        action=action,
        action_text=f"{action}的事项",
        deadline_name="IMMEDIATE",
        due_at=REPORTED_AT + QUARTER,
        drill=drill,
        township_code=TUKE,
    )


@pytest.mark.parametrize(
    ("party", "action", "supervisor"),
    [
        # Owned by the obligated party: it is the one who missed it.
        (SFS, "START_FIRST_RESPONSE", TCG),
        (SFS, "GO_ON_SCENE", TCG),
        (SFS, "FOLLOW_UP_REPORT", TCG),
        (TCG, "SUPERVISE", "BLO"),
        ("BJO", "INVESTIGATION_REPORT", "BLO"),
        # owner: SFS, to a party on the ladder: the rung above that party, never the party
        # itself and never below it.
        ("BLO", "REPORT", None),
        (TCG, "REPORT", "BLO"),
        (TCG, "ACTIVATE_PLAN", "BLO"),
        # owner: SFS, to the police (off the ladder): the SFS that must call them is pressed.
        (PPS, "CALL_POLICE", TCG),
        (PPS, "WRITTEN_NOTICE", TCG),
        # At the top, or owners off the ladder: nobody above.
        ("BLO", "CONTACT_DEPARTMENTS", None),
        ("BLO", "SUPERVISE", None),
        ("CEO", "SUPERVISE", None),
        (PPS, "SUPERVISE", None),
        (PPS, "START_FIRST_RESPONSE", None),
    ],
)
def test_ladder_for_a_missed_deadline_goes_to_the_rung_above_the_party_never_down(
    policy, party_names, party, action, supervisor
):
    step = ladder_step(policy, pending(party, action), "missed", MISSED_AT, party_names)
    assert (step.party if step else None) == supervisor


@pytest.mark.parametrize(
    ("party", "action", "supervisor"),
    [
        # The recipient is on the ladder: it is the one who did not answer.
        (TCG, "REPORT", "BLO"),
        (TCG, "ACTIVATE_PLAN", "BLO"),
        (TCG, "SUPERVISE", "BLO"),
        (SFS, "COMPLETE_REPORT", TCG),
        ("BJO", "INVESTIGATION_REPORT", "BLO"),
        ("BLO", "SUPERVISE", None),
        ("BLO", "CONTACT_DEPARTMENTS", None),
        # The police are not on the bureau's ladder: the SFS that owes the call is pressed.
        (PPS, "CALL_POLICE", TCG),
        (PPS, "WRITTEN_NOTICE", TCG),
    ],
)
def test_ladder_for_an_unacknowledged_alert_starts_from_the_recipient(
    policy, party_names, party, action, supervisor
):
    step = ladder_step(policy, pending(party, action), "unacknowledged", MISSED_AT, party_names)
    assert (step.party if step else None) == supervisor


def test_ladder_unacknowledged_report_to_blo_is_at_the_top(policy, party_names):
    """BLO did not acknowledge an alert: nobody is above it; a lower TCG must not supervise."""
    step = ladder_step(policy, pending("BLO", "REPORT"), "unacknowledged", MISSED_AT, party_names)
    assert step is None


@pytest.mark.parametrize("cause", ["missed", "unacknowledged"])
@pytest.mark.parametrize("drill", [False, True])
def test_ladder_step_is_a_supervision_due_immediately(policy, party_names, cause, drill):
    original = pending(SFS, "GO_ON_SCENE", drill=drill)
    step = ladder_step(policy, original, cause, MISSED_AT, party_names)
    assert step is not None
    assert (step.party, step.action, step.deadline_name) == (TCG, "SUPERVISE", "IMMEDIATE")
    assert step.due_at == MISSED_AT + QUARTER
    assert step.escalated_from == ORIGINAL
    assert step.notify is True
    assert step.drill is drill
    assert (step.rule_id, step.plan_section) == ("R6", "四(三)")
    assert step.trigger == f"{cause}:GO_ON_SCENE"
    assert step.action_text == "督办逾期或无人确认的事项：GO_ON_SCENE的事项"
    assert step.id == obligation_id(INCIDENT, f"supervise:{ORIGINAL}", "R6", TCG, "SUPERVISE")
    assert ladder_step(policy, original, cause, MISSED_AT, party_names) == step
    how = "逾期未办" if cause == "missed" else "未确认告警"
    assert step.explanation.startswith(
        f"依据 R6（预案四(三)）：图克镇司法所{how}：「GO_ON_SCENE的事项」"
    )
    assert "图克镇社区矫正突发事件应急处置指挥小组须在" in step.explanation
    assert "（R6，截止北京时间 2025-03-01 10:15）" in step.explanation
    assert f"截止北京时间 {county_time(step.due_at)}。" in step.explanation


def test_ladder_one_supervision_per_duty_whichever_cause_comes_first(policy, party_names):
    """Unacknowledged and then missed: the second supervision has the first one's id, so the
    store keeps one, not a pair for the same item."""
    original = pending(SFS, "GO_ON_SCENE")
    missed = ladder_step(policy, original, "missed", MISSED_AT, party_names)
    unanswered = ladder_step(policy, original, "unacknowledged", MISSED_AT, party_names)
    assert missed is not None and unanswered is not None
    assert missed.id == unanswered.id
    assert missed.party == unanswered.party


@pytest.mark.parametrize(
    ("party", "action", "cause", "failed"),
    [
        # The police did not acknowledge the call: the supervisor is told it was the police.
        (PPS, "CALL_POLICE", "unacknowledged", "图克镇派出所未确认告警"),
        # Nobody recorded the call in time: the 司法所 that owes it failed.
        (PPS, "CALL_POLICE", "missed", "图克镇司法所逾期未办"),
        (TCG, "REPORT", "unacknowledged", "图克镇社区矫正突发事件应急处置指挥小组未确认告警"),
        (TCG, "REPORT", "missed", "图克镇司法所逾期未办"),
        ("BJO", "INVESTIGATION_REPORT", "missed", "旗司法局办公室逾期未办"),
    ],
)
def test_ladder_tells_the_supervisor_who_failed_and_how(
    policy, party_names, party, action, cause, failed
):
    step = ladder_step(policy, pending(party, action), cause, MISSED_AT, party_names)
    assert step is not None
    assert step.explanation.startswith(f"依据 R6（预案四(三)）：{failed}：「{action}的事项」")


def test_ladder_a_rung_already_alerted_about_the_incident_gets_no_second_alert(policy, party_names):
    step = ladder_step(policy, pending(SFS, "GO_ON_SCENE"), "missed", MISSED_AT, party_names)
    assert step is not None and step.notify
    alerted_at = MISSED_AT - timedelta(minutes=3)
    joined = grouped_into_alert(policy, step, alerted_at)
    assert not joined.notify
    assert (joined.id, joined.party, joined.due_at) == (step.id, step.party, step.due_at)
    assert joined.explanation.startswith(step.explanation)
    assert f"已于北京时间 {county_time(alerted_at)}收到本事件的督办提醒" in (joined.explanation)


@pytest.mark.parametrize("cause", ["missed", "unacknowledged"])
@pytest.mark.parametrize("action", list(policy_dict()["actions"]))
@pytest.mark.parametrize("party", [SFS, TCG, PPS, "BLO", "BJO", "CEO"])
def test_ladder_never_goes_to_the_party_itself_or_down(policy, party_names, party, action, cause):
    rank = {SFS: 0, TCG: 1, "BLO": 2}
    step = ladder_step(policy, pending(party, action), cause, MISSED_AT, party_names)
    if step is None:
        return
    assert step.party != party
    if party in rank:
        assert rank[step.party] > rank[party]


def test_ladder_climbs_sfs_tcg_blo_and_stops(policy, party_names):
    view = pending(SFS, "START_FIRST_RESPONSE")
    climbed = []
    while (step := ladder_step(policy, view, "missed", MISSED_AT, party_names)) is not None:
        climbed.append(step.party)
        view = view_of(step)
        assert len(climbed) <= 3
    assert climbed == [TCG, "BLO"]


@pytest.mark.parametrize(
    ("status", "met_after_due", "outcome"),
    [
        ("PENDING", False, "MET"),
        ("PENDING", True, "MET_LATE"),
        ("MISSED", True, "MET_LATE"),
        # Missed, then done with a time asserted before the due time: still late (R10).
        ("MISSED", False, "MET_LATE"),
    ],
)
def test_R10_work_done_after_a_duty_was_missed_meets_it_late(status, met_after_due, outcome):
    due = REPORTED_AT + QUARTER
    met_at = due + (timedelta(minutes=1) if met_after_due else -timedelta(minutes=1))
    assert met_status(status, met_at, due) == outcome


@pytest.mark.parametrize("action", list(policy_dict()["actions"]))
def test_R10_a_missed_duty_may_still_be_met_late_unless_it_recurs(policy, action):
    """A missed R9 follow-up stays missed: the next one is due already, and today's 续报 does
    not make up for yesterday's. Every other missed duty, done late, is R10 instead of R11."""
    assert may_still_be_met(policy, action, "PENDING")
    recurs = policy.actions[action].recurs is not None
    assert may_still_be_met(policy, action, "MISSED") is not recurs
    for settled in ("MET", "MET_LATE", "WAIVED"):
        assert not may_still_be_met(policy, action, settled)


def uid(n: int) -> UUID:
    return UUID(int=n)


def test_late_work_stands_down_every_supervision_it_caused_rung_after_rung():
    """R1 missed → TCG supervises; that missed too → BLO supervises. R1 done late: both
    supervisions trace back to it; another duty's supervision does not."""
    r1, tcg, blo, other, others_supervisor, recurring = (uid(n) for n in range(1, 7))
    escalations = [
        (r1, None),
        (tcg, r1),
        (blo, tcg),
        (other, None),
        (others_supervisor, other),
        (recurring, None),
    ]
    assert caused_by(r1, escalations) == {tcg, blo}
    assert caused_by(tcg, escalations) == {blo}
    assert caused_by(blo, escalations) == set()
    assert caused_by(other, escalations) == {others_supervisor}


# --- how obligations end ----------------------------------------------------------------------


# The party each action of the policy falls on in these cases (the owner may differ).
DUTY_PARTY = {
    "REPORT": TCG,
    "ACTIVATE_PLAN": TCG,
    "SUPERVISE": TCG,
    "CALL_POLICE": PPS,
    "WRITTEN_NOTICE": PPS,
    "CONTACT_DEPARTMENTS": "BLO",
    "INVESTIGATION_REPORT": "BJO",
    "NOTIFY_PROCURATORATE": "PRO",
    "NOTIFY_DECIDING_AUTHORITY": "DEC:乌审旗人民法院",
}


def duty(action: str, party: str | None = None) -> StandingDuty:
    party = party or DUTY_PARTY.get(action, SFS)
    return StandingDuty(uid(99), "R0", party, action, "PENDING", False)


def owned(policy: Policy, action: str) -> str:
    """The owner of the action's duty in these cases: whose record meets it."""
    return owner_of(policy, action, duty(action).party, TUKE)


@pytest.mark.parametrize(
    ("obligation", "recorded", "met"),
    [
        ("START_FIRST_RESPONSE", ActionCode.FIRST_RESPONSE_STARTED, True),
        ("START_FIRST_RESPONSE", ActionCode.ON_SCENE, True),
        ("START_FIRST_RESPONSE", ActionCode.SEARCH_STARTED, True),
        ("START_FIRST_RESPONSE", ActionCode.CONTROLLED, True),
        ("START_FIRST_RESPONSE", ActionCode.REPORTED, False),
        ("CALL_POLICE", ActionCode.POLICE_CALLED, True),
        ("CALL_POLICE", ActionCode.REPORTED, False),
        ("REPORT", ActionCode.POLICE_CALLED, False),
        ("ACTIVATE_PLAN", ActionCode.PLAN_ACTIVATED, True),
        ("ORGANISE_SEARCH", ActionCode.SEARCH_STARTED, True),
        ("ORGANISE_SEARCH", ActionCode.FOUND, True),
        ("ORGANISE_SEARCH", ActionCode.SEARCH_FAILED, False),
        ("WRITTEN_NOTICE", ActionCode.WRITTEN_NOTICE_SENT, True),
        ("ASSIST_POLICE_SEARCH", ActionCode.FOUND, True),
        ("ASSIST_POLICE_SEARCH", ActionCode.SEARCH_STARTED, True),
        ("COUNSEL", ActionCode.COUNSELLING_DONE, True),
        ("KEY_MONITORING", ActionCode.KEY_MONITORING, True),
        ("SUGGEST_KEY_MONITORING", ActionCode.KEY_MONITORING, True),
        ("GO_ON_SCENE", ActionCode.ON_SCENE, True),
        ("GO_ON_SCENE", ActionCode.FIRST_RESPONSE_STARTED, False),
        ("FULL_WRITTEN_REPORT", ActionCode.REPORTED, False),
        ("JOIN_RELIEF", ActionCode.RELIEF_JOINED, True),
        ("CONTACT_DEPARTMENTS", ActionCode.DEPARTMENTS_CONTACTED, True),
        ("FOLLOW_UP_REPORT", ActionCode.REPORTED, False),
        ("INVESTIGATION_REPORT", ActionCode.INVESTIGATION_REPORT_FILED, True),
        ("SUPERVISE", ActionCode.REPORTED, False),
        ("NOTIFY_PROCURATORATE", ActionCode.PRO_NOTIFIED, True),
        ("NOTIFY_PROCURATORATE", ActionCode.DEC_NOTIFIED, False),
        ("NOTIFY_DECIDING_AUTHORITY", ActionCode.DEC_NOTIFIED, True),
    ],
)
def test_is_met_by_its_owners_recorded_action(policy, obligation, recorded, met):
    evidence = Evidence("action", recorded, party=owned(policy, obligation))
    assert is_met_by(policy, duty(obligation), evidence, TUKE) is met


@pytest.mark.parametrize("action", list(policy_dict()["actions"]))
def test_ownership_another_partys_action_meets_nothing(policy, action):
    """RULES.md "How rules apply": a duty is met only by its owner's recorded action; the same
    action recorded by anyone else (the police's FOUND, a command group's CONTROLLED) is kept on
    the incident and meets nobody else's duty."""
    owner = owned(policy, action)
    for other in (SFS, TCG, PPS, "BLO", "BJO"):
        if other == owner:
            continue
        for code in policy.actions[action].met_by:
            evidence = Evidence("action", code, party=other, to=duty(action).party)
            assert not is_met_by(policy, duty(action), evidence, TUKE), (action, other, code)


def test_ownership_reported_meets_only_the_report_to_whom_it_names(policy):
    """One REPORTED no longer meets both the TCG's and the BLO's report: it names whom."""
    to_tcg = Evidence("action", ActionCode.REPORTED, party=SFS, to=TCG)
    assert is_met_by(policy, duty("REPORT", TCG), to_tcg, TUKE)
    assert not is_met_by(policy, duty("REPORT", "BLO"), to_tcg, TUKE)
    to_blo = Evidence("action", ActionCode.REPORTED, party=SFS, to="BLO")
    assert is_met_by(policy, duty("REPORT", "BLO"), to_blo, TUKE)
    unnamed = Evidence("action", ActionCode.REPORTED, party=SFS)
    assert not is_met_by(policy, duty("REPORT", TCG), unnamed, TUKE)


def test_ownership_a_sfs_recording_plan_activated_meets_nothing_of_the_tcg(policy):
    by_sfs = Evidence("action", ActionCode.PLAN_ACTIVATED, party=SFS)
    assert not is_met_by(policy, duty("ACTIVATE_PLAN"), by_sfs, TUKE)
    by_tcg = Evidence("action", ActionCode.PLAN_ACTIVATED, party=TCG)
    assert is_met_by(policy, duty("ACTIVATE_PLAN"), by_tcg, TUKE)


@pytest.mark.parametrize(
    "action",
    ["REPORT", "WRITTEN_NOTICE", "CALL_POLICE", "SUPERVISE", "NOTIFY_PROCURATORATE"],
)
def test_informing_is_met_by_the_recipients_acknowledgement(policy, action):
    assert is_met_by(policy, duty(action), Evidence("ack"), TUKE) is True


@pytest.mark.parametrize(
    "action",
    [
        "START_FIRST_RESPONSE",
        "GO_ON_SCENE",
        "FULL_WRITTEN_REPORT",
        "COMPLETE_REPORT",
        "ACTIVATE_PLAN",
        "CONTACT_DEPARTMENTS",
        "INVESTIGATION_REPORT",
    ],
)
def test_acting_an_acknowledgement_informs_but_never_acts(policy, action):
    """An acknowledgement proves the alert arrived; it never activates a plan or goes on scene."""
    assert is_met_by(policy, duty(action), Evidence("ack"), TUKE) is False


@pytest.mark.parametrize(
    ("action", "incomplete", "complete"),
    [
        ("FULL_WRITTEN_REPORT", False, True),  # states facts and leaves no R7 field out
        ("FOLLOW_UP_REPORT", True, True),  # ANY report
        ("COMPLETE_REPORT", False, True),  # only one that leaves no R7 field out
        ("REPORT", False, False),
        ("START_FIRST_RESPONSE", False, False),
    ],
)
def test_is_met_by_a_filed_report(policy, action, incomplete, complete):
    stating = {"report_states_facts": True, "party": SFS}
    assert is_met_by(
        policy, duty(action), Evidence("report", report_complete=False, **stating), TUKE
    ) is (incomplete)
    assert (
        is_met_by(policy, duty(action), Evidence("report", report_complete=True, **stating), TUKE)
        is complete
    )


def test_R9_a_report_filed_by_another_party_is_no_follow_up_of_the_sfs(policy):
    by_platform = Evidence("report", party="PLATFORM", report_complete=True)
    assert not is_met_by(policy, duty("FOLLOW_UP_REPORT"), by_platform, TUKE)


def test_R6_a_one_line_follow_up_stating_no_facts_is_no_written_report(policy):
    complete = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    one_line = report_evidence(policy, complete, changes={}, party=SFS)
    assert one_line.report_complete and not one_line.report_states_facts
    assert not is_met_by(policy, duty("FULL_WRITTEN_REPORT"), one_line, TUKE)
    assert is_met_by(policy, duty("FOLLOW_UP_REPORT"), one_line, TUKE)  # R9: one is filed
    written = report_evidence(
        policy, complete, changes={"summary": "对象已被控制，无人受伤"}, party=SFS
    )
    assert is_met_by(policy, duty("FULL_WRITTEN_REPORT"), written, TUKE)
    gaps = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS, complete=False)
    assert not is_met_by(
        policy,
        duty("FULL_WRITTEN_REPORT"),
        report_evidence(policy, gaps, {"summary": "x"}, party=SFS),
        TUKE,
    )


@pytest.mark.parametrize(
    ("action", "recorded", "waived"),
    [
        ("ORGANISE_SEARCH", ActionCode.FOUND, True),
        ("ORGANISE_SEARCH", ActionCode.SEARCH_FAILED, False),
        ("ASSIST_POLICE_SEARCH", ActionCode.FOUND, True),
        ("ASSIST_POLICE_SEARCH", ActionCode.CLOSED, True),
        ("FOLLOW_UP_REPORT", ActionCode.CLOSED, True),
        ("FOLLOW_UP_REPORT", ActionCode.FOUND, False),
        ("REPORT", ActionCode.CLOSED, False),
        ("INVESTIGATION_REPORT", ActionCode.CLOSED, False),
    ],
)
def test_is_waived_by(policy, action, recorded, waived):
    assert is_waived_by(policy, action, recorded) is waived


# --- the policy file --------------------------------------------------------------------------


def test_real_policy_loads_with_its_named_deadlines_and_rules(policy):
    assert policy.version
    assert {name: d.duration for name, d in policy.deadlines.items()} == {
        "IMMEDIATE": QUARTER,
        "PROMPT": HOUR,
        "WRITTEN": TWO_HOURS,
        "SEARCH_WINDOW": DAY,
        "FOLLOW_UP": DAY,
        "ACK": timedelta(minutes=10),
        "INVESTIGATION": WEEK,
    }
    assert [rule.id for rule in policy.rules] == [
        "R1",
        "R2",
        "R3",
        "R4",
        "R5",
        "R6",
        "R7",
        "R8",
        "R9",
        "R18",
        "R19",
        "R14",
        "R17",
    ]
    assert {rule.id for rule in policy.rules if rule.once} == {"R2", "R4", "R14"}
    assert policy.ladder.steps == {"SFS": "TCG", "TCG": "BLO", "BJO": "BLO"}
    # Who may record on an owner's behalf is one rung up this same ladder.
    assert policy.ladder.steps == {str(k): str(v) for k, v in ON_BEHALF_OF.items()}
    assert (policy.omitted_after, policy.quiet_after) == (WEEK, WEEK)
    assert (policy.ladder.action, policy.ladder.deadline) == ("SUPERVISE", "IMMEDIATE")


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_overrides_file_moves_due_times(tmp_path, party_names):
    overrides = write_yaml(
        tmp_path / "overrides.yaml",
        {"deadlines": {"IMMEDIATE": {"duration": "PT5S", "plan_word": "立即"}}},
    )
    policy = Policy.load(POLICY_FILE, overrides)
    assert policy.deadlines["IMMEDIATE"].duration == timedelta(seconds=5)
    assert policy.deadlines["PROMPT"].duration == HOUR  # untouched deadlines stay
    decision = evaluate(
        policy, situation(make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)), trigger(), party_names
    )
    immediate = [s for s in decision.obligations if s.deadline_name == "IMMEDIATE"]
    assert len(immediate) == 5
    assert {s.due_at for s in immediate} == {REPORTED_AT + timedelta(seconds=5)}
    assert "须在5秒内（立即）" in immediate[0].explanation
    written = next(s for s in decision.obligations if s.deadline_name == "WRITTEN")
    assert written.due_at == REPORTED_AT + TWO_HOURS


def test_overrides_merge_mappings_and_replace_lists(tmp_path, policy):
    overrides = write_yaml(
        tmp_path / "overrides.yaml",
        {
            "version": "site-1",
            "actions": {"REPORT": {"met_by": ["PLAN_ACTIVATED"]}},
            "ladder": {"deadline": "PROMPT"},
        },
    )
    merged = Policy.load(POLICY_FILE, overrides)
    assert merged.version == "site-1"
    report = merged.actions["REPORT"]
    assert report.met_by == (ActionCode.PLAN_ACTIVATED,)  # the list is replaced ...
    assert (report.text, report.owner, report.notify, report.met_by_ack) == (
        policy.actions["REPORT"].text,
        "SFS",
        True,
        True,
    )  # ... the rest of the mapping kept
    assert merged.ladder.steps == policy.ladder.steps
    assert merged.ladder.deadline == "PROMPT"
    assert merged.rules == policy.rules


def test_overrides_replace_the_rules_list_wholesale(tmp_path, party_names):
    only_r1 = [rule for rule in policy_dict()["rules"] if rule["id"] == "R1"]
    policy = Policy.load(POLICY_FILE, write_yaml(tmp_path / "o.yaml", {"rules": only_r1}))
    assert [rule.id for rule in policy.rules] == ["R1"]
    decision = evaluate(
        policy, situation(make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)), trigger(), party_names
    )
    assert decision.fired_rules == ("R1",)


def test_empty_overrides_file_changes_nothing(tmp_path, policy):
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert Policy.load(POLICY_FILE, empty) == policy


def test_overrides_that_break_a_reference_are_refused(tmp_path):
    overrides = write_yaml(tmp_path / "o.yaml", {"ladder": {"action": "PRAY"}})
    with pytest.raises(ValidationError, match="ladder names unknown action PRAY"):
        Policy.load(POLICY_FILE, overrides)


def test_merge_is_recursive_replaces_lists_and_leaves_the_base_alone():
    base = {"a": {"x": 1, "y": [1, 2], "z": {"k": "v"}}, "b": [1], "c": 3}
    snapshot = copy.deepcopy(base)
    merged = merge(base, {"a": {"y": [9], "z": {"n": 0}}, "b": [], "d": 4})
    assert merged == {
        "a": {"x": 1, "y": [9], "z": {"k": "v", "n": 0}},
        "b": [],
        "c": 3,
        "d": 4,
    }
    assert base == snapshot
    # A scalar may replace a mapping and vice versa.
    assert merge({"a": {"x": 1}}, {"a": 2}) == {"a": 2}
    assert merge({"a": 2}, {"a": {"x": 1}}) == {"a": {"x": 1}}


def rule_of(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(rule for rule in data["rules"] if rule["id"] == rule_id)


def invalid(mutate) -> dict[str, Any]:
    data = policy_dict()
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: rule_of(d, "R6")["then"][0].update(action="SEND_FLOWERS"),
            "R6 names unknown action SEND_FLOWERS",
        ),
        (
            lambda d: rule_of(d, "R1")["then"][0].update(deadline="SOMEDAY"),
            "R1 names unknown deadline SOMEDAY",
        ),
        (
            lambda d: rule_of(d, "R4").update(trigger=["action:SEARCH_FAILED", "closed"]),
            "R4 has unknown trigger 'closed'",
        ),
        (
            lambda d: rule_of(d, "R4").update(trigger="timer:POLICE_WINDOW"),
            "R4 waits for unknown timer POLICE_WINDOW",
        ),
        (
            lambda d: rule_of(d, "R2").update(trigger="action:PANICKED"),
            "PANICKED",
        ),
        (
            lambda d: rule_of(d, "R3")["timers"][0].update(after="FOREVER"),
            "R3 timer names unknown deadline FOREVER",
        ),
        (
            lambda d: d["actions"]["FOLLOW_UP_REPORT"].update(recurs="WEEKLY"),
            "action FOLLOW_UP_REPORT recurs after unknown deadline WEEKLY",
        ),
        (
            lambda d: d["ladder"].update(deadline="LATER"),
            "ladder names unknown deadline LATER",
        ),
        (lambda d: rule_of(d, "R1").update(severity="high"), "severity"),
        (lambda d: rule_of(d, "R1")["then"][0].update(party="MAYOR"), "party"),
        (lambda d: rule_of(d, "R5")["when"]["any"][0].update(phase=["SOON"]), "phase"),
        (lambda d: d["drill_requirement"].update(per_year=0), "per_year"),
    ],
)
def test_policy_validation_names_what_is_wrong(mutate, message):
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate(invalid(mutate))


def test_unmodified_policy_dict_validates(policy):
    assert Policy.model_validate(policy_dict()) == policy


def test_R17_earlier_signs_of_another_subject_do_not_count(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.SIGNS)
    someone_else = PriorSigns(EARLIER_INCIDENT, "WS-2025-999", REPORTED_AT - timedelta(days=3))
    decision = evaluate(policy, situation(facts, prior=(someone_else,)), trigger(), party_names)
    assert "R17" not in decision.fired_rules


def test_a_ladder_that_loops_is_refused():
    data = policy_dict()
    data["ladder"]["steps"]["BLO"] = "SFS"
    with pytest.raises(ValidationError, match="loops back"):
        Policy.model_validate(data)


def test_plan_texts_read_as_the_plan_writes_them_without_yaml_folding_spaces(policy):
    for rule in policy.rules:
        assert not re.search(r"\s", rule.plan_text), (rule.id, rule.plan_text)
    (r2,) = [rule for rule in policy.rules if rule.id == "R2"]
    assert "办公室报告,并报请本苏木(镇)" in r2.plan_text


def test_unfolding_keeps_spaces_between_latin_words():
    assert unfold_chinese("报告,\n  并报请 R2 and R4 之后") == "报告,并报请R2 and R4之后"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("IMMEDIATE", "立即（15分钟）"),
        ("PROMPT", "及时（1小时）"),
        ("WRITTEN", "书面报告（2小时）"),
        ("INVESTIGATION", "调查报告（7天）"),
        ("RETIRED_DEADLINE", "RETIRED_DEADLINE"),
    ],
)
def test_deadlines_are_named_in_words_with_the_policys_length(policy, name, words):
    assert deadline_text(policy, name) == words
