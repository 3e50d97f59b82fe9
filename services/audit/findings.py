"""Accountability findings (RULES.md R9–R13, R17) computed from one incident's log, and for R12
from the logs of every incident of its event (R20); pure.

A finding is a suspicion for people to judge, never a verdict: its wording says 疑似…，供核查.
Each names its rule, the party that failed (a duty's owner, not the party to be informed), the
obligation and deadline where there is one, what happened and when, and the log indices that
prove it. Lateness is measured from the system's receipt; times a caller asserts are evidence,
shown with who asserted them. Every time is written in the county's zone (`FindingRules.zone`).

Its id is derived from what it is about, so computing the same log again yields the same
findings and none is published twice. Findings once published stay published: an R11 omission
later done is computed as R10 instead, and the stored R11 is shown as superseded by it
(`superseded_by`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from services.audit.linking import (
    LINK_TYPES,
    EventReport,
    concerns,
    kept_by,
    reports_of_event,
)
from services.audit.logged import LoggedEvent
from services.audit.personal import PERSONAL
from shared.domain.vocabulary import (
    CATEGORY_NAMES_ZH,
    PHASE_NAMES_ZH,
    Category,
    PartyKind,
    Phase,
    deadline_words_zh,
    party_kind_of,
    party_name_zh,
)
from shared.events.models import AccountabilityFinding, FactVersions

FINDING_NAMESPACE = UUID("5b0c3a52-7d1e-4a55-9a43-0c6f3f6d2e11")

TITLES = {
    "LATE": "疑似迟报，供核查",
    "OMITTED": "疑似漏报，供核查",
    "CONCEALED": "疑似瞒报，供核查",
    "FALSE": "疑似谎报，供核查",
    "KEY_MONITORING_SUGGESTED": "建议列为重点监控，供核查",
    "STALE": "续报中断，供核查",
}

# R13: facts a correction may contradict, with their names in the plan (四(三)).
CONTRADICTABLE = {
    "category": "种类",
    "phase": "事态阶段",
    "occurred_at": "发生时间",
    "discovered_at": "发现时间",
    "location": "地点",
    "subjects": "涉及对象",
    "persons_involved": "涉及人员基本情况",
}
TIME_FACTS = {"occurred_at", "discovered_at"}

# Event types after which an incident's findings may change.
RELEVANT_TYPES = frozenset(
    {
        "incident.reported",
        "incident.report_filed",
        "incident.action_recorded",
        "incident.status_changed",
        "obligation.created",
        "obligation.met",
        "obligation.waived",
        "obligation.omitted",
        "incident.went_quiet",
        *LINK_TYPES,
    }
)

# The personal fields (`services.audit.personal`) the judgements read, by the type of the event
# that holds them: R13 the contradictable facts of reports (as first stated, filed, linked,
# merged), R17 the names of the subjects an obligation is about. The findings follower opens
# these alone; every other sealed field stays sealed in what the judgements read, and a type
# not named here has none opened. A judgement that reads one more must name it here
# (`tests/unit/test_audit_findings.py` judges every log both ways).
REPORTED_FACTS_READ = frozenset(CONTRADICTABLE) & PERSONAL
PERSONAL_READ: Mapping[str, frozenset[str]] = {
    "incident.reported": REPORTED_FACTS_READ,
    "incident.report_filed": REPORTED_FACTS_READ,
    **dict.fromkeys(LINK_TYPES, REPORTED_FACTS_READ),
    "obligation.created": frozenset({"subject_names"}),
}


@dataclass(frozen=True)
class FindingRules:
    """What a deployment may tune, how parties are named in the wording, and the county's
    time zone every time is written in (the setting COUNTY_TIME_ZONE)."""

    concealment_threshold: timedelta = timedelta(hours=1)
    party_names: Mapping[str, str] | None = None
    zone: ZoneInfo = field(kw_only=True)

    def name(self, party: str) -> str:
        names = self.party_names or {}
        return f"{names[party]}（{party}）" if party in names else party_name_zh(party)

    def short_name(self, party: str) -> str:
        """The party as a sentence names it: 图克镇司法所, without its code."""
        return party_name_zh(party, dict(self.party_names or {}))

    def local(self, moment: datetime | str | None) -> str:
        return local(moment, self.zone)


def local(moment: datetime | str | None, zone: ZoneInfo) -> str:
    """A time as people in the county read it, to the second."""
    if moment is None:
        return "（未知）"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def duration_zh(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "天"), (hours, "小时"), (minutes, "分"), (seconds, "秒")]
    text = "".join(f"{value}{unit}" for value, unit in parts if value)
    return text or "0秒"


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def compute(
    incident_id: UUID, events: Iterable[LoggedEvent], rules: FindingRules
) -> list[AccountabilityFinding]:
    """Every finding the incident's log supports, in the order of their evidence.

    `events`: the incident's history (with the links, merges and unlinks that name it) and,
    for R12 judged on the event (R20), the histories of the incidents linked or merged with
    it; every other rule judges the incident's own history."""
    everything = sorted({event.index: event for event in events}.values(), key=_log_order)
    log = [event for event in everything if concerns(event, str(incident_id))]
    found = [
        *_late_and_omitted(log, everything, rules),
        *_concealed(str(incident_id), log, everything, rules),
        *_false(log, rules),
        *_key_monitoring(log, rules),
        *_stale(log, rules),
    ]
    unique: dict[str, dict[str, Any]] = {}
    for key, fields in found:
        unique.setdefault(key, fields)
    findings = [
        AccountabilityFinding(
            finding_id=finding_id_of(incident_id, key),
            incident_id=incident_id,
            title=TITLES[fields["kind"]],
            **fields,
        )
        for key, fields in unique.items()
    ]
    return sorted(findings, key=lambda finding: finding.evidence_log_indexes)


def _log_order(event: LoggedEvent) -> int:
    return event.index


def finding_id_of(incident_id: UUID, key: str) -> UUID:
    """The id of the incident's finding about `key` (e.g. `R11:<obligation id>`)."""
    return uuid5(FINDING_NAMESPACE, f"{incident_id}:{key}")


def superseded_by(findings: Iterable[AccountabilityFinding]) -> dict[UUID, UUID]:
    """Findings published once that a later one now stands in place of, each with the id of
    that later one: R11 "if done later it becomes R10" (an omission whose obligation also has
    an R10 finding), and R12's "not reported yet" once the office's late report gives the
    finding naming both times. Published once, the earlier stays on record, shown as
    superseded."""
    findings = list(findings)
    late = {f.obligation_id: f.finding_id for f in findings if f.rule_id == "R10"}
    replaced = {
        f.finding_id: late[f.obligation_id]
        for f in findings
        if f.rule_id == "R11" and f.obligation_id is not None and f.obligation_id in late
    }
    ids = {f.finding_id for f in findings}
    for f in findings:
        reported_late = finding_id_of(f.incident_id, CONCEALED_LATE_KEY)
        if (
            f.rule_id == "R12"
            and f.finding_id == finding_id_of(f.incident_id, CONCEALED_UNREPORTED_KEY)
            and reported_late in ids
        ):
            replaced[f.finding_id] = reported_late
    return replaced


Found = tuple[str, dict[str, Any]]


def owner_of(created: LoggedEvent) -> str:
    """Who must act on the obligation: its `owner`, or (events before owners were named) the
    party itself."""
    return created.data.get("owner") or created.data["party"]


def _obligation_fields(created: LoggedEvent) -> dict[str, Any]:
    data = created.data
    return {
        "party": owner_of(created),
        "obligation_id": data["obligation_id"],
        "obligation_rule_id": data["rule_id"],
        "action": data["action"],
        "deadline_name": data["deadline_name"],
        "due_at": data["due_at"],
        "drill": bool(data.get("incident", {}).get("drill", False)),
    }


def _duty(created: LoggedEvent, rules: FindingRules) -> str:
    """The duty as people read it: its owner, and the party to be informed where that is
    another."""
    data = created.data
    owner = owner_of(created)
    informed = f"告知对象：{rules.name(data['party'])}；" if data["party"] != owner else ""
    return (
        f"{rules.name(owner)}应于 {rules.local(data['due_at'])} 前"
        f"「{data['action_text']}」（{informed}依据 {data['rule_id']} {data['plan_section']}，"
        f"时限：{data.get('deadline_text') or deadline_words_zh(data['deadline_name'])}）"
    )


@dataclass
class _DutyHistory:
    """What the log says happened to one obligation, first occurrence of each."""

    created: LoggedEvent
    met: LoggedEvent | None = None
    waived: LoggedEvent | None = None
    missed: LoggedEvent | None = None
    omitted: LoggedEvent | None = None


def _histories(log: list[LoggedEvent]) -> dict[str, _DutyHistory]:
    histories = {
        str(e.data["obligation_id"]): _DutyHistory(e) for e in log if e.type == "obligation.created"
    }
    slots = {
        "obligation.met": "met",
        "obligation.waived": "waived",
        "deadline.missed": "missed",
        "obligation.omitted": "omitted",
    }
    for event in log:
        history = histories.get(str(event.data.get("obligation_id", "")))
        slot = slots.get(event.type)
        if history is not None and slot is not None and getattr(history, slot) is None:
            setattr(history, slot, event)
    return histories


def _closure(log: list[LoggedEvent]) -> LoggedEvent | None:
    """The incident's closure, once complete.

    Escalation publishes the closure, then the waivers it implies, then R14's investigation
    obligation, in one transaction; only once that last one is logged is the closure complete.
    """
    closed = next(
        (e for e in log if e.type == "incident.status_changed" and e.data["status"] == "CLOSED"),
        None,
    )
    closing_done = any(
        e.type == "obligation.created" and e.data.get("trigger") == "action:CLOSED" for e in log
    )
    return closed if closing_done else None


def _late_and_omitted(
    log: list[LoggedEvent], everything: list[LoggedEvent], rules: FindingRules
) -> list[Found]:
    """R10 for a duty done late (also after it was missed); R11 for a duty undone when the
    incident closed or when escalation says it is still undone long past its deadline
    (`obligation.omitted`). A deadline passing is neither: the duty may yet be done. A duty
    waived (no longer applying, e.g. after a correction) is nobody's failure.

    A duty a merge moved (R20) is one duty: where it was waived with `moved_to` nothing is
    judged; where it lives on (`moved_from`, same due time) it is judged once, its deadline
    passing before the move counting as its own."""
    by_id = {e.id: e for e in log}
    closed = _closure(log)
    found: list[Found] = []
    earlier = _histories(everything)
    for history in _histories(log).values():
        _carry_over(history, earlier)
        met = history.met
        if met is not None:
            if met.data["status"] == "MET_LATE":
                found.append(_late(history, met, closed, by_id, rules))
        elif history.waived is not None:
            continue
        elif history.omitted is not None:
            at = history.omitted.data["omitted_at"]
            overdue = datetime.fromisoformat(at) - datetime.fromisoformat(
                history.created.data["due_at"]
            )
            found.append(
                _omitted(
                    history,
                    history.omitted,
                    at,
                    f"截至 {rules.local(at)}（逾期 {duration_zh(overdue)}）仍未见办理记录",
                    rules,
                )
            )
        elif closed is not None and history.created.index < closed.index:
            at = closed.data["changed_at"]
            found.append(
                _omitted(history, closed, at, f"事件于 {rules.local(at)} 处置结束时仍未办理", rules)
            )
    return found


def _carry_over(history: _DutyHistory, earlier: Mapping[str, _DutyHistory]) -> None:
    """A moved duty keeps what happened to it before the move: the deadline seen passed."""
    seen: set[str] = set()
    moved_from = history.created.data.get("moved_from")
    while moved_from and str(moved_from) in earlier and str(moved_from) not in seen:
        seen.add(str(moved_from))
        before = earlier[str(moved_from)]
        if history.missed is None and before.missed is not None:
            history.missed = before.missed
        moved_from = before.created.data.get("moved_from")


def _moved_words(obligation: LoggedEvent) -> str | None:
    if not obligation.data.get("moved_from"):
        return None
    return "该义务系事件合并（R20）时由另一事件移来，到期时间不变"


def _late(
    history: _DutyHistory,
    met: LoggedEvent,
    closed: LoggedEvent | None,
    by_id: Mapping[str, LoggedEvent],
    rules: FindingRules,
) -> Found:
    """R10, lateness measured from `met_at`, the system's receipt of what met the duty."""
    obligation, data = history.created, met.data
    owner = owner_of(obligation)
    met_at = datetime.fromisoformat(data["met_at"])
    late_by = met_at - datetime.fromisoformat(obligation.data["due_at"])
    evidence = {obligation.index, met.index}
    met_by = by_id.get(str(data["met_by_event_id"]))
    if met_by is not None:
        evidence.add(met_by.index)
    recorder = data.get("recorded_by") or (met_by.data.get("party") if met_by else None) or owner
    sentences = [
        f"{_duty(obligation, rules)}，系统于 {rules.local(met_at)} 收到办理记录，"
        f"逾期 {duration_zh(late_by)}"
    ]
    if data.get("on_behalf_of"):
        sentences.append(f"由{rules.name(recorder)}代{rules.name(data['on_behalf_of'])}记录")
    elif recorder != owner:
        sentences.append(f"以{rules.name(recorder)}的记录或确认为凭")
    asserted: tuple[str, ...] = ()
    if data.get("asserted_at"):
        line = f"{rules.short_name(recorder)}称实际于 {rules.local(data['asserted_at'])} 完成"
        asserted = (line,)
        sentences.append(f"{line}（系记录方自述，仅作证据参考，逾期以系统收到时间计）")
    seen_undone = history.omitted or (
        closed if closed is not None and closed.index < met.index else None
    )
    if moved := _moved_words(obligation):
        sentences.append(moved)
    if history.missed is not None:
        evidence.add(history.missed.index)
        sentences.append(f"此前于 {rules.local(history.missed.data['missed_at'])} 已逾期未办")
    if seen_undone is not None and seen_undone.index < met.index:
        evidence.add(seen_undone.index)
        sentences.append("曾列为疑似漏报（R11），补办后改按迟报（R10）核查")
    return (
        f"R10:{obligation.data['obligation_id']}",
        {
            **_obligation_fields(obligation),
            "rule_id": "R10",
            "kind": "LATE",
            "happened_at": met_at,
            "detail": "，".join(sentences) + "。",
            "evidence_log_indexes": tuple(sorted(evidence)),
            "asserted": asserted,
        },
    )


def _omitted(
    history: _DutyHistory, seen: LoggedEvent, at: str, outcome: str, rules: FindingRules
) -> Found:
    """R11 for an obligation; one per obligation, however its omission was seen."""
    obligation = history.created
    evidence = {obligation.index, seen.index}
    if history.missed is not None:
        evidence.add(history.missed.index)
    return (
        f"R11:{obligation.data['obligation_id']}",
        {
            **_obligation_fields(obligation),
            "rule_id": "R11",
            "kind": "OMITTED",
            "happened_at": at,
            "detail": "，".join(
                [_duty(obligation, rules), outcome, *filter(None, [_moved_words(obligation)])]
            )
            + "。",
            "evidence_log_indexes": tuple(sorted(evidence)),
        },
    )


def _stale(log: list[LoggedEvent], rules: FindingRules) -> list[Found]:
    """R9: an open incident with nothing new for escalation's quiet period; one finding for
    the party told (the BLO) per quiet spell, instead of daily escalations."""
    reported = next((e for e in log if e.type == "incident.reported"), None)
    found: list[Found] = []
    for event in log:
        if event.type != "incident.went_quiet":
            continue
        data = event.data
        last = datetime.fromisoformat(data["last_news_at"])
        noticed = datetime.fromisoformat(data["noticed_at"])
        evidence = sorted({event.index, *([reported.index] if reported else [])})
        found.append(
            (
                f"R9:{last.astimezone(UTC).isoformat()}",
                {
                    "rule_id": "R9",
                    "kind": "STALE",
                    "party": data["party"],
                    "happened_at": noticed,
                    "detail": f"事件尚未结束，自 {rules.local(last)} 起未见新的续报或处置记录，"
                    f"至 {rules.local(noticed)} 已 {duration_zh(noticed - last)}；"
                    f"续报应至少每日一次（依据 R9 四），请{rules.name(data['party'])}核查"
                    "事件是否仍在处置或应予结束。",
                    "evidence_log_indexes": tuple(evidence),
                    "drill": bool(data.get("drill", False)),
                },
            )
        )
    return found


REPORT_KIND_NAMES_ZH = {
    "FIRST": "首报",
    "LINKED": "关联报告",
    "FOLLOW_UP": "续报",
    "CORRECTION": "更正",
}
CONCEALED_LATE_KEY = "R12:reported-first-by-others"
CONCEALED_UNREPORTED_KEY = "R12:reported-first-by-others:unreported"


def fact_now(log: Iterable[LoggedEvent], name: str) -> Any:
    """One fact of the incident as it now stands: as first reported, changed by every 续报,
    correction since, and every link, merge or unlink that kept it (R20: the event's facts;
    one that linked or merged it into another changed the other's facts, not its own)."""
    value: Any = None
    own: str | None = None
    for event in log:
        data = event.data
        if event.type == "incident.reported":
            own, value = str(data["incident_id"]), data["facts"].get(name)
        elif event.type == "incident.report_filed" or (
            event.type in LINK_TYPES and str(data["incident_id"]) == own
        ):
            value = data.get("changes", {}).get(name, value)
    return value


def _concealed(
    incident_id: str,
    log: list[LoggedEvent],
    everything: list[LoggedEvent],
    rules: FindingRules,
) -> list[Found]:
    """R12 judged on the event (R20): the reports of the event are each of its incidents' first
    report and the reports linked on arrival to any of them, the follow-ups and corrections
    filed on them besides. An incident linked or merged into another is judged there."""
    if kept_by(incident_id, everything) is not None:
        return []
    reports = reports_of_event(incident_id, everything)
    stated = [report for report in reports if report.facts is not None]
    if not stated:
        return []
    first = stated[0]
    township = fact_now(log, "township_code") or (first.facts or {})["township_code"]
    drill = bool(fact_now(log, "drill"))
    return [
        *_discovered_before_reported(stated, drill, rules),
        *_reported_first_by_others(
            f"SFS:{township}", reports, max(everything, key=_time_order), drill, rules
        ),
    ]


def _time_order(event: LoggedEvent) -> tuple[datetime, int]:
    return event.time, event.index


def _sources(reports: Iterable[EventReport], rules: FindingRules) -> str:
    """The reports a finding rests on, each with its source, time and log index."""
    return "；".join(
        f"{rules.name(report.party)} {rules.local(report.at)} "
        f"{REPORT_KIND_NAMES_ZH[report.kind]}（日志序号 {report.index}）"
        for report in reports
    )


def _discovered_before_reported(
    stated: list[EventReport], drill: bool, rules: FindingRules
) -> list[Found]:
    """R12 (a): the earliest discovery any report of the event states, against the earliest
    report of the event. The party that stated that discovery knew of the event then."""
    first = stated[0]
    discoveries = [
        (instant, report)
        for report in stated
        if (instant := _instant((report.facts or {}).get("discovered_at"))) is not None
    ]
    if not discoveries:
        return []
    discovered, by = min(discoveries, key=lambda pair: (pair[0], pair[1].at, pair[1].index))
    gap = first.at - discovered
    if gap <= rules.concealment_threshold:
        return []
    sentences = [
        f"事件于 {rules.local(discovered)} 被发现，{rules.name(first.party)}于 "
        f"{rules.local(first.at)} 才首报（系统收到本事件最早一份报告的时间），"
        f"相隔 {duration_zh(gap)}，超过 {duration_zh(rules.concealment_threshold)}",
        f"发现时间系{rules.short_name(by.party)}所报，仅作证据参考",
    ]
    if len(stated) > 1:
        sentences.append(f"本事件的报告：{_sources(stated, rules)}")
    return [
        (
            "R12:discovered",
            {
                "rule_id": "R12",
                "kind": "CONCEALED",
                "party": by.party,
                "happened_at": first.at,
                "detail": "；".join(sentences) + "。",
                "evidence_log_indexes": tuple(sorted({first.index, by.index})),
                "drill": drill,
                "asserted": _asserted_by_reporter(by.facts or {}, by.party, rules),
            },
        )
    ]


def _reported_first_by_others(
    office: str,
    reports: list[EventReport],
    latest: LoggedEvent,
    drill: bool,
    rules: FindingRules,
) -> list[Found]:
    """R12 (b): the event first reported by another source than the township's 司法所. No
    suspicion when the office's own first report of the event (its incident's first report, a
    report of its linked on arrival, or a follow-up it filed) came within the threshold of it;
    a finding naming both times when it came later. While the office has not reported, the
    threshold is judged passed against the latest event of the event's log: findings are
    computed when events arrive, and the finding says as of when."""
    first = next(report for report in reports if report.facts is not None)
    if first.party == office:
        return []
    told_by = {
        PartyKind.PPS: "公安机关",
        PartyKind.PLATFORM: "",  # its name says it is the police's
    }.get(party_kind_of(first.party), "其他单位或群众")
    opening = f"本事件由{told_by}{rules.name(first.party)}于 {rules.local(first.at)} 首报"
    threshold = duration_zh(rules.concealment_threshold)
    own = next((report for report in reports if report.party == office), None)
    if own is not None:
        gap = own.at - first.at
        if gap <= rules.concealment_threshold:
            return []
        key, happened_at, evidence = CONCEALED_LATE_KEY, own.at, {first.index, own.index}
        detail = (
            f"{opening}，{rules.name(office)}于 {rules.local(own.at)} 才报告"
            f"（{REPORT_KIND_NAMES_ZH[own.kind]}），相隔 {duration_zh(gap)}，超过 {threshold}；"
            f"依据：{_sources([first, own], rules)}。"
        )
    else:
        if latest.time - first.at <= rules.concealment_threshold:
            return []
        key, happened_at, evidence = CONCEALED_UNREPORTED_KEY, latest.time, {first.index}
        evidence.add(latest.index)
        detail = (
            f"{opening}，截至 {rules.local(latest.time)}（日志中本事件最新一条记录的时间）"
            f"未见{rules.name(office)}报告，已超过 {threshold}；依据：{_sources([first], rules)}。"
        )
    return [
        (
            key,
            {
                "rule_id": "R12",
                "kind": "CONCEALED",
                "party": office,
                "happened_at": happened_at,
                "detail": detail,
                "evidence_log_indexes": tuple(sorted(evidence)),
                "drill": drill,
            },
        )
    ]


ASSERTED_TIMES = (("discovered_at", "称事件于 {} 被发现"), ("occurred_at", "称事件发生于 {}"))


def _asserted_by_reporter(
    facts: Mapping[str, Any], reporter: str, rules: FindingRules
) -> tuple[str, ...]:
    """The times a report states as facts: the reporter's word, shown as such (R12)."""
    return tuple(
        f"{rules.short_name(reporter)}{wording.format(rules.local(facts[name]))}"
        for name, wording in ASSERTED_TIMES
        if facts.get(name)
    )


def _shown(field: str, value: Any, rules: FindingRules) -> Any:
    if value is None:
        return None
    if field == "category":
        return CATEGORY_NAMES_ZH[Category(value)]
    if field == "phase":
        return PHASE_NAMES_ZH[Phase(value)]
    if field in TIME_FACTS:
        return rules.local(value)
    if field == "subjects":
        return "、".join(subject.get("name", "") for subject in value)
    return value


def _differs(field: str, previous: Any, current: Any) -> bool:
    if previous is None:
        return False  # a fact stated for the first time completes a report, it corrects none
    if field in TIME_FACTS:
        return _instant(previous) != _instant(current)
    if field == "subjects":
        return {s.get("id") for s in previous} != {s.get("id") for s in (current or [])}
    return previous != current


# A 续报 that moves the phase on (signs → under way → happened) reports news, not a
# contradiction: the subject who threatened is now attacking someone.
PHASE_ORDER = (Phase.SIGNS, Phase.IN_PROGRESS, Phase.OCCURRED)


def _develops(field: str, previous: Any, current: Any) -> bool:
    if field != "phase" or previous not in PHASE_ORDER or current not in PHASE_ORDER:
        return False
    return PHASE_ORDER.index(Phase(current)) > PHASE_ORDER.index(Phase(previous))


def _false(log: list[LoggedEvent], rules: FindingRules) -> list[Found]:
    """R13: every report that contradicts a fact already stated, whatever it calls itself.

    A follow-up (续报) may add what was unknown; changing what was stated is a correction in
    substance, and judged as one.
    """
    stated_by: dict[str, tuple[str, int]] = {}
    drill = False
    found: list[Found] = []
    for event in log:
        if event.type == "incident.reported":
            party = event.data["reporter"]["party"]
            drill = bool(event.data["facts"].get("drill", False))
            stated_by = {field: (party, event.index) for field in CONTRADICTABLE}
        elif event.type == "incident.report_filed":
            data = event.data
            contradicted: dict[str, list[FactVersions]] = {}
            evidence: dict[str, set[int]] = {}
            for field, label in CONTRADICTABLE.items():
                if field not in data["changes"]:
                    continue
                previous, current = data["previous"].get(field), data["changes"][field]
                if not _differs(field, previous, current):
                    continue
                if data["kind"] == "FOLLOW_UP" and _develops(field, previous, current):
                    continue
                party, index = stated_by.get(field, (data["reporter"]["party"], event.index))
                contradicted.setdefault(party, []).append(
                    FactVersions(
                        field=field,
                        label=label,
                        previous=_shown(field, previous, rules),
                        current=_shown(field, current, rules),
                        stated_by=party,
                    )
                )
                evidence.setdefault(party, {event.index}).add(index)
            how = "更正了" if data["kind"] == "CORRECTION" else "在续报中改变了"
            for party, versions in contradicted.items():
                changes = "；".join(
                    f"{v.label}：原报「{v.previous}」，更正为「{v.current}」" for v in versions
                )
                found.append(
                    (
                        f"R13:{data['report_id']}:{party}",
                        {
                            "rule_id": "R13",
                            "kind": "FALSE",
                            "party": party,
                            "happened_at": data["filed_at"],
                            "detail": f"{rules.name(data['reporter']['party'])}于 "
                            f"{rules.local(data['filed_at'])} {how}{rules.name(party)}所报事实："
                            f"{changes}。",
                            "evidence_log_indexes": tuple(sorted(evidence[party])),
                            "versions": tuple(versions),
                            "drill": drill,
                        },
                    )
                )
            for field in data["changes"]:
                if field in CONTRADICTABLE:
                    stated_by[field] = (data["reporter"]["party"], event.index)
    return found


def _key_monitoring(log: list[LoggedEvent], rules: FindingRules) -> list[Found]:
    reported = next((e for e in log if e.type == "incident.reported"), None)
    found: list[Found] = []
    for event in log:
        if event.type != "obligation.created" or event.data["rule_id"] != "R17":
            continue
        names = "、".join(event.data["incident"].get("subject_names", ())) or "涉事对象"
        evidence = sorted({event.index, *([reported.index] if reported else [])})
        found.append(
            (
                f"R17:{event.data['obligation_id']}",
                {
                    **_obligation_fields(event),
                    "rule_id": "R17",
                    "kind": "KEY_MONITORING_SUGGESTED",
                    "happened_at": event.time,
                    "detail": f"社区矫正对象{names}在 30 日内再次出现苗头迹象，建议"
                    f"{rules.name(event.data['party'])}于 {rules.local(event.data['due_at'])} 前"
                    "将其列为重点监控对象（依据 R17 五(三)）。",
                    "evidence_log_indexes": tuple(evidence),
                },
            )
        )
    return found
