"""docs/rules.md: every rule of the response plan in the project's own words, written from the
policy file so that the two cannot disagree; pure apart from `main`.

`render(policy)` gives the document; `sqjz-rulebook` (part of
`make contracts`) writes it, and tests/contracts fails when the committed file differs.
Rules the engine evaluates come from the policy's `rules:` (id, plan clause, trigger,
conditions, duties and what meets them); rules other services enforce from `other_rules:`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.escalation.rules import (
    ActionSpec,
    Condition,
    Duty,
    InformSpec,
    OtherRule,
    Policy,
    Rule,
)
from shared.domain.ownership import ACTIONS_OF
from shared.domain.vocabulary import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    PARTY_KIND_NAMES_ZH,
    PHASE_NAMES_ZH,
    TOWNSHIP_BOUND_KINDS,
    PartyKind,
)
from shared.settings import REPOSITORY_ROOT

POLICY_FILE = REPOSITORY_ROOT / "services" / "escalation" / "policy.yaml"
RULEBOOK_FILE = Path("docs") / "rules.md"
REGENERATE = "run `make contracts` to regenerate it, and review the diff"

# What each party is and does, beyond its name (parties table).
PARTY_NOTES: dict[str, str] = {
    PartyKind.SFS: "first responder; usually the reporter",
    PartyKind.TCG: "activates the township plan",
    PartyKind.BLO: "also named 旗…应急处置领导指挥小组办公室 in 四(四)",
    PartyKind.PPS: "police station of the township: receives 报警 and written notices",
    PartyKind.BJO: "drafts the investigation report; records commendations and disciplines",
    PartyKind.CEO: "city (鄂尔多斯市) justice bureau emergency office: receives the "
    "investigation report",
    PartyKind.DEPT: "other departments (应急管理, 民政 …), contacted by BLO in 四(四)",
    PartyKind.PRO: "banner procuratorate: told of a subject's death (Art. 51)",
    PartyKind.DEC: "the court or authority that decided the subject's correction (the "
    "subject's `deciding_authority`): told of the subject's death (Art. 51)",
    PartyKind.PLATFORM: "the county public-security platform: reports incidents",
}

# What each category includes (plan section 二).
CATEGORY_INCLUDES: dict[str, str] = {
    "VIOLENCE": "行凶、杀人、放火、爆炸、抢劫、绑架; hostage-taking; violence against 检举人、"
    "被害人、证人、司法工作人员、社区矫正工作者、志愿者",
    "MASS_INCIDENT": "严重暴力事件、较大规模群体事件、赴呼进京“异常访”、扰乱社会秩序",
    "ABSCONDED": "脱管、漏管、下落不明、失控",
    "DISRUPTION": "",
    "ABNORMAL_DEATH": "集中教育、社区服务中的人身伤亡; 日常生活中的非正常死亡",
    "DISASTER": "affects subjects' life or stability (四(四))",
    "OTHER": "严重扰乱公共秩序、妨碍公务",
}

# Why each named deadline is as long as it is.
DEADLINE_REASONS: dict[str, str] = {
    "IMMEDIATE": "action must be on record within a quarter hour",
    "PROMPT": "government reporting rules cap first reports at 1 h",
    "WRITTEN": "written follow-up, as in the 2-hour rules of provinces and the work-safety "
    "regulation",
    "SEARCH_WINDOW": 'search time before "not found" is assumed, if no officer says so sooner',
    "FOLLOW_UP": "while an incident is open: a follow-up at least daily and on every change",
    "ACK": "a notification not acknowledged by then is re-sent on the next channel, then escalated",
    "INVESTIGATION": "investigation report due after closure",
}

HOW_RULES_APPLY = """\
- **Current facts.** Rules apply to the incident as it stands now. When a follow-up or
  correction changes category, phase, subjects, township, `offence` or `drill`, the rules run
  again: duties that now apply are created (due from the change); duties that no longer apply
  become `WAIVED` with the change as the reason. Nothing is deleted.
- **Ownership.** A duty is met only by its owner's recorded action. A party one rung up the
  ladder may record for the owner, marked as on its behalf (`on_behalf_of`), with a reason.
  Another party's action is kept on the incident but meets nobody else's duty. Intake refuses
  at once (422) an action that is not the recording party's own.
- **Informing versus acting.** An acknowledgement by X meets a duty to inform X (report to X,
  报警, written notice): it proves the report arrived. It never meets a duty to act (activate
  the plan, go to the scene, search, counsel).
- **Every party acts for itself.** Each kind of party records its own action codes (table
  below). Once `PPS` has taken over a search, `SFS`'s duty is to assist, and the search's
  length is no omission of `SFS`.
- **Closing.** `SFS` or `TCG` records `CONTROLLED`; only the township's `TCG` or `BLO` records
  `CLOSED`; an `ABSCONDED` incident closes only after `FOUND`, or by a `BLO` decision with a
  reason.
- **Drills.** A drill that turns out to be real is corrected to real by `SFS` or `BLO`; the
  rules run again for real contacts. Real to drill is refused.
- **Follow-ups that go quiet.** R9 recurs daily while open; after 7 days with nothing new,
  `BLO` receives one staleness finding instead of a daily escalation.
- **Times.** The system's receipt time is the reference for every deadline and lateness; times
  a caller asserts (`occurred_at`, `discovered_at`) are evidence, shown with who asserted them.
  Times shown to people are in the county's time zone.
- **Findings are suspicions.** `BJO` or `CEO` confirms or dismisses each finding with a reason;
  both are logged; a dismissed finding stays visible as dismissed. A finding names the rule,
  the party, the deadline, what happened and when, and the audit entries that prove it.
"""

OTHER_LAW = """\
- 社区矫正法 Art. 30 (search at once when contact is lost), Art. 31 (stop a violation, call the
  police), Art. 51 (death: notify the deciding authority, procuratorate and police promptly).
- 突发事件应对法 (2024) Art. 61: no 迟报、谎报、瞒报、漏报. Arts. 84–85: personal information
  gathered in a response serves the response only.
- 社区矫正法 Arts. 26, 29, 54, 61 and 个人信息保护法 Art. 28: identity, location and minors'
  data are sensitive. Notifications carry the least that lets the recipient act (masked ID
  numbers, no criminal details); full records only behind authenticated access, and every
  read is audited.
"""


# --- words for the policy's data ---------------------------------------------------------------


def duration_words(duration: timedelta) -> str:
    """15 min, 2 h, 7 days: a deadline as people say it."""
    seconds = int(duration.total_seconds())
    if seconds and seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def cell(text: Any) -> str:
    """Text fit for one cell of a markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(value: Any) -> str:
    return f"`{value}`"


def action_code(action: Any) -> str:
    said = ACTION_NAMES_ZH.get(str(action))
    return f"`{action}` ({said})" if said else code(action)


def party_words(kind: Any) -> str:
    name = PARTY_KIND_NAMES_ZH.get(str(kind))
    return f"`{kind}` {name}" if name else code(kind)


def party_code_form(kind: PartyKind) -> str:
    if kind in TOWNSHIP_BOUND_KINDS:
        return f"`{kind}:<town>`"
    if kind in (PartyKind.DEPT, PartyKind.DEC):
        return f"`{kind}:<name>`"
    return code(kind)


def one_of(values: Iterable[Any]) -> str:
    return " or ".join(code(value) for value in values)


def condition_words(condition: Condition, policy: Policy) -> str:
    """All stated fields of one condition, joined by "and"; fields the policy adds later are
    shown as stated."""
    stated = condition.model_dump(exclude_none=True)
    parts: list[str] = []
    for name, value in stated.items():
        if name == "category":
            parts.append(f"category {one_of(value)}")
        elif name == "phase":
            parts.append(f"phase {one_of(value)}")
        elif name == "drill":
            parts.append("a drill" if value else "not a drill")
        elif name == "missing_report_fields":
            parts.append(
                "the report leaves an R7 field missing"
                if value
                else "the report states every R7 field"
            )
        elif name == "repeated_signs":
            window = duration_words(policy.repeat_signs_window)
            parts.append(
                f"signs reported again for a subject within {window}"
                if value
                else f"no signs for the subject within {window}"
            )
        elif isinstance(value, bool):
            parts.append(f"`{name}: {'true' if value else 'false'}`")
        elif isinstance(value, list | tuple):
            parts.append(f"{name} {one_of(value)}")
        else:
            parts.append(f"`{name}: {value}`")
    return " and ".join(parts) or "every incident"


def trigger_words(trigger: str, policy: Policy) -> str:
    kind, _, name = trigger.partition(":")
    if trigger == "reported":
        return "an incident is reported, or its facts change"
    if trigger == "report_filed":
        return "a follow-up (续报) or correction is filed"
    if kind == "action":
        return f"{action_code(name)} is recorded"
    if kind == "timer":
        starters = [rule.id for rule in policy.rules if any(t.name == name for t in rule.timers)]
        deadline = next(
            (t.after for rule in policy.rules for t in rule.timers if t.name == name), None
        )
        length = (
            f" ({duration_words(policy.deadlines[deadline].duration)})"
            if deadline in policy.deadlines
            else ""
        )
        return f"timer `{name}`{length} started by {', '.join(starters)} runs out"
    return code(trigger)


def owner_words(spec: ActionSpec, duty_party: Any) -> str:
    """Who acts on the duty: the party itself, or another that must inform it."""
    owner = str(spec.owner)
    if owner == "party":
        return party_words(duty_party)
    if owner == str(duty_party):
        return party_words(owner)
    return f"{party_words(owner)}, informing {code(duty_party)}"


REPORT_KINDS = {
    "ANY": "any follow-up or correction filed",
    "COMPLETE": "a report that leaves no R7 field missing",
    "WRITTEN": "a report that states the facts itself and leaves no R7 field missing",
}
MET_BY_KNOWN = frozenset({"met_by", "met_by_ack", "met_by_report"})


def met_by_words(spec: ActionSpec, duty_party: Any) -> str:
    """What meets a duty: recorded actions of its owner, the informed party's
    acknowledgement, a filed report; ways the policy adds later are shown as stated."""
    ways: list[str] = []
    if spec.met_by:
        ways.append(", ".join(action_code(action) for action in spec.met_by))
    if spec.met_by_ack:
        ways.append(f"acknowledgement of the alert by {code(duty_party)}")
    if spec.met_by_report:
        ways.append(REPORT_KINDS.get(str(spec.met_by_report), code(spec.met_by_report)))
    for name, value in spec.model_dump(exclude_none=True).items():
        if name.startswith("met_by") and name not in MET_BY_KNOWN and value not in ((), [], False):
            ways.append(f"`{name}: {value}`")
    return "; ".join(ways) or "nothing recorded (it is for people to follow)"


def deadline_words(policy: Policy, name: str) -> str:
    deadline = policy.deadlines.get(name)
    return f"`{name}` ({duration_words(deadline.duration)})" if deadline else code(name)


def duty_row(policy: Policy, duty: Duty) -> str:
    spec = policy.actions[duty.action]
    notes: list[str] = []
    if spec.notify:
        notes.append(f"{code(duty.party)} is alerted")
    if spec.waived_by:
        notes.append("no longer required after " + ", ".join(code(a) for a in spec.waived_by))
    if spec.recurs:
        notes.append(f"due again {deadline_words(policy, spec.recurs)} after it is met or missed")
    return (
        f"| {party_words(duty.party)} | `{duty.action}`: {cell(spec.text)} "
        f"| {deadline_words(policy, duty.deadline)} "
        f"| {cell(owner_words(spec, duty.party))} | {cell(met_by_words(spec, duty.party))} "
        f"| {cell('; '.join(notes))} |"
    )


# --- sections ---------------------------------------------------------------------------------


def rule_when(rule: Rule, policy: Policy) -> str:
    triggers = " or ".join(trigger_words(trigger, policy) for trigger in rule.trigger)
    conditions = [condition_words(condition, policy) for condition in rule.when.any]
    if conditions == ["every incident"]:
        return triggers
    return f"{triggers}, when " + "; or ".join(conditions)


def rule_section(rule: Rule, policy: Policy) -> list[str]:
    lines = [
        f"### {rule.id} · {rule.plan_section}",
        "",
        f"> {rule.plan_text}",
        "",
        f"- **Trigger**: {' or '.join(trigger_words(t, policy) for t in rule.trigger)}"
        + (" (at most once per incident)" if rule.once else ""),
    ]
    conditions = [condition_words(condition, policy) for condition in rule.when.any]
    if len(conditions) == 1:
        lines.append(f"- **When**: {conditions[0]}")
    else:
        lines.append("- **When**, any of:")
        lines.extend(f"  - {condition}" for condition in conditions)
    for timer in rule.timers:
        cancelled = ", ".join(code(a) for a in timer.cancelled_by) or "nothing"
        lines.append(
            f"- **Timer** `{timer.name}`: runs {deadline_words(policy, timer.after)}, "
            f"stopped by {cancelled}"
        )
    if rule.then:
        lines += [
            "",
            "| party | duty | deadline | who acts | met by | notes |",
            "|---|---|---|---|---|---|",
            *(duty_row(policy, duty) for duty in rule.then),
        ]
    if rule.inform is not None:
        lines.append(f"- **Tells**: {inform_words(rule.inform, policy)}")
    if rule.id == "R7" or any(c.missing_report_fields for c in rule.when.any):
        fields = ", ".join(
            f"{name} ({word})" for name, word in policy.required_report_fields.items()
        )
        lines += ["", f"The R7 fields a report must state: {fields}."]
    lines.append("")
    return lines


def inform_words(inform: InformSpec, policy: Policy) -> str:
    """R19's audience: an update that asks nothing of anyone (notification sends it)."""
    told = ["every party already alerted about the incident"] if inform.alerted else []
    if inform.police_on:
        on = " or ".join(trigger_words(trigger, policy) for trigger in inform.police_on)
        told.append(f"the township's `PPS` when {on} and the police reported the incident")
    return (
        "; ".join(told)
        + ", never the party that made the change; an update asks nothing of its recipient"
    )


def other_rule_section(rule: OtherRule, policy: Policy) -> list[str]:
    lines = [
        f"### {rule.id} · {rule.plan_section}",
        "",
        f"> {rule.plan_text}",
        "",
        f"- **When**: {' '.join(rule.when.split())}",
        f"- **Then**: {' '.join(rule.then.split())}",
        f"- **Enforced by**: {' '.join(rule.enforced_by.split())}",
    ]
    drills = policy.drill_requirement
    if rule.id == drills.rule_id:
        lines.append(
            f"- **Minimum** (`drill_requirement`): {drills.per_year} drill(s) a calendar year "
            f"by each {party_words(drills.party)} ({drills.plan_section})"
        )
    correlation = policy.correlation
    if rule.id == correlation.rule_id:
        lines += [
            f"- **Linked** (`correlation.link_window`): a report within "
            f"{duration_words(correlation.link_window)} of an open incident of its township, "
            "naming one of its subjects or quoting its reference",
            f"- **Candidate** (`correlation.candidate_window`): an open incident of the same "
            f"township and category within {duration_words(correlation.candidate_window)}, "
            "another or no subject id; only people link it",
            "- **Most severe first** (`correlation.category_severity`, `phase_severity`): "
            + " > ".join(f"`{category}`" for category in correlation.category_severity)
            + "; "
            + " > ".join(f"`{phase}`" for phase in correlation.phase_severity),
        ]
    return [*lines, ""]


def all_rule_ids(policy: Policy) -> list[str]:
    ids = [rule.id for rule in policy.rules] + [rule.id for rule in policy.other_rules]
    return sorted(ids, key=lambda rule_id: (len(rule_id), rule_id))


def summary_table(policy: Policy) -> list[str]:
    rows: dict[str, str] = {}
    for rule in policy.rules:
        duties = "; ".join(
            f"`{duty.party}` · `{duty.action}` · `{duty.deadline}`" for duty in rule.then
        )
        if rule.inform is not None:
            duties = duties or "update to every party already alerted (R19)"
        rows[rule.id] = (
            f"| [{rule.id}](#{rule.id.lower()}--{anchor(rule.plan_section)}) "
            f"| {cell(rule.plan_section)} | {cell(rule_when(rule, policy))} "
            f"| {cell(duties)} | escalation engine |"
        )
    for other in policy.other_rules:
        rows.setdefault(
            other.id,
            f"| [{other.id}](#{other.id.lower()}--{anchor(other.plan_section)}) "
            f"| {cell(other.plan_section)} | {cell(other.when)} | {cell(other.then)} "
            f"| {cell(other.enforced_by)} |",
        )
    return [
        "| id | plan | when | then (party · duty · deadline) | enforced by |",
        "|---|---|---|---|---|",
        *(rows[rule_id] for rule_id in all_rule_ids(policy) if rule_id in rows),
    ]


def anchor(text: str) -> str:
    """The anchor GitHub gives a heading's plan-section part: lower case, punctuation dropped."""
    kept = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return kept.strip().replace(" ", "-")


def parties_table() -> list[str]:
    return [
        "| code | party | own actions | notes |",
        "|---|---|---|---|",
        *(
            f"| {party_code_form(kind)} | {PARTY_KIND_NAMES_ZH.get(kind, '')} "
            f"| {cell(', '.join(code(a) for a in sorted(own_actions(kind))))} "
            f"| {cell(PARTY_NOTES.get(kind, ''))} |"
            for kind in PartyKind
        ),
    ]


def own_actions(kind: PartyKind) -> frozenset[str]:
    return frozenset(str(action) for action in ACTIONS_OF.get(kind, frozenset()))


def deadlines_table(policy: Policy) -> list[str]:
    return [
        "| name | plan's word | default | why |",
        "|---|---|---|---|",
        *(
            f"| `{name}` | {cell(deadline.plan_word)} | {duration_words(deadline.duration)} "
            f"| {cell(DEADLINE_REASONS.get(name, ''))} |"
            for name, deadline in policy.deadlines.items()
        ),
    ]


def categories_table() -> list[str]:
    return [
        "| code | 类别 | includes |",
        "|---|---|---|",
        *(
            f"| `{category}` | {name} | {cell(CATEGORY_INCLUDES.get(category, ''))} |"
            for category, name in CATEGORY_NAMES_ZH.items()
        ),
    ]


def ladder_lines(policy: Policy) -> list[str]:
    steps = ", ".join(f"`{low}` → `{high}`" for low, high in policy.ladder.steps.items())
    spec = policy.actions[policy.ladder.action]
    return [
        f"A duty missed, or an alert nobody acknowledged, moves one step up: {steps}. The next "
        f"party is given `{policy.ladder.action}` ({spec.text}) · "
        f"{deadline_words(policy, policy.ladder.deadline)}. The same steps say who may record "
        "on an owner's behalf.",
    ]


def retention_lines(policy: Policy) -> list[str]:
    years = policy.retention.personal_data_years_after_closure
    return [
        f"The personal data of an incident is kept {years} years after it closed "
        "(`retention.personal_data_years_after_closure`): then audit erases the incident's "
        "data key, and with it every name, number and free text its log entries hold; the "
        "entries, their rule ids, parties and times, and every proof stay (个人信息保护法 "
        "Art. 19).",
    ]


def render(policy: Policy) -> str:
    """docs/rules.md for `policy`."""
    lines = [
        "# The response plan as rules",
        "",
        "<!-- Generated from services/escalation/policy.yaml by "
        "`sqjz-rulebook` (`make contracts`); do not edit by hand. -->",
        "",
        f"Source: {policy.plan}. Policy version `{policy.version}`. Section numbers (四(一) …)",
        "are the plan's. Every rule has an id; code, tests, routing explanations and audit",
        "findings cite it. Deadlines are defaults of the versioned policy file",
        "(`services/escalation/policy.yaml`), overridable per deployment",
        "(`POLICY_OVERRIDES_FILE`).",
        "",
        "## Rules at a glance",
        "",
        *summary_table(policy),
        "",
        "Findings are suspicions for people to judge, never verdicts.",
        "",
        "## How rules apply",
        "",
        HOW_RULES_APPLY.rstrip(),
        "",
        "## Parties (org units)",
        "",
        *parties_table(),
        "",
        "Townships and contacts (phones, webhooks, e-mail) are deployment data",
        "(`config/directory.yaml`), not code.",
        "",
        "## Incident categories (二)",
        "",
        *categories_table(),
        "",
        "Each report also states a phase: "
        + ", ".join(f"`{phase}` ({name})" for phase, name in PHASE_NAMES_ZH.items())
        + "; whether it is a drill; and whether its facts suggest an offence (`offence`, "
        "涉嫌违法犯罪).",
        "",
        "## Named deadlines (defaults)",
        "",
        *deadlines_table(policy),
        "",
        "## The ladder",
        "",
        *ladder_lines(policy),
        "",
        "## Keeping personal data",
        "",
        *retention_lines(policy),
        "",
        "## Rules the escalation engine evaluates",
        "",
        "Each duty names its party, what it asks, by when, who acts on it and what meets it.",
        "",
    ]
    for rule in policy.rules:
        lines += rule_section(rule, policy)
    lines += ["## Rules other parts of the system enforce", ""]
    for other in policy.other_rules:
        lines += other_rule_section(other, policy)
    lines += ["## Other law the system must respect", "", OTHER_LAW.rstrip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqjz-rulebook", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    arguments = parser.parse_args(argv)
    target = REPOSITORY_ROOT / RULEBOOK_FILE
    text = render(Policy.load(POLICY_FILE))
    if arguments.check:
        current = target.exists() and target.read_text(encoding="utf-8") == text
        print(f"{RULEBOOK_FILE} is {'current' if current else 'out of date: ' + REGENERATE}")
        return 0 if current else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {RULEBOOK_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
