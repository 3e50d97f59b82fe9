"""The rules engine over the real policy file (services/escalation/policy.yaml)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from services.escalation.rules import ObligationSpec, Policy, is_met_by, obligations_for_report
from shared.domain import ActionCode, Category, Phase
from shared.events.models import IncidentFacts, Subject

from .conftest import POLICY_FILE

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPORTED_AT = datetime(2025, 3, 1, 10, 0, tzinfo=SHANGHAI)
TUKE = "150626102"


def facts(category: Category, phase: Phase, *, drill: bool = False) -> IncidentFacts:
    return IncidentFacts(
        category=category,
        phase=phase,
        township_code=TUKE,
        township_name="图克镇",
        subjects=(Subject(id="WS-2025-001", name="王某某"),),
        location="图克镇某村",
        drill=drill,
    )


def duties(specs: list[ObligationSpec]) -> list[tuple[str, str, str, str, datetime]]:
    return [(s.rule_id, s.party, s.action, s.deadline_name, s.due_at) for s in specs]


def policy_dict() -> dict:
    return yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


# --- obligations_for_report -----------------------------------------------------------------


def test_r1_and_r6_for_violence_in_progress_in_tuke(policy, party_names):
    """R1: SFS starts first response IMMEDIATE; R6 (四(三)): police, TCG, BLO, on scene, written."""
    specs = obligations_for_report(
        policy, facts(Category.VIOLENCE, Phase.IN_PROGRESS), REPORTED_AT, party_names
    )
    quarter = REPORTED_AT + timedelta(minutes=15)
    assert duties(specs) == [
        ("R1", f"SFS:{TUKE}", "START_FIRST_RESPONSE", "IMMEDIATE", quarter),
        ("R6", f"PPS:{TUKE}", "CALL_POLICE", "IMMEDIATE", quarter),
        ("R6", f"TCG:{TUKE}", "REPORT", "IMMEDIATE", quarter),
        ("R6", "BLO", "REPORT", "IMMEDIATE", quarter),
        ("R6", f"SFS:{TUKE}", "GO_ON_SCENE", "IMMEDIATE", quarter),
        ("R6", f"SFS:{TUKE}", "FULL_WRITTEN_REPORT", "WRITTEN", REPORTED_AT + timedelta(hours=2)),
    ]
    assert {s.plan_section for s in specs if s.rule_id == "R6"} == {"四(三)"}
    assert specs[0].plan_section == "四"


@pytest.mark.parametrize(
    "category",
    [Category.VIOLENCE, Category.MASS_INCIDENT, Category.DISRUPTION, Category.OTHER],
)
def test_r6_applies_to_every_in_progress_category_of_the_plan(policy, party_names, category):
    """R6: 正在行凶、闹事、实施自杀、从事违法犯罪活动 — phase IN_PROGRESS."""
    specs = obligations_for_report(
        policy, facts(category, Phase.IN_PROGRESS), REPORTED_AT, party_names
    )
    assert [s.rule_id for s in specs].count("R6") == 5


@pytest.mark.parametrize("phase", list(Phase))
def test_r6_applies_to_abnormal_death_in_any_phase(policy, party_names, phase):
    """R6: 非正常死亡 triggers R6 whatever the phase, e.g. OCCURRED."""
    specs = obligations_for_report(
        policy, facts(Category.ABNORMAL_DEATH, phase), REPORTED_AT, party_names
    )
    assert [s.rule_id for s in specs] == ["R1"] + ["R6"] * 5
    police = next(s for s in specs if s.action == "CALL_POLICE")
    assert police.party == f"PPS:{TUKE}"
    assert "非正常死亡" in police.explanation


@pytest.mark.parametrize(
    ("category", "phase"),
    [
        (Category.VIOLENCE, Phase.SIGNS),
        (Category.VIOLENCE, Phase.OCCURRED),
        (Category.ABSCONDED, Phase.OCCURRED),
        (Category.ABSCONDED, Phase.IN_PROGRESS),
        (Category.DISASTER, Phase.IN_PROGRESS),
    ],
)
def test_only_r1_when_r6_does_not_apply(policy, party_names, category, phase):
    """R1 holds for any incident; R6 needs IN_PROGRESS violence etc. or ABNORMAL_DEATH."""
    specs = obligations_for_report(policy, facts(category, phase), REPORTED_AT, party_names)
    quarter = REPORTED_AT + timedelta(minutes=15)
    assert duties(specs) == [("R1", f"SFS:{TUKE}", "START_FIRST_RESPONSE", "IMMEDIATE", quarter)]


def test_explanations_cite_rule_township_party_and_deadline(policy, party_names):
    specs = obligations_for_report(
        policy, facts(Category.VIOLENCE, Phase.IN_PROGRESS), REPORTED_AT, party_names
    )
    for spec in specs:
        assert spec.explanation.startswith(f"依据 {spec.rule_id}（预案{spec.plan_section}）")
        assert "图克镇" in spec.explanation
        assert spec.deadline_name in spec.explanation
        assert f"截止 {spec.due_at.isoformat(timespec='minutes')}" in spec.explanation
        assert spec.action_text in spec.explanation
    first, police = specs[0], specs[1]
    assert "任何突发事件报告" in first.explanation
    assert "图克镇司法所" in first.explanation
    assert "IMMEDIATE，15分钟" in first.explanation
    assert "截止 2025-03-01T10:15+08:00" in first.explanation
    assert "图克镇派出所" in police.explanation
    assert "阶段「正在实施」(IN_PROGRESS)" in police.explanation
    assert "WRITTEN，2小时" in specs[-1].explanation


def test_explanation_falls_back_to_party_code_without_a_name(policy):
    specs = obligations_for_report(
        policy, facts(Category.ABSCONDED, Phase.OCCURRED), REPORTED_AT, party_names={}
    )
    assert f"；SFS:{TUKE}须在" in specs[0].explanation


def test_notify_flags_follow_the_policy_actions(policy, party_names):
    specs = obligations_for_report(
        policy, facts(Category.VIOLENCE, Phase.IN_PROGRESS), REPORTED_AT, party_names
    )
    for spec in specs:
        assert spec.notify is policy.actions[spec.action].notify
        assert spec.action_text == policy.actions[spec.action].text
    assert {s.action for s in specs if s.notify} == {"CALL_POLICE", "REPORT"}


# --- is_met_by ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obligation", "recorded", "met"),
    [
        ("START_FIRST_RESPONSE", ActionCode.FIRST_RESPONSE_STARTED, True),
        ("START_FIRST_RESPONSE", ActionCode.ON_SCENE, True),
        ("START_FIRST_RESPONSE", ActionCode.CONTROLLED, True),
        ("START_FIRST_RESPONSE", ActionCode.REPORTED, False),
        ("CALL_POLICE", ActionCode.POLICE_CALLED, True),
        ("CALL_POLICE", ActionCode.REPORTED, False),
        ("REPORT", ActionCode.REPORTED, True),
        ("GO_ON_SCENE", ActionCode.ON_SCENE, True),
        ("GO_ON_SCENE", ActionCode.FIRST_RESPONSE_STARTED, False),
        ("FULL_WRITTEN_REPORT", ActionCode.REPORTED, True),
    ],
)
def test_is_met_by(policy, obligation, recorded, met):
    assert is_met_by(policy, obligation, recorded) is met


# --- policy validation and overrides --------------------------------------------------------


def test_real_policy_loads_with_its_named_deadlines(policy):
    assert policy.version == "2025-01-17.1"
    assert {name: d.duration for name, d in policy.deadlines.items()} == {
        "IMMEDIATE": timedelta(minutes=15),
        "PROMPT": timedelta(hours=1),
        "WRITTEN": timedelta(hours=2),
        "SEARCH_WINDOW": timedelta(hours=24),
        "FOLLOW_UP": timedelta(hours=24),
        "ACK": timedelta(minutes=10),
        "INVESTIGATION": timedelta(days=7),
    }
    assert [rule.id for rule in policy.rules] == ["R1", "R6"]


def test_rule_naming_an_unknown_action_fails_validation():
    data = policy_dict()
    data["rules"][1]["then"][0]["action"] = "SEND_FLOWERS"
    with pytest.raises(ValidationError, match="R6 names unknown action SEND_FLOWERS"):
        Policy.model_validate(data)


def test_rule_naming_an_unknown_deadline_fails_validation():
    data = policy_dict()
    data["rules"][0]["then"][0]["deadline"] = "SOMEDAY"
    with pytest.raises(ValidationError, match="R1 names unknown deadline SOMEDAY"):
        Policy.model_validate(data)


def test_policy_rejects_unknown_fields_and_party_kinds():
    data = policy_dict()
    extra = copy.deepcopy(data)
    extra["rules"][0]["severity"] = "high"
    with pytest.raises(ValidationError):
        Policy.model_validate(extra)
    bad_party = copy.deepcopy(data)
    bad_party["rules"][0]["then"][0]["party"] = "MAYOR"
    with pytest.raises(ValidationError):
        Policy.model_validate(bad_party)


def test_deployment_can_override_a_deadline(party_names):
    """Deadlines are defaults of the versioned policy, overridable per deployment."""
    data = policy_dict()
    data["deadlines"]["IMMEDIATE"]["duration"] = "PT5M"
    overridden = Policy.model_validate(data)
    specs = obligations_for_report(
        overridden, facts(Category.VIOLENCE, Phase.IN_PROGRESS), REPORTED_AT, party_names
    )
    immediate = [s for s in specs if s.deadline_name == "IMMEDIATE"]
    assert len(immediate) == 5
    assert {s.due_at for s in immediate} == {REPORTED_AT + timedelta(minutes=5)}
    assert "IMMEDIATE，5分钟" in immediate[0].explanation
    written = next(s for s in specs if s.deadline_name == "WRITTEN")
    assert written.due_at == REPORTED_AT + timedelta(hours=2)
