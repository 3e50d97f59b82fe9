"""The revised rules on the engine (RULES.md revision of 2026-11-30): R6 widened, R18, R19,
rules that follow every change of the facts, owners of duties, and R9's quiet spells."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import pytest

from services.escalation.rules import (
    Decision,
    Evidence,
    Policy,
    StandingDuty,
    Trigger,
    change_words,
    changes_rules,
    evaluate,
    gone_quiet,
    is_met_by,
    is_waived_by,
    ladder_step,
    owner_of,
    revise,
    update_recipients,
    who_failed,
)
from shared.domain.vocabulary import ActionCode, Category, Phase
from shared.events.models import IncidentFacts, Subject

from .test_rules import (
    PPS,
    REPORTED_AT,
    SFS,
    TCG,
    TUKE,
    make_facts,
    situation,
    trigger,
    view_of,
)

CHANGE = UUID("00000000-0000-4000-8000-0000000000c1")
CHANGED_AT = REPORTED_AT + timedelta(minutes=30)
GALUTU = "150626100"


def standing_of(decision: Decision, status: str = "PENDING") -> list[StandingDuty]:
    """What the first report left on the incident, as re-evaluation sees it."""
    return [
        StandingDuty(spec.id, spec.rule_id, spec.party, spec.action, status, spec.drill)
        for spec in decision.obligations
    ]


def change(words: str = "续报将阶段由「苗头迹象」改为「正在实施」") -> Trigger:
    return Trigger("changed", CHANGED_AT, CHANGE, SFS, words)


def keys(decision: Decision) -> set[tuple[str, str, str]]:
    return {(spec.rule_id, spec.party, spec.action) for spec in decision.obligations}


def first_report(policy: Policy, facts: IncidentFacts, party_names) -> Decision:
    return evaluate(policy, situation(facts), trigger(), party_names)


# --- R6 as revised ----------------------------------------------------------------------------


@pytest.mark.parametrize("category", [Category.VIOLENCE, Category.MASS_INCIDENT])
def test_R6_violence_or_mass_incident_that_already_happened_calls_the_police(
    policy, party_names, category
):
    decision = first_report(policy, make_facts(category, Phase.OCCURRED), party_names)
    assert ("R6", PPS, "CALL_POLICE") in keys(decision)
    assert ("R6", TCG, "REPORT") in keys(decision)


@pytest.mark.parametrize("category", [Category.DISRUPTION, Category.OTHER, Category.ABSCONDED])
def test_R6_offence_on_any_category_calls_the_police(policy, party_names, category):
    facts = make_facts(category, Phase.OCCURRED).model_copy(update={"offence": True})
    decision = first_report(policy, facts, party_names)
    police = [spec for spec in decision.obligations if spec.action == "CALL_POLICE"]
    assert [spec.party for spec in police] == [PPS]
    assert "涉嫌违法犯罪" in police[0].explanation
    without = first_report(policy, make_facts(category, Phase.OCCURRED), party_names)
    assert "R6" not in without.fired_rules


# --- R18 --------------------------------------------------------------------------------------


def test_R18_a_death_obliges_the_blo_to_notify_procuratorate_and_each_deciding_authority(
    policy, party_names
):
    facts = make_facts(Category.ABNORMAL_DEATH, Phase.OCCURRED, subjects=("A", "B", "C"))
    facts = facts.model_copy(
        update={
            "subjects": (
                Subject(id="A", name="王某", deciding_authority="乌审旗人民法院"),
                Subject(id="B", name="李某", deciding_authority="鄂尔多斯市中级人民法院"),
                Subject(id="C", name="张某", deciding_authority="乌审旗人民法院"),
            )
        }
    )
    decision = first_report(policy, facts, party_names)
    r18 = [spec for spec in decision.obligations if spec.rule_id == "R18"]
    assert {(spec.party, spec.action, spec.deadline_name) for spec in r18} == {
        ("PRO", "NOTIFY_PROCURATORATE", "PROMPT"),
        ("DEC:乌审旗人民法院", "NOTIFY_DECIDING_AUTHORITY", "PROMPT"),
        ("DEC:鄂尔多斯市中级人民法院", "NOTIFY_DECIDING_AUTHORITY", "PROMPT"),
    }
    assert {spec.owner for spec in r18} == {"BLO"}
    assert all(spec.notify for spec in r18)
    assert all("社区矫正法第五十一条" in spec.explanation for spec in r18)
    assert "R6" in decision.fired_rules  # the police are told of a death too


def test_R18_without_a_named_deciding_authority_the_blo_must_find_and_notify_it(
    policy, party_names
):
    decision = first_report(
        policy, make_facts(Category.ABNORMAL_DEATH, Phase.OCCURRED), party_names
    )
    deciding = [s for s in decision.obligations if s.action == "NOTIFY_DECIDING_AUTHORITY"]
    assert [(spec.party, spec.owner) for spec in deciding] == [("BLO", "BLO")]


def test_R18_a_missed_notice_to_the_procuratorate_is_the_blos_and_has_no_rung_above(
    policy, party_names
):
    decision = first_report(
        policy, make_facts(Category.ABNORMAL_DEATH, Phase.OCCURRED), party_names
    )
    pro = next(spec for spec in decision.obligations if spec.party == "PRO")
    view = view_of(pro)
    assert who_failed(policy, view, "missed") == "BLO"
    assert ladder_step(policy, view, "missed", CHANGED_AT, party_names) is None


# --- rules follow the current facts -----------------------------------------------------------


def test_changes_of_category_phase_subjects_township_offence_or_drill_rerun_the_rules():
    for name in ("category", "phase", "subjects", "township_code", "offence", "drill"):
        assert changes_rules({name: "x"})
    assert not changes_rules({"summary": "x", "location": "y", "measures_taken": "z"})


def test_change_words_say_what_changed_in_the_plans_words():
    words = change_words("FOLLOW_UP", {"phase": "IN_PROGRESS"}, {"phase": "SIGNS"})
    assert words == "续报将事态阶段由「苗头迹象」改为「正在实施」"
    moved = change_words(
        "CORRECTION",
        {"township_code": GALUTU, "township_name": "嘎鲁图镇"},
        {"township_code": TUKE, "township_name": "图克镇"},
    )
    assert moved == "更正将苏木(镇)由「图克镇」改为「嘎鲁图镇」"
    assert change_words("FOLLOW_UP", {"summary": "x"}, {}) == "续报"


def test_R20_words_of_a_linked_report_a_merge_and_its_undoing():
    linked = change_words("LINKED", {"phase": "IN_PROGRESS"}, {"phase": "SIGNS"})
    assert linked == "同一事件的另一报告（R20）将事态阶段由「苗头迹象」改为「正在实施」"
    merged = change_words("MERGED", {"category": "VIOLENCE"}, {"category": "OTHER"})
    assert merged == (
        "事件合并（R20）将种类由「其他突发事件」改为「暴力犯罪或以要挟为目的的自杀、自焚、自残」"
    )
    assert change_words("UNLINKED", {}, {}) == "撤销关联（R20）"


def test_R6_signs_then_in_progress_by_follow_up_calls_the_police(policy, party_names):
    signs = make_facts(Category.VIOLENCE, Phase.SIGNS)
    first = first_report(policy, signs, party_names)
    assert "R6" not in first.fired_rules
    now = replace(situation(signs.model_copy(update={"phase": Phase.IN_PROGRESS})))
    revision = revise(policy, now, change(), standing_of(first), frozenset(), party_names)
    created = keys(revision.decision)
    assert ("R6", PPS, "CALL_POLICE") in created
    police = next(s for s in revision.decision.obligations if s.action == "CALL_POLICE")
    assert police.due_at == CHANGED_AT + timedelta(minutes=15)  # due from the change
    assert police.trigger == "changed"
    assert police.explanation.startswith("依据 R6（预案四(三)）：续报将阶段由「苗头迹象」改为")
    # R1 and R9 still apply and stand: not created again
    assert not {key for key in created if key[0] in ("R1", "R9")}
    # R5's duties (signs) no longer apply: each pending one is waived, with the change as reason
    waived = dict(revision.waive)
    r5 = [d for d in standing_of(first) if d.rule_id == "R5"]
    assert r5 and {d.id for d in r5} == set(waived)
    assert all("本项（R5）已不再适用" in reason for reason in waived.values())
    assert all(reason.startswith("续报将阶段由") for reason in waived.values())


def test_R6_corrected_back_to_signs_waives_the_police_duty_with_its_reason(policy, party_names):
    in_progress = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    first = first_report(policy, in_progress, party_names)
    back = situation(in_progress.model_copy(update={"phase": Phase.SIGNS}))
    words = "更正将事态阶段由「正在实施」改为「苗头迹象」"
    revision = revise(policy, back, change(words), standing_of(first), frozenset(), party_names)
    police = next(d for d in standing_of(first) if d.action == "CALL_POLICE")
    assert dict(revision.waive)[police.id] == f"{words}，本项（R6）已不再适用"
    assert ("R5", TCG, "REPORT") in keys(revision.decision)


def test_met_duties_of_a_rule_that_no_longer_applies_stay_met(policy, party_names):
    in_progress = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    first = first_report(policy, in_progress, party_names)
    back = situation(in_progress.model_copy(update={"phase": Phase.SIGNS}))
    revision = revise(policy, back, change(), standing_of(first, "MET"), frozenset(), party_names)
    assert revision.waive == ()


def test_R6_R18_absconded_corrected_to_abnormal_death(policy, party_names):
    absconded = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    first = first_report(policy, absconded, party_names)
    assert [t.name for t in first.timers] == ["SEARCH_WINDOW"]
    death = situation(absconded.model_copy(update={"category": Category.ABNORMAL_DEATH}))
    revision = revise(
        policy,
        death,
        change("更正将种类由「脱离监督管理」改为「非正常死亡」"),
        standing_of(first),
        frozenset({"SEARCH_WINDOW"}),
        party_names,
    )
    created = keys(revision.decision)
    assert ("R6", PPS, "CALL_POLICE") in created
    assert ("R18", "PRO", "NOTIFY_PROCURATORATE") in created
    assert set(revision.decision.fired_rules) >= {"R6", "R18"}
    search = next(d for d in standing_of(first) if d.action == "ORGANISE_SEARCH")
    assert search.id in dict(revision.waive)
    assert revision.cancel_timers == ("SEARCH_WINDOW",)


def test_a_rule_whose_conditions_hold_again_starts_its_timer_once(policy, party_names):
    other = make_facts(Category.OTHER, Phase.OCCURRED)
    first = first_report(policy, other, party_names)
    absconded = situation(other.model_copy(update={"category": Category.ABSCONDED}))
    revision = revise(policy, absconded, change(), standing_of(first), frozenset(), party_names)
    assert [t.name for t in revision.decision.timers] == ["SEARCH_WINDOW"]
    again = revise(
        policy, absconded, change(), standing_of(first), frozenset({"SEARCH_WINDOW"}), party_names
    )
    assert again.decision.timers == ()


def test_R4_after_it_fired_falls_away_when_the_incident_is_no_absconding(policy, party_names):
    absconded = make_facts(Category.ABSCONDED, Phase.OCCURRED)
    fired = frozenset({"R1", "R3", "R9", "R4"})
    search_failed = evaluate(
        policy,
        situation(absconded, fired=frozenset({"R1", "R3", "R9"})),
        trigger("action:SEARCH_FAILED"),
        party_names,
    )
    assert "R4" in search_failed.fired_rules
    violence = situation(absconded.model_copy(update={"category": Category.VIOLENCE}), fired=fired)
    revision = revise(
        policy, violence, change(), standing_of(search_failed), frozenset(), party_names
    )
    assert {d.rule_id for d in standing_of(search_failed)} == {"R4"}
    assert len(revision.waive) == len(search_failed.obligations)


def test_township_correction_moves_the_duties_to_the_new_townships_parties(policy, party_names):
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    first = first_report(policy, facts, party_names)
    moved = situation(
        facts.model_copy(update={"township_code": GALUTU, "township_name": "嘎鲁图镇"})
    )
    revision = revise(policy, moved, change(), standing_of(first), frozenset(), party_names)
    assert ("R6", f"PPS:{GALUTU}", "CALL_POLICE") in keys(revision.decision)
    assert ("R1", f"SFS:{GALUTU}", "START_FIRST_RESPONSE") in keys(revision.decision)
    waived_parties = {d.party for d in standing_of(first) if d.id in dict(revision.waive)}
    assert waived_parties == {SFS, TCG, PPS}  # the BLO's report stands: it is the same BLO
    assert ("R6", "BLO", "REPORT") not in keys(revision.decision)


def test_R16_a_drill_corrected_to_real_runs_every_rule_again_for_real(policy, party_names):
    drill = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS, drill=True)
    first = first_report(policy, drill, party_names)
    real = situation(drill.model_copy(update={"drill": False}))
    revision = revise(
        policy,
        real,
        change("更正将演练标记由「是」改为「否」"),
        standing_of(first),
        frozenset(),
        party_names,
    )
    assert keys(revision.decision) == keys(first)
    assert not any(spec.drill for spec in revision.decision.obligations)
    assert set(dict(revision.waive)) == {spec.id for spec in first.obligations}
    assert all("按真实事件重新适用规则" in why for why in dict(revision.waive).values())


def test_supervisions_are_not_revised_directly(policy, party_names):
    """A supervision stands down with the duty it supervises, never on its own."""
    facts = make_facts(Category.VIOLENCE, Phase.IN_PROGRESS)
    first = first_report(policy, facts, party_names)
    supervision = StandingDuty(UUID(int=5), "R6", TCG, "SUPERVISE", "PENDING", False, UUID(int=6))
    back = situation(facts.model_copy(update={"phase": Phase.SIGNS}))
    revision = revise(
        policy, back, change(), [*standing_of(first), supervision], frozenset(), party_names
    )
    assert supervision.id not in dict(revision.waive)


# --- owners -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "party", "owner"),
    [
        ("REPORT", TCG, SFS),
        ("CALL_POLICE", PPS, SFS),
        ("WRITTEN_NOTICE", PPS, SFS),
        ("ACTIVATE_PLAN", TCG, TCG),
        ("CONTACT_DEPARTMENTS", "BLO", "BLO"),
        ("NOTIFY_PROCURATORATE", "PRO", "BLO"),
        ("START_FIRST_RESPONSE", SFS, SFS),
    ],
)
def test_every_duty_has_an_owner(policy, action, party, owner):
    assert owner_of(policy, action, party, TUKE) == owner


# --- R19 --------------------------------------------------------------------------------------


def test_R19_everybody_already_alerted_is_told_but_not_who_changed_it(policy):
    alerted = {SFS, TCG, "BLO", PPS}
    assert update_recipients(policy, "report_filed", alerted, SFS, SFS, TUKE) == (
        "BLO",
        PPS,
        TCG,
    )
    for action in ("FOUND", "CONTROLLED", "CLOSED"):
        assert update_recipients(policy, f"action:{action}", alerted, SFS, TCG, TUKE) == (
            "BLO",
            PPS,
            SFS,
        )
    assert update_recipients(policy, "action:ON_SCENE", alerted, SFS, SFS, TUKE) is None


def test_R19_the_police_learn_of_a_find_or_closure_of_what_they_reported(policy):
    assert update_recipients(policy, "action:FOUND", {SFS}, "PLATFORM", SFS, TUKE) == (PPS,)
    assert update_recipients(policy, "action:CLOSED", set(), PPS, "BLO", TUKE) == (PPS,)
    assert update_recipients(policy, "action:CONTROLLED", set(), PPS, SFS, TUKE) == ()
    assert update_recipients(policy, "action:FOUND", {SFS}, SFS, SFS, TUKE) == ()


# --- R9: quiet spells -------------------------------------------------------------------------


def test_R9_an_incident_is_quiet_after_a_week_with_nothing_new(policy):
    assert gone_quiet(policy, REPORTED_AT, REPORTED_AT + timedelta(days=7))
    assert not gone_quiet(policy, REPORTED_AT, REPORTED_AT + timedelta(days=6, hours=23))


# --- R4: the police lead the search -----------------------------------------------------------


def test_R4_once_the_police_take_over_a_search_its_length_is_no_omission_of_the_sfs(policy):
    """The 司法所 organises the search until the police take it over (SEARCH_TAKEN_OVER waives
    what is still pending); from then on its duty is to assist, met once it records joining the
    search, however long the search lasts. The police's own FOUND meets nothing of the 司法所:
    it only makes the search unnecessary."""
    assert is_waived_by(policy, "ORGANISE_SEARCH", ActionCode.SEARCH_TAKEN_OVER)
    assist = StandingDuty(UUID(int=7), "R4", SFS, "ASSIST_POLICE_SEARCH", "PENDING", False)
    joined = Evidence("action", ActionCode.SEARCH_STARTED, party=SFS)
    assert is_met_by(policy, assist, joined, TUKE)
    assert policy.actions["ASSIST_POLICE_SEARCH"].recurs is None
    police_found = Evidence("action", ActionCode.FOUND, party=PPS)
    assert not is_met_by(policy, assist, police_found, TUKE)
    assert is_waived_by(policy, "ASSIST_POLICE_SEARCH", ActionCode.FOUND)
