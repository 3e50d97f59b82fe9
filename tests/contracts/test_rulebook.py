"""docs/rules.md is what the policy file says: every rule R1–R20, generated, never hand-kept."""

from __future__ import annotations

import re

import yaml

from services.escalation import rulebook
from services.escalation.rules import Policy
from shared.settings import REPOSITORY_ROOT

POLICY = Policy.load(rulebook.POLICY_FILE)
EVERY_RULE = [f"R{number}" for number in range(1, 21)]


def test_committed_rulebook_matches_the_policy() -> None:
    committed = REPOSITORY_ROOT / rulebook.RULEBOOK_FILE
    assert committed.exists(), f"{rulebook.RULEBOOK_FILE} is missing: {rulebook.REGENERATE}."
    assert committed.read_text(encoding="utf-8") == rulebook.render(POLICY), (
        f"{rulebook.RULEBOOK_FILE} differs from the policy: {rulebook.REGENERATE}."
    )


def test_every_rule_r1_to_r20_is_stated_once() -> None:
    """A rule the engine comes to evaluate moves from `other_rules:` to `rules:`, not to both."""
    assert rulebook.all_rule_ids(POLICY) == EVERY_RULE
    headings = re.findall(r"^### (R\d+) · ", rulebook.render(POLICY), flags=re.MULTILINE)
    assert headings == [rule.id for rule in POLICY.rules] + [r.id for r in POLICY.other_rules]


def test_each_rule_states_its_clause_trigger_duties_deadline_and_who_meets_it() -> None:
    text = rulebook.render(POLICY)
    r6 = text.split("### R6 · 四(三)")[1].split("\n### ")[0]
    assert POLICY.rule("R6").plan_text in r6
    assert "- **When**, any of:" in r6  # several `when.any` conditions, one per line
    assert "category `ABNORMAL_DEATH`" in r6
    assert (
        "| `PPS` 派出所 | `CALL_POLICE`: 接报警：社区矫正对象突发事件 | `IMMEDIATE` (15 min) "
        "| `SFS` 司法所, informing `PPS` | `POLICE_CALLED` (已报警); acknowledgement of the alert "
        "by `PPS` | `PPS` is alerted |"
    ) in r6
    r9 = text.split("### R9 · 四")[1].split("\n### ")[0]
    assert "any follow-up or correction filed" in r9  # met_by_report
    assert "due again `FOLLOW_UP` (24 h)" in r9


def test_rulebook_follows_policy_changes_to_come() -> None:
    """Conditions, parties, owners and ways of meeting a duty the policy does not use yet are
    still written out, so a policy change cannot silently drop part of a rule."""
    data = yaml.safe_load(rulebook.POLICY_FILE.read_text(encoding="utf-8"))
    data["actions"]["NOTIFY_DEC"] = {
        "text": "接通知：社区矫正对象死亡",
        "owner": "SFS",
        "notify": True,
        "met_by": ["DEC_NOTIFIED"],
        "met_by_ack": True,
    }
    data["rules"].append(
        {
            "id": "R99",
            "plan_section": "社区矫正法 Art. 51",
            "plan_text": "社区矫正对象死亡的，应当及时通知社区矫正决定机关。",
            "trigger": ["reported", "action:FOUND"],
            "when": {"any": [{"category": ["ABNORMAL_DEATH"]}, {"drill": False}]},
            "then": [{"party": "DEC", "action": "NOTIFY_DEC", "deadline": "PROMPT"}],
        }
    )
    text = rulebook.render(Policy.model_validate(data))
    r99 = text.split("### R99 · ")[1]
    assert "an incident is reported, or its facts change or `FOUND` (已找到) is recorded" in r99
    assert "  - category `ABNORMAL_DEATH`\n  - not a drill" in r99
    assert "| `DEC` 决定机关 | `NOTIFY_DEC`: 接通知：社区矫正对象死亡 | `PROMPT` (1 h) " in r99
    assert "`SFS` 司法所, informing `DEC`" in r99
    assert "`DEC_NOTIFIED` (已通知决定机关); acknowledgement of the alert by `DEC`" in r99


def test_rulebook_speaks_only_of_the_project() -> None:
    text = rulebook.render(POLICY)
    assert "RULES.md" not in text and "../" not in text and "plan-zh" not in text
