"""The rules engine: the policy file as typed data, and what an incident's facts and history
oblige, by when, under which rule of the plan. Pure: no I/O.

Handlers load the policy once, describe the incident (`Situation`) and what just happened
(`Trigger`), and store and publish what `evaluate` returns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    PHASE_NAMES_ZH,
    ActionCode,
    Category,
    PartyKind,
    Phase,
    county_time,
    deadline_words_zh,
    party_code,
    party_kind_of,
)
from shared.events.models import IncidentFacts

# Obligation ids are derived from what caused them, so the same history gives the same ids.
OBLIGATION_NAMESPACE = uuid.UUID("7d1f0c1e-5b0a-4b8e-9c52-1c0f3a1e2b77")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadline(_Data):
    duration: timedelta
    plan_word: str


class ActionSpec(_Data):
    text: str
    owner: Literal["party", "SFS"] = "party"
    notify: bool = False
    met_by: tuple[ActionCode, ...] = ()
    met_by_ack: bool = False
    met_by_report: Literal["ANY", "COMPLETE", "WRITTEN"] | None = None
    waived_by: tuple[ActionCode, ...] = ()
    recurs: str | None = None


class Condition(_Data):
    """All stated fields must hold; an empty condition holds for every incident."""

    category: tuple[Category, ...] | None = None
    phase: tuple[Phase, ...] | None = None
    drill: bool | None = None
    missing_report_fields: bool | None = None
    repeated_signs: bool | None = None


class When(_Data):
    any: tuple[Condition, ...] = (Condition(),)


class Duty(_Data):
    party: PartyKind
    action: str
    deadline: str


# YAML folds a long line into lines joined by a space; Chinese has no spaces between words.
_FOLDED_SPACE = re.compile(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")


def unfold_chinese(text: str) -> str:
    return _FOLDED_SPACE.sub("", text.strip())


class TimerSpec(_Data):
    name: str
    after: str
    cancelled_by: tuple[ActionCode, ...] = ()


class Rule(_Data):
    id: str
    plan_section: str
    plan_text: str
    trigger: tuple[str, ...]
    when: When = Field(default_factory=When)
    once: bool = False
    then: tuple[Duty, ...] = ()
    timers: tuple[TimerSpec, ...] = ()

    @field_validator("trigger", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("plan_text")
    @classmethod
    def _as_written(cls, value: str) -> str:
        return unfold_chinese(value)


class Ladder(_Data):
    steps: dict[PartyKind, PartyKind]
    action: str
    deadline: str


class DrillRequirement(_Data):
    rule_id: str
    plan_section: str
    party: PartyKind
    per_year: int = Field(ge=1)


class OtherRule(_Data):
    """A rule of docs/rules.md that the engine does not evaluate: what it asks, and which
    service sees to it (findings in audit, records kept by people, routing in notification)."""

    id: str
    plan_section: str
    plan_text: str
    when: str
    then: str
    enforced_by: str

    @field_validator("plan_text")
    @classmethod
    def _as_written(cls, value: str) -> str:
        return unfold_chinese(value)


class Policy(_Data):
    version: str
    plan: str
    deadlines: dict[str, Deadline]
    ladder: Ladder
    required_report_fields: dict[str, str]
    repeat_signs_window: timedelta
    drill_requirement: DrillRequirement
    actions: dict[str, ActionSpec]
    rules: tuple[Rule, ...]
    other_rules: tuple[OtherRule, ...] = ()

    @model_validator(mode="after")
    def _references_exist(self) -> Policy:
        def check(where: str, action: str, deadline: str) -> None:
            if action not in self.actions:
                raise ValueError(f"{where} names unknown action {action}")
            if deadline not in self.deadlines:
                raise ValueError(f"{where} names unknown deadline {deadline}")

        for rule in self.rules:
            for duty in rule.then:
                check(rule.id, duty.action, duty.deadline)
            for timer in rule.timers:
                if timer.after not in self.deadlines:
                    raise ValueError(f"{rule.id} timer names unknown deadline {timer.after}")
            for trigger in rule.trigger:
                kind, _, name = trigger.partition(":")
                if kind == "action":
                    ActionCode(name)
                elif kind == "timer":
                    if not any(t.name == name for r in self.rules for t in r.timers):
                        raise ValueError(f"{rule.id} waits for unknown timer {name}")
                elif trigger != "reported":
                    raise ValueError(f"{rule.id} has unknown trigger {trigger!r}")
        check("ladder", self.ladder.action, self.ladder.deadline)
        for start in self.ladder.steps:
            seen, rung = {start}, self.ladder.steps.get(start)
            while rung is not None:
                if rung in seen:
                    raise ValueError(f"the ladder loops back to {rung}")
                seen.add(rung)
                rung = self.ladder.steps.get(rung)
        for name, action in self.actions.items():
            if action.recurs and action.recurs not in self.deadlines:
                raise ValueError(f"action {name} recurs after unknown deadline {action.recurs}")
        return self

    @classmethod
    def load(cls, path: Path, overrides: Path | None = None) -> Policy:
        """The policy file, with a deployment's overrides (deadlines, ladder ...) merged in."""
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if overrides is not None:
            data = merge(data, yaml.safe_load(overrides.read_text(encoding="utf-8")) or {})
        return cls.model_validate(data)

    def rule(self, rule_id: str) -> Rule:
        return next(rule for rule in self.rules if rule.id == rule_id)

    def timer(self, name: str) -> TimerSpec:
        return next(timer for rule in self.rules for timer in rule.timers if timer.name == name)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides replace values key by key; nested mappings merge, lists replace."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- what the engine is told -----------------------------------------------------------------


@dataclass(frozen=True)
class PriorSigns:
    """An earlier report of signs (SIGNS phase) about one of this incident's subjects."""

    incident_id: UUID
    subject_id: str
    reported_at: datetime
    drill: bool = False


@dataclass(frozen=True)
class Situation:
    """The incident as the engine sees it: facts as now known and the history that matters."""

    incident_id: UUID
    facts: IncidentFacts
    reporter_party: str
    reported_at: datetime
    fired_rules: frozenset[str] = frozenset()
    prior_signs: tuple[PriorSigns, ...] = ()


@dataclass(frozen=True)
class Trigger:
    """What just happened: `reported`, `action:<CODE>` or `timer:<NAME>`."""

    name: str
    at: datetime
    event_id: UUID
    actor: str | None = None


TRIGGER_WORDS = {
    "reported": "事件报告",
    "action:UNCONTROLLABLE": "先期处置记录为不能控制",
    "action:SEARCH_FAILED": "查找记录为未果",
    "timer:SEARCH_WINDOW": "查找时限已过仍未找到",
    "action:CLOSED": "事件处置结束",
}


def trigger_words(trigger: str) -> str:
    """What made a rule fire, in words; a recorded action by its Chinese name."""
    if trigger in TRIGGER_WORDS:
        return TRIGGER_WORDS[trigger]
    kind, _, name = trigger.partition(":")
    if kind == "action" and name in ACTION_NAMES_ZH:
        return f"记录了「{ACTION_NAMES_ZH[name]}」"
    return trigger


# --- what the engine decides -----------------------------------------------------------------


@dataclass(frozen=True)
class ObligationSpec:
    id: UUID
    rule_id: str
    plan_section: str
    party: str
    action: str
    action_text: str
    deadline_name: str
    due_at: datetime
    notify: bool
    drill: bool
    trigger: str
    explanation: str
    escalated_from: UUID | None = None


@dataclass(frozen=True)
class TimerStart:
    name: str
    rule_id: str
    fire_at: datetime


@dataclass(frozen=True)
class Decision:
    obligations: tuple[ObligationSpec, ...] = ()
    timers: tuple[TimerStart, ...] = ()
    fired_rules: tuple[str, ...] = field(default=())


def duration_words(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, name in ((86400, "天"), (3600, "小时"), (60, "分钟")):
        if seconds % unit == 0:
            return f"{seconds // unit}{name}"
    return f"{seconds}秒"


def deadline_text(policy: Policy, name: str) -> str:
    """立即（15分钟）: a named deadline as people read it, its length from the policy."""
    deadline = policy.deadlines.get(name)  # stored under an earlier policy, perhaps
    return deadline_words_zh(name, duration_words(deadline.duration) if deadline else None)


def missing_report_fields(policy: Policy, facts: IncidentFacts) -> list[str]:
    """R7: the required elements a report leaves out, in the plan's words."""
    return [
        words
        for name, words in policy.required_report_fields.items()
        if getattr(facts, name, None) in (None, "", ())
    ]


def repeated_signs(policy: Policy, situation: Situation) -> list[PriorSigns]:
    """R17: earlier signs about the same subjects within the window before this report.

    Drills and real incidents never feed each other's history (R16): a drill's made-up signs
    are no prior signs of a real subject, and real signs do not colour a drill.
    """
    since = situation.reported_at - policy.repeat_signs_window
    subjects = {subject.id for subject in situation.facts.subjects}
    return [
        prior
        for prior in situation.prior_signs
        if prior.incident_id != situation.incident_id
        and prior.drill == situation.facts.drill
        and prior.subject_id in subjects
        and since <= prior.reported_at <= situation.reported_at
    ]


def condition_reasons(
    policy: Policy, condition: Condition, situation: Situation
) -> list[str] | None:
    """Why the situation meets the condition, in words; None when it does not."""
    facts = situation.facts
    reasons: list[str] = []
    if condition.category is not None:
        if facts.category not in condition.category:
            return None
        reasons.append(f"类别「{CATEGORY_NAMES_ZH[facts.category]}」")
    if condition.phase is not None:
        if facts.phase not in condition.phase:
            return None
        reasons.append(f"阶段「{PHASE_NAMES_ZH[facts.phase]}」")
    if condition.drill is not None:
        if facts.drill != condition.drill:
            return None
        reasons.append("演练" if facts.drill else "非演练")
    if condition.missing_report_fields is not None:
        missing = missing_report_fields(policy, facts)
        if bool(missing) != condition.missing_report_fields:
            return None
        if missing:
            reasons.append(f"报告缺少：{'、'.join(missing)}")
    if condition.repeated_signs is not None:
        earlier = repeated_signs(policy, situation)
        if bool(earlier) != condition.repeated_signs:
            return None
        if earlier:
            window = duration_words(policy.repeat_signs_window)
            listed = "、".join(
                f"{prior.subject_id}（{county_time(prior.reported_at):.10}，"
                f"事件 {prior.incident_id}）"
                for prior in earlier
            )
            reasons.append(f"{window}内再次出现苗头迹象：{listed}")
    return reasons


def obligation_id(incident_id: UUID, cause: str, rule_id: str, party: str, action: str) -> UUID:
    return uuid.uuid5(OBLIGATION_NAMESPACE, f"{incident_id}/{cause}/{rule_id}/{party}/{action}")


def _explain(
    rule_id: str,
    plan_section: str,
    because: str,
    party_name: str,
    deadline_name: str,
    deadline: Deadline,
    action_text: str,
    due_at: datetime,
) -> str:
    return (
        f"依据 {rule_id}（预案{plan_section}）：{because}；"
        f"{party_name}须在{duration_words(deadline.duration)}内"
        f"（{deadline_words_zh(deadline_name)}）{action_text}，"
        f"截止北京时间 {county_time(due_at)}。"
    )


def evaluate(
    policy: Policy,
    situation: Situation,
    trigger: Trigger,
    party_names: Mapping[str, str],
) -> Decision:
    """Every duty and timer the rules attach to `trigger`, with why and by when."""
    facts = situation.facts
    # Deadlines run from when the system learned of it, never from before the report.
    anchor = max(trigger.at, situation.reported_at)
    obligations: list[ObligationSpec] = []
    timers: list[TimerStart] = []
    fired: list[str] = []
    for rule in policy.rules:
        if trigger.name not in rule.trigger:
            continue
        if rule.once and rule.id in situation.fired_rules:
            continue
        reasons = next(
            (
                found
                for found in (condition_reasons(policy, c, situation) for c in rule.when.any)
                if found is not None
            ),
            None,
        )
        if reasons is None:
            continue
        fired.append(rule.id)
        because = (
            "、".join([trigger_words(trigger.name), *reasons]) + f"，发生在{facts.township_name}"
        )
        for duty in rule.then:
            deadline = policy.deadlines[duty.deadline]
            action = policy.actions[duty.action]
            party = party_code(duty.party, facts.township_code)
            due_at = anchor + deadline.duration
            obligations.append(
                ObligationSpec(
                    id=obligation_id(
                        situation.incident_id, str(trigger.event_id), rule.id, party, duty.action
                    ),
                    rule_id=rule.id,
                    plan_section=rule.plan_section,
                    party=party,
                    action=duty.action,
                    action_text=action.text,
                    deadline_name=duty.deadline,
                    due_at=due_at,
                    # Everyone with a duty is told, except whoever just told us.
                    notify=action.notify or party != trigger.actor,
                    drill=facts.drill,
                    trigger=trigger.name,
                    explanation=_explain(
                        rule.id,
                        rule.plan_section,
                        because,
                        party_names.get(party, party),
                        duty.deadline,
                        deadline,
                        action.text,
                        due_at,
                    ),
                )
            )
        for timer in rule.timers:
            timers.append(
                TimerStart(timer.name, rule.id, anchor + policy.deadlines[timer.after].duration)
            )
    return Decision(tuple(obligations), tuple(timers), tuple(fired))


# --- how obligations end ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Something that may fulfil a pending obligation."""

    kind: Literal["action", "ack", "report"]
    action: ActionCode | None = None
    report_complete: bool = False
    report_states_facts: bool = False


def report_evidence(policy: Policy, facts: IncidentFacts, changes: Mapping[str, Any]) -> Evidence:
    """A filed report as evidence: whether the incident's facts are now complete (R7), and
    whether the report itself states any of them; a one-line 续报 with no facts states none."""
    return Evidence(
        "report",
        report_complete=not missing_report_fields(policy, facts),
        report_states_facts=any(name in changes for name in policy.required_report_fields),
    )


def is_met_by(policy: Policy, obligation_action: str, evidence: Evidence | ActionCode) -> bool:
    if isinstance(evidence, ActionCode):
        evidence = Evidence("action", evidence)
    spec = policy.actions[obligation_action]
    match evidence.kind:
        case "action":
            return evidence.action in spec.met_by
        case "ack":
            return spec.met_by_ack
        case "report":
            match spec.met_by_report:
                case "ANY":
                    return True
                case "COMPLETE":
                    return evidence.report_complete
                case "WRITTEN":  # R6's written report: facts stated, none left out
                    return evidence.report_complete and evidence.report_states_facts
            return False
    return False


def is_waived_by(policy: Policy, obligation_action: str, action: ActionCode) -> bool:
    return action in policy.actions[obligation_action].waived_by


def may_still_be_met(policy: Policy, obligation_action: str, status: str) -> bool:
    """Pending duties, and missed ones done late (R10), except a missed recurring duty: its
    next instance is already due, and a follow-up today does not make up for yesterday's."""
    if status == "PENDING":
        return True
    return status == "MISSED" and policy.actions[obligation_action].recurs is None


def met_status(status: str, met_at: datetime, due_at: datetime) -> Literal["MET", "MET_LATE"]:
    """A duty done after its due time, or done once it had been missed, is met late (R10)."""
    return "MET_LATE" if status == "MISSED" or met_at > due_at else "MET"


def caused_by(done: UUID, escalations: Iterable[tuple[UUID, UUID | None]]) -> set[UUID]:
    """Every supervision that `done` caused, rung after rung: (id, escalated_from) pairs in,
    the ids that trace back to `done` out (a missed supervision has its own supervisor)."""
    supervisors: dict[UUID, list[UUID]] = {}
    for obligation, escalated_from in escalations:
        if escalated_from is not None:
            supervisors.setdefault(escalated_from, []).append(obligation)
    caused: set[UUID] = set()
    rungs = [done]
    while rungs:
        for supervisor in supervisors.get(rungs.pop(), ()):
            if supervisor not in caused:
                caused.add(supervisor)
                rungs.append(supervisor)
    return caused


@dataclass(frozen=True)
class ObligationView:
    """A stored obligation, as the ladder and recurrence need to see it."""

    id: UUID
    incident_id: UUID
    rule_id: str
    plan_section: str
    party: str
    action: str
    action_text: str
    deadline_name: str
    due_at: datetime
    drill: bool
    township_code: str


def outlives_closure(policy: Policy, rule_id: str) -> bool:
    """Duties of a rule that closure itself triggers (R14's investigation report) are pursued on
    a closed incident, up the ladder too; every other duty ends with the incident."""
    return any(rule.id == rule_id and "action:CLOSED" in rule.trigger for rule in policy.rules)


def who_failed(
    policy: Policy, obligation: ObligationView, cause: Literal["missed", "unacknowledged"]
) -> str:
    """The party that failed: the recipient who did not acknowledge the alert, or the owner
    who did not act in time (the 司法所 for a duty to report to another party)."""
    if cause == "unacknowledged" or policy.actions[obligation.action].owner != "SFS":
        return obligation.party
    return party_code(PartyKind.SFS, obligation.township_code)


def ladder_step(
    policy: Policy,
    obligation: ObligationView,
    cause: Literal["missed", "unacknowledged"],
    at: datetime,
    party_names: Mapping[str, str],
) -> ObligationSpec | None:
    """The next party up supervises an overdue or unacknowledged obligation; None at the top.

    The next rung is above the party the duty is for, whoever owns it: a duty to report to
    the TCG is supervised by the BLO, never by the TCG itself, and a duty to report to the BLO
    never goes down to the TCG. A party off the ladder (the police) is pressed through the
    owner of the duty (the 司法所 that must call them). One supervision per duty, whichever
    cause comes first: both causes give the same id.
    """
    spec = policy.actions[obligation.action]
    on_ladder = set(policy.ladder.steps) | set(policy.ladder.steps.values())
    start: str | None = obligation.party
    if party_kind_of(obligation.party) not in on_ladder:
        start = party_code(PartyKind.SFS, obligation.township_code) if spec.owner == "SFS" else None
    next_kind = policy.ladder.steps.get(party_kind_of(start)) if start else None
    if next_kind is None:
        return None
    party = party_code(next_kind, obligation.township_code)
    deadline = policy.deadlines[policy.ladder.deadline]
    action = policy.actions[policy.ladder.action]
    due_at = at + deadline.duration
    failed = who_failed(policy, obligation, cause)
    what = "逾期未办" if cause == "missed" else "未确认告警"
    because = (
        f"{party_names.get(failed, failed)}{what}：「{obligation.action_text}」"
        f"（{obligation.rule_id}，截止北京时间 {county_time(obligation.due_at)}），"
        f"按升级梯次由上一级督办"
    )
    return ObligationSpec(
        id=obligation_id(
            obligation.incident_id,
            f"supervise:{obligation.id}",
            obligation.rule_id,
            party,
            policy.ladder.action,
        ),
        rule_id=obligation.rule_id,
        plan_section=obligation.plan_section,
        party=party,
        action=policy.ladder.action,
        action_text=f"{action.text}：{obligation.action_text}",
        deadline_name=policy.ladder.deadline,
        due_at=due_at,
        notify=True,
        drill=obligation.drill,
        trigger=f"{cause}:{obligation.action}",
        explanation=_explain(
            obligation.rule_id,
            obligation.plan_section,
            because,
            party_names.get(party, party),
            policy.ladder.deadline,
            deadline,
            action.text,
            due_at,
        ),
        escalated_from=obligation.id,
    )


def grouped_into_alert(spec: ObligationSpec, alerted_at: datetime) -> ObligationSpec:
    """A supervision for a rung that already has a pending alert about this incident is not
    alerted on its own: one alert per incident and rung. It joins that alert, is met when
    that alert is acknowledged, and says so."""
    return replace(
        spec,
        notify=False,
        explanation=spec.explanation
        + f"该方已于 {alerted_at.isoformat(timespec='seconds')} 收到本事件的督办提醒，"
        "本项并入其中，不另行告警。",
    )


def recurrence(
    policy: Policy, obligation: ObligationView, at: datetime, party_names: Mapping[str, str]
) -> ObligationSpec | None:
    """R9-style duties come due again `recurs` after they are met or missed: a day after the
    last follow-up, however early it came, not a day after the previous due time."""
    spec = policy.actions[obligation.action]
    if spec.recurs is None:
        return None
    deadline = policy.deadlines[spec.recurs]
    due_at = at + deadline.duration
    return ObligationSpec(
        id=obligation_id(
            obligation.incident_id,
            f"after:{obligation.id}",
            obligation.rule_id,
            obligation.party,
            obligation.action,
        ),
        rule_id=obligation.rule_id,
        plan_section=obligation.plan_section,
        party=obligation.party,
        action=obligation.action,
        action_text=obligation.action_text,
        deadline_name=spec.recurs,
        due_at=due_at,
        notify=spec.notify,
        drill=obligation.drill,
        trigger=f"recurs:{obligation.action}",
        explanation=_explain(
            obligation.rule_id,
            obligation.plan_section,
            "事件仍在处置中，需定期续报",
            party_names.get(obligation.party, obligation.party),
            spec.recurs,
            deadline,
            obligation.action_text,
            due_at,
        ),
    )
