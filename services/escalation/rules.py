"""The rules engine: the policy file as typed data, and what an incident's facts and history
oblige, by when, under which rule of the plan. Pure: no I/O.

Handlers load the policy once, describe the incident (`Situation`) and what just happened
(`Trigger`), and store and publish what `evaluate` returns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.domain.correlation import Correlation
from shared.domain.policyfile import policy_data
from shared.domain.vocabulary import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    DEFAULT_COUNTY_TIME_ZONE,
    PHASE_NAMES_ZH,
    ActionCode,
    Category,
    PartyKind,
    Phase,
    county_time,
    deadline_words_zh,
    fact_name_zh,
    party_code,
    party_kind_of,
    party_name_zh,
    time_zone_label,
)
from shared.events.models import IncidentFacts
from shared.retention import Retention

# Obligation ids are derived from what caused them, so the same history gives the same ids.
OBLIGATION_NAMESPACE = uuid.UUID("7d1f0c1e-5b0a-4b8e-9c52-1c0f3a1e2b77")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadline(_Data):
    duration: timedelta
    plan_word: str


class ActionSpec(_Data):
    text: str
    owner: Literal["party"] | PartyKind = "party"
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
    offence: bool | None = None
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


class InformSpec(_Data):
    """R19: who is told of a change: everyone already alerted; the police on `police_on`."""

    alerted: bool = True
    police_on: tuple[str, ...] = ()


class Rule(_Data):
    id: str
    plan_section: str
    plan_text: str
    trigger: tuple[str, ...]
    when: When = Field(default_factory=When)
    once: bool = False
    then: tuple[Duty, ...] = ()
    timers: tuple[TimerSpec, ...] = ()
    inform: InformSpec | None = None

    @property
    def follows_facts(self) -> bool:
        """Applied to the incident as it stands: on the first report and on every change."""
        return "reported" in self.trigger

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
    omitted_after: timedelta
    quiet_after: timedelta
    repeat_signs_window: timedelta
    drill_requirement: DrillRequirement
    actions: dict[str, ActionSpec]
    rules: tuple[Rule, ...]
    other_rules: tuple[OtherRule, ...] = ()
    correlation: Correlation
    # Read by audit (erasure of personal data); escalation only carries it.
    retention: Retention
    # The county's clock for every time in an explanation: the deployment's COUNTY_TIME_ZONE.
    time_zone: str = DEFAULT_COUNTY_TIME_ZONE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def ack(self) -> timedelta:
        return self.deadlines["ACK"].duration

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
                elif trigger not in ("reported", "report_filed"):
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
        return cls.model_validate(policy_data(path, overrides))

    def rule(self, rule_id: str) -> Rule:
        return next(rule for rule in self.rules if rule.id == rule_id)

    def timer(self, name: str) -> TimerSpec:
        return next(timer for rule in self.rules for timer in rule.timers if timer.name == name)


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
    """What just happened: `reported`, `changed`, `action:<CODE>` or `timer:<NAME>`.

    `words` says it for people where the name cannot (what a follow-up changed)."""

    name: str
    at: datetime
    event_id: UUID
    actor: str | None = None
    words: str | None = None


TRIGGER_WORDS = {
    "reported": "事件报告",
    "action:UNCONTROLLABLE": "先期处置记录为不能控制",
    "action:SEARCH_FAILED": "查找记录为未果",
    "timer:SEARCH_WINDOW": "查找时限已过仍未找到",
    "action:CLOSED": "事件处置结束",
}


def trigger_words(trigger: Trigger | str) -> str:
    """What made a rule fire, in words; a recorded action by its Chinese name."""
    if isinstance(trigger, Trigger):
        if trigger.words:
            return trigger.words
        trigger = trigger.name
    if trigger in TRIGGER_WORDS:
        return TRIGGER_WORDS[trigger]
    kind, _, name = trigger.partition(":")
    if kind == "action" and name in ACTION_NAMES_ZH:
        return f"记录了「{ACTION_NAMES_ZH[name]}」"
    return trigger


# Facts whose change makes the rules run again (RULES.md "How rules apply": current facts).
RULE_FACTS = ("category", "phase", "subjects", "township_code", "offence", "drill")


def changes_rules(changes: Mapping[str, Any]) -> bool:
    return any(name in changes for name in RULE_FACTS)


def _fact_shown(name: str, value: Any) -> str:
    if value is None:
        return "（无）"
    if name == "category":
        return CATEGORY_NAMES_ZH.get(value, str(value))
    if name == "phase":
        return PHASE_NAMES_ZH.get(value, str(value))
    if name in ("drill", "offence"):
        return "是" if value else "否"
    if name == "subjects":
        return "、".join(subject.get("name", "") for subject in value) or "（无）"
    return str(value)


# What changed the facts, as the words about it begin (R20: another report of the same event,
# a merge of two incidents and its undoing take the more severe, or the former, facts).
CHANGE_SAID = {
    "FOLLOW_UP": "续报",
    "CORRECTION": "更正",
    "LINKED": "同一事件的另一报告（R20）",
    "MERGED": "事件合并（R20）",
    "UNLINKED": "撤销关联（R20）",
}
FactChangeKind = Literal["FOLLOW_UP", "CORRECTION", "LINKED", "MERGED", "UNLINKED"]


def change_words(
    kind: FactChangeKind,
    changes: Mapping[str, Any],
    previous: Mapping[str, Any],
) -> str:
    """续报将阶段由「苗头迹象」改为「正在实施」: what a report (or a link or merge of reports,
    R20) changed of the facts rules read (values as published: personal data already masked)."""
    said = CHANGE_SAID[kind]
    parts = []
    for name in RULE_FACTS:
        if name not in changes:
            continue
        if name == "township_code":
            before = previous.get("township_name") or previous.get(name)
            after = changes.get("township_name") or changes.get(name)
            parts.append(f"苏木(镇)由「{before}」改为「{after}」")
            continue
        parts.append(
            f"{fact_name_zh(name)}由「{_fact_shown(name, previous.get(name))}」"
            f"改为「{_fact_shown(name, changes.get(name))}」"
        )
    return f"{said}将" + "，".join(parts) if parts else said


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
    owner: str | None = None


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


def local_time(policy: Policy, moment: datetime) -> str:
    """北京时间 2026-11-30 12:15: a time in an explanation, on the county's clock."""
    return f"{time_zone_label(policy.zone)} {county_time(moment, policy.zone)}"


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
    if condition.offence is not None:
        if facts.offence != condition.offence:
            return None
        reasons.append("涉嫌违法犯罪" if facts.offence else "未涉嫌违法犯罪")
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
                f"{prior.subject_id}（{county_time(prior.reported_at, policy.zone):.10}，"
                f"事件 {prior.incident_id}）"
                for prior in earlier
            )
            reasons.append(f"{window}内再次出现苗头迹象：{listed}")
    return reasons


def rule_reasons(policy: Policy, rule: Rule, situation: Situation) -> list[str] | None:
    """Why the rule's conditions hold for the incident as it stands; None when none does."""
    return next(
        (
            found
            for found in (condition_reasons(policy, c, situation) for c in rule.when.any)
            if found is not None
        ),
        None,
    )


def obligation_id(incident_id: UUID, cause: str, rule_id: str, party: str, action: str) -> UUID:
    return uuid.uuid5(OBLIGATION_NAMESPACE, f"{incident_id}/{cause}/{rule_id}/{party}/{action}")


def _explain(
    policy: Policy,
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
        f"截止{local_time(policy, due_at)}。"
    )


def owner_of(policy: Policy, action: str, party: str, township_code: str) -> str:
    """Who must act on a duty: the party itself, or the party that must inform it (the
    司法所 reporting to the TCG, the BLO notifying the procuratorate)."""
    spec = policy.actions[action]
    if spec.owner == "party":
        return party
    return party_code(spec.owner, township_code)


def duty_parties(duty: Duty, facts: IncidentFacts) -> list[str]:
    """The parties a duty of a rule falls on: one per township-bound kind, one per deciding
    authority the subjects name (R18), the BLO itself when none is named."""
    if duty.party == PartyKind.DEC:
        named = sorted(
            {
                f"{PartyKind.DEC}:{subject.deciding_authority}"
                for subject in facts.subjects
                if subject.deciding_authority
            }
        )
        return named or [str(PartyKind.BLO)]
    return [party_code(duty.party, facts.township_code)]


def _duties(
    policy: Policy,
    rule: Rule,
    situation: Situation,
    trigger: Trigger,
    because: str,
    party_names: Mapping[str, str],
    only: set[tuple[str, str, str]] | None = None,
) -> list[ObligationSpec]:
    """The obligations `rule` puts on the incident for `trigger` (those keyed in `only`)."""
    facts = situation.facts
    anchor = max(trigger.at, situation.reported_at)
    found: list[ObligationSpec] = []
    for duty in rule.then:
        deadline = policy.deadlines[duty.deadline]
        action = policy.actions[duty.action]
        for party in duty_parties(duty, facts):
            if only is not None and (rule.id, party, duty.action) not in only:
                continue
            due_at = anchor + deadline.duration
            found.append(
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
                        policy,
                        rule.id,
                        rule.plan_section,
                        because,
                        party_names.get(party, party_name_zh(party)),
                        duty.deadline,
                        deadline,
                        action.text,
                        due_at,
                    ),
                    owner=owner_of(policy, duty.action, party, facts.township_code),
                )
            )
    return found


def _because(trigger: Trigger, reasons: list[str], facts: IncidentFacts) -> str:
    return "、".join([trigger_words(trigger), *reasons]) + f"，发生在{facts.township_name}"


def evaluate(
    policy: Policy,
    situation: Situation,
    trigger: Trigger,
    party_names: Mapping[str, str],
) -> Decision:
    """Every duty and timer the rules attach to `trigger`, with why and by when.

    Deadlines run from when the system learned of it, never from before the report."""
    anchor = max(trigger.at, situation.reported_at)
    obligations: list[ObligationSpec] = []
    timers: list[TimerStart] = []
    fired: list[str] = []
    for rule in policy.rules:
        if trigger.name not in rule.trigger or (not rule.then and not rule.timers):
            continue
        if rule.once and rule.id in situation.fired_rules:
            continue
        reasons = rule_reasons(policy, rule, situation)
        if reasons is None:
            continue
        fired.append(rule.id)
        because = _because(trigger, reasons, situation.facts)
        obligations += _duties(policy, rule, situation, trigger, because, party_names)
        for timer in rule.timers:
            timers.append(
                TimerStart(timer.name, rule.id, anchor + policy.deadlines[timer.after].duration)
            )
    return Decision(tuple(obligations), tuple(timers), tuple(fired))


# --- when the facts change: the rules follow them ---------------------------------------------


@dataclass(frozen=True)
class StandingDuty:
    """An obligation already on the incident, as re-evaluation needs to see it."""

    id: UUID
    rule_id: str
    party: str
    action: str
    status: str
    drill: bool
    escalated_from: UUID | None = None


@dataclass(frozen=True)
class Revision:
    """What a change of the facts does: duties that now apply, duties that no longer do (with
    why), timers to start and timers to cancel."""

    decision: Decision = Decision()
    waive: tuple[tuple[UUID, str], ...] = ()
    cancel_timers: tuple[str, ...] = ()


def revise(
    policy: Policy,
    situation: Situation,
    change: Trigger,
    standing: Sequence[StandingDuty],
    timers_started: frozenset[str],
    party_names: Mapping[str, str],
) -> Revision:
    """The rules applied again to the incident as it now stands (after a follow-up or a
    correction changed a fact they read). A duty stands when an obligation for the same rule,
    party and action exists, not waived, of the incident's current kind (drill or real): it is
    neither created again nor touched. Duties of rules whose conditions no longer hold are
    waived while pending; met and missed ones stay as they were. Rules that fire on an action
    (R2, R4) are applied again only when they fired before."""
    facts = situation.facts
    stands = {
        (duty.rule_id, duty.party, duty.action)
        for duty in standing
        if duty.escalated_from is None and duty.status != "WAIVED" and duty.drill == facts.drill
    }
    applying: dict[str, list[str]] = {}
    for rule in policy.rules:
        if not rule.then and not rule.timers:
            continue
        if not rule.follows_facts and rule.id not in situation.fired_rules:
            continue
        reasons = rule_reasons(policy, rule, situation)
        if reasons is not None:
            applying[rule.id] = reasons
    obligations: list[ObligationSpec] = []
    wanted: set[tuple[str, str, str]] = set()
    for rule in policy.rules:
        if rule.id not in applying:
            continue
        keys = {
            (rule.id, party, duty.action)
            for duty in rule.then
            for party in duty_parties(duty, facts)
        }
        wanted |= keys
        missing = keys - stands
        if missing:
            because = _because(change, applying[rule.id], facts)
            obligations += _duties(
                policy, rule, situation, change, because, party_names, only=missing
            )
    words = trigger_words(change)
    waive = tuple(
        (duty.id, _why_no_longer(duty, facts.drill, words))
        for duty in standing
        if duty.status == "PENDING"
        and duty.escalated_from is None
        and (
            duty.drill != facts.drill
            or (duty.rule_id, duty.party, duty.action) not in wanted | _not_fact_bound(policy, duty)
        )
    )
    anchor = max(change.at, situation.reported_at)
    starts = tuple(
        TimerStart(timer.name, rule.id, anchor + policy.deadlines[timer.after].duration)
        for rule in policy.rules
        if rule.id in applying and rule.follows_facts
        for timer in rule.timers
        if timer.name not in timers_started
    )
    cancel = tuple(
        timer.name
        for rule in policy.rules
        if rule.id not in applying
        for timer in rule.timers
        if timer.name in timers_started
    )
    fired = tuple(rule_id for rule_id in applying if rule_id not in situation.fired_rules)
    return Revision(Decision(tuple(obligations), starts, fired), waive, cancel)


def _why_no_longer(duty: StandingDuty, drill: bool, words: str) -> str:
    if duty.drill != drill:
        return f"{words}，按{'演练' if drill else '真实事件'}重新适用规则"
    return f"{words}，本项（{duty.rule_id}）已不再适用"


def _not_fact_bound(policy: Policy, duty: StandingDuty) -> set[tuple[str, str, str]]:
    """Duties no change of facts can waive: those of rules with no conditions on the facts
    that fired on an action (R14's investigation report) or that no rule names (supervision)."""
    rule = next((rule for rule in policy.rules if rule.id == duty.rule_id), None)
    if rule is None or (not rule.follows_facts and rule.when == When()):
        return {(duty.rule_id, duty.party, duty.action)}
    return set()


# --- R19: everybody already told stays told ---------------------------------------------------


def informing(policy: Policy, trigger: str) -> Rule | None:
    """The rule that tells parties of what `trigger` is (R19), if one does."""
    return next(
        (rule for rule in policy.rules if rule.inform is not None and trigger in rule.trigger),
        None,
    )


def update_recipients(
    policy: Policy,
    trigger: str,
    alerted: Iterable[str],
    reporter_party: str,
    changed_by: str,
    township_code: str,
) -> tuple[str, ...] | None:
    """The parties told of a change (R19), None when no rule informs on `trigger`: everyone
    already alerted about the incident, and the township's police station on a find or a
    closure when the police reported it; never the party that made the change."""
    rule = informing(policy, trigger)
    if rule is None or rule.inform is None:
        return None
    told = set(alerted) if rule.inform.alerted else set()
    reporter_kind = reporter_party.split(":", 1)[0]
    if trigger in rule.inform.police_on and reporter_kind in (PartyKind.PPS, PartyKind.PLATFORM):
        told.add(party_code(PartyKind.PPS, township_code))
    told.discard(changed_by)
    return tuple(sorted(told))


# --- how obligations end ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Something that may fulfil a pending obligation: a recorded action and whose it is
    (the owner it was recorded for, else its recorder), an acknowledgement of the duty's own
    alert, or a filed report and who filed it."""

    kind: Literal["action", "ack", "report"]
    action: ActionCode | None = None
    party: str | None = None
    to: str | None = None
    report_complete: bool = False
    report_states_facts: bool = False


def report_evidence(
    policy: Policy, facts: IncidentFacts, changes: Mapping[str, Any], party: str
) -> Evidence:
    """A filed report as evidence: whether the incident's facts are now complete (R7), and
    whether the report itself states any of them; a one-line 续报 with no facts states none."""
    return Evidence(
        "report",
        party=party,
        report_complete=not missing_report_fields(policy, facts),
        report_states_facts=any(name in changes for name in policy.required_report_fields),
    )


def is_met_by(
    policy: Policy, obligation: ObligationView | StandingDuty, evidence: Evidence, township: str
) -> bool:
    """Whether `evidence` fulfils the duty. Only its owner's own record or report does; an
    acknowledgement (of the duty's own alert) only fulfils a duty to inform its party."""
    spec = policy.actions[obligation.action]
    owner = owner_of(policy, obligation.action, obligation.party, township)
    match evidence.kind:
        case "action":
            if evidence.action not in spec.met_by or evidence.party != owner:
                return False
            return evidence.action != ActionCode.REPORTED or evidence.to == obligation.party
        case "ack":
            return spec.met_by_ack
        case "report":
            if evidence.party != owner:
                return False
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
    return any(
        rule.id == rule_id and rule.then and "action:CLOSED" in rule.trigger
        for rule in policy.rules
    )


def who_failed(
    policy: Policy, obligation: ObligationView, cause: Literal["missed", "unacknowledged"]
) -> str:
    """The party that failed: the recipient who did not acknowledge the alert, or the owner
    who did not act in time (the 司法所 for a duty to report to another party)."""
    if cause == "unacknowledged":
        return obligation.party
    return owner_of(policy, obligation.action, obligation.party, obligation.township_code)


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
    never goes down to the TCG. A party off the ladder (the police, the procuratorate) is
    pressed through the owner of the duty (the 司法所 that must call them). One supervision per
    duty, whichever cause comes first: both causes give the same id.
    """
    on_ladder = set(policy.ladder.steps) | set(policy.ladder.steps.values())
    start: str | None = obligation.party
    if party_kind_of(obligation.party) not in on_ladder:
        owner = owner_of(policy, obligation.action, obligation.party, obligation.township_code)
        start = owner if owner != obligation.party else None
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
        f"{party_names.get(failed, party_name_zh(failed))}{what}：「{obligation.action_text}」"
        f"（{obligation.rule_id}，截止{local_time(policy, obligation.due_at)}），"
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
            policy,
            obligation.rule_id,
            obligation.plan_section,
            because,
            party_names.get(party, party_name_zh(party)),
            policy.ladder.deadline,
            deadline,
            action.text,
            due_at,
        ),
        escalated_from=obligation.id,
        owner=party,
    )


def grouped_into_alert(
    policy: Policy, spec: ObligationSpec, alerted_at: datetime
) -> ObligationSpec:
    """A supervision for a rung that already has a pending alert about this incident is not
    alerted on its own: one alert per incident and rung. It joins that alert, is met when
    that alert is acknowledged, and says so."""
    return replace(
        spec,
        notify=False,
        explanation=spec.explanation
        + f"该方已于{local_time(policy, alerted_at)}收到本事件的督办提醒，"
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
            policy,
            obligation.rule_id,
            obligation.plan_section,
            "事件仍在处置中，需定期续报",
            party_names.get(obligation.party, party_name_zh(obligation.party)),
            spec.recurs,
            deadline,
            obligation.action_text,
            due_at,
        ),
        owner=owner_of(policy, obligation.action, obligation.party, obligation.township_code),
    )


def gone_quiet(policy: Policy, last_news_at: datetime, at: datetime) -> bool:
    """R9: nothing new on the incident for `quiet_after`: its missed follow-up asks no more."""
    return at - last_news_at >= policy.quiet_after


def recurring_actions(policy: Policy) -> tuple[str, ...]:
    return tuple(name for name, spec in policy.actions.items() if spec.recurs)
