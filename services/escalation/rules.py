"""The rules engine: the policy file as typed data, and what an incident's facts oblige.

Pure: no I/O. Handlers load the policy once, pass facts in, and store what comes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from shared.domain import (
    CATEGORY_NAMES_ZH,
    PHASE_NAMES_ZH,
    ActionCode,
    Category,
    PartyKind,
    Phase,
    party_code,
)
from shared.events.models import IncidentFacts


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadline(_Data):
    duration: timedelta
    plan_word: str


class ActionSpec(_Data):
    text: str
    notify: bool
    met_by: tuple[ActionCode, ...]


class Condition(_Data):
    """All stated fields must match; an empty condition matches every incident."""

    category: tuple[Category, ...] | None = None
    phase: tuple[Phase, ...] | None = None

    def reasons(self, facts: IncidentFacts) -> list[str] | None:
        """Why the facts match, in words; None when they do not."""
        reasons = []
        if self.category is not None:
            if facts.category not in self.category:
                return None
            reasons.append(f"类别「{CATEGORY_NAMES_ZH[facts.category]}」({facts.category})")
        if self.phase is not None:
            if facts.phase not in self.phase:
                return None
            reasons.append(f"阶段「{PHASE_NAMES_ZH[facts.phase]}」({facts.phase})")
        return reasons or ["任何突发事件报告"]


class When(_Data):
    any: tuple[Condition, ...]


class Duty(_Data):
    party: PartyKind
    action: str
    deadline: str


class Rule(_Data):
    id: str
    plan_section: str
    plan_text: str
    when: When
    then: tuple[Duty, ...]


class Policy(_Data):
    version: str
    plan: str
    deadlines: dict[str, Deadline]
    actions: dict[str, ActionSpec]
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _references_exist(self) -> Policy:
        for rule in self.rules:
            for duty in rule.then:
                if duty.action not in self.actions:
                    raise ValueError(f"{rule.id} names unknown action {duty.action}")
                if duty.deadline not in self.deadlines:
                    raise ValueError(f"{rule.id} names unknown deadline {duty.deadline}")
        return self

    @classmethod
    def load(cls, path: Path) -> Policy:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ObligationSpec:
    rule_id: str
    plan_section: str
    party: str
    action: str
    action_text: str
    deadline_name: str
    due_at: datetime
    notify: bool
    explanation: str


def _minutes_text(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}天"
    if minutes % 60 == 0:
        return f"{minutes // 60}小时"
    return f"{minutes}分钟"


def obligations_for_report(
    policy: Policy,
    facts: IncidentFacts,
    reported_at: datetime,
    party_names: Mapping[str, str],
) -> list[ObligationSpec]:
    """Every duty the rules attach to a newly reported incident, with why and by when."""
    result = []
    for rule in policy.rules:
        reasons = next(
            (found for found in (c.reasons(facts) for c in rule.when.any) if found is not None),
            None,
        )
        if reasons is None:
            continue
        for duty in rule.then:
            deadline = policy.deadlines[duty.deadline]
            action = policy.actions[duty.action]
            party = party_code(duty.party, facts.township_code)
            due_at = reported_at + deadline.duration
            explanation = (
                f"依据 {rule.id}（预案{rule.plan_section}）：{'、'.join(reasons)}"
                f"，发生在{facts.township_name}；"
                f"{party_names.get(party, party)}须在{deadline.plan_word}时限"
                f"（{duty.deadline}，{_minutes_text(deadline.duration)}）内{action.text}，"
                f"截止 {due_at.isoformat(timespec='minutes')}。"
            )
            result.append(
                ObligationSpec(
                    rule_id=rule.id,
                    plan_section=rule.plan_section,
                    party=party,
                    action=duty.action,
                    action_text=action.text,
                    deadline_name=duty.deadline,
                    due_at=due_at,
                    notify=action.notify,
                    explanation=explanation,
                )
            )
    return result


def is_met_by(policy: Policy, obligation_action: str, recorded: ActionCode) -> bool:
    return recorded in policy.actions[obligation_action].met_by
