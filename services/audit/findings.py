"""Accountability findings (RULES.md R10–R13, R17) computed from one incident's log; pure.

A finding is a suspicion for people to judge, never a verdict: its wording says 疑似…，供核查.
Each names its rule, the party, the obligation and deadline where there is one, what happened
and when, and the log indices that prove it. Its id is derived from what it is about, so
computing the same log again yields the same findings and none is published twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from shared.domain import (
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

LOCAL_TIME = ZoneInfo("Asia/Shanghai")
FINDING_NAMESPACE = UUID("5b0c3a52-7d1e-4a55-9a43-0c6f3f6d2e11")

TITLES = {
    "LATE": "疑似迟报，供核查",
    "OMITTED": "疑似漏报，供核查",
    "CONCEALED": "疑似瞒报，供核查",
    "FALSE": "疑似谎报，供核查",
    "KEY_MONITORING_SUGGESTED": "建议列为重点监控，供核查",
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
        "deadline.missed",
    }
)


@dataclass(frozen=True)
class LoggedEvent:
    """One leaf of the log as findings see it."""

    index: int
    id: str
    type: str
    time: datetime
    data: Mapping[str, Any]

    @classmethod
    def from_leaf(cls, index: int, leaf: bytes) -> LoggedEvent:
        document = json.loads(leaf)
        return cls(
            index=index,
            id=document["id"],
            type=document["type"],
            time=datetime.fromisoformat(document["time"]),
            data=document["data"],
        )


@dataclass(frozen=True)
class FindingRules:
    """What a deployment may tune, and how parties are named in the wording."""

    concealment_threshold: timedelta = timedelta(hours=1)
    party_names: Mapping[str, str] | None = None

    def name(self, party: str) -> str:
        names = self.party_names or {}
        return f"{names[party]}（{party}）" if party in names else party_name_zh(party)


def local(moment: datetime | str | None) -> str:
    if moment is None:
        return "（未知）"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(LOCAL_TIME).strftime("%Y-%m-%d %H:%M:%S")


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
    """Every finding the incident's log supports, in the order of their evidence."""
    log = sorted(events, key=lambda event: event.index)
    found = [
        *_late_and_omitted(log, rules),
        *_concealed(log, rules),
        *_false(log, rules),
        *_key_monitoring(log, rules),
    ]
    unique: dict[str, dict[str, Any]] = {}
    for key, fields in found:
        unique.setdefault(key, fields)
    findings = [
        AccountabilityFinding(
            finding_id=uuid5(FINDING_NAMESPACE, f"{incident_id}:{key}"),
            incident_id=incident_id,
            title=TITLES[fields["kind"]],
            **fields,
        )
        for key, fields in unique.items()
    ]
    return sorted(findings, key=lambda finding: finding.evidence_log_indexes)


Found = tuple[str, dict[str, Any]]


def _obligation_fields(created: LoggedEvent) -> dict[str, Any]:
    data = created.data
    return {
        "party": data["party"],
        "obligation_id": data["obligation_id"],
        "obligation_rule_id": data["rule_id"],
        "action": data["action"],
        "deadline_name": data["deadline_name"],
        "due_at": data["due_at"],
        "drill": bool(data.get("incident", {}).get("drill", False)),
    }


def _duty(created: LoggedEvent, rules: FindingRules) -> str:
    data = created.data
    return (
        f"{rules.name(data['party'])}应于 {local(data['due_at'])} 前"
        f"「{data['action_text']}」（依据 {data['rule_id']} {data['plan_section']}，"
        f"时限：{data.get('deadline_text') or deadline_words_zh(data['deadline_name'])}）"
    )


def _late_and_omitted(log: list[LoggedEvent], rules: FindingRules) -> list[Found]:
    created = {e.data["obligation_id"]: e for e in log if e.type == "obligation.created"}
    by_id = {e.id: e for e in log}
    settled: set[str] = set()
    found: list[Found] = []
    for event in log:
        obligation = created.get(event.data.get("obligation_id", ""))
        if event.type in ("obligation.met", "obligation.waived", "deadline.missed"):
            settled.add(event.data["obligation_id"])
        if obligation is None:
            continue
        if event.type == "obligation.met" and event.data["status"] == "MET_LATE":
            met_at = datetime.fromisoformat(event.data["met_at"])
            late_by = met_at - datetime.fromisoformat(obligation.data["due_at"])
            evidence = [obligation.index, event.index]
            met_by = by_id.get(str(event.data["met_by_event_id"]))
            if met_by is not None:
                evidence.append(met_by.index)
            found.append(
                (
                    f"R10:{obligation.data['obligation_id']}",
                    {
                        **_obligation_fields(obligation),
                        "rule_id": "R10",
                        "kind": "LATE",
                        "happened_at": met_at,
                        "detail": f"{_duty(obligation, rules)}，实际于 {local(met_at)} 完成，"
                        f"逾期 {duration_zh(late_by)}。",
                        "evidence_log_indexes": tuple(sorted(evidence)),
                    },
                )
            )
        elif event.type == "deadline.missed":
            at = event.data["missed_at"]
            found.append(_omitted(obligation, event, at, f"截至 {local(at)} 未见办理记录", rules))
    found += _pending_at_closure(log, created, settled, rules)
    # R11: an omission done later becomes R10 (late), not both.
    done_late = {
        f"R11:{e.data['obligation_id']}"
        for e in log
        if e.type == "obligation.met" and e.data["status"] == "MET_LATE"
    }
    return [finding for finding in found if finding[0] not in done_late]


def _omitted(
    obligation: LoggedEvent, seen: LoggedEvent, at: str, outcome: str, rules: FindingRules
) -> Found:
    """R11 for an obligation; one per obligation, however its omission was seen."""
    return (
        f"R11:{obligation.data['obligation_id']}",
        {
            **_obligation_fields(obligation),
            "rule_id": "R11",
            "kind": "OMITTED",
            "happened_at": at,
            "detail": f"{_duty(obligation, rules)}，{outcome}。",
            "evidence_log_indexes": (obligation.index, seen.index),
        },
    )


def _pending_at_closure(
    log: list[LoggedEvent],
    created: Mapping[str, LoggedEvent],
    settled: set[str],
    rules: FindingRules,
) -> list[Found]:
    """R11: obligations neither met, missed nor waived when the incident was closed.

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
    if closed is None or not closing_done:
        return []
    at = closed.data["changed_at"]
    return [
        _omitted(obligation, closed, at, f"事件于 {local(at)} 处置结束时仍未办理", rules)
        for obligation_id, obligation in created.items()
        if obligation_id not in settled and obligation.index < closed.index
    ]


def _concealed(log: list[LoggedEvent], rules: FindingRules) -> list[Found]:
    reported = next((e for e in log if e.type == "incident.reported"), None)
    if reported is None:
        return []
    data = reported.data
    facts, reporter = data["facts"], data["reporter"]
    drill = bool(facts.get("drill", False))
    found: list[Found] = []
    discovered = _instant(facts.get("discovered_at"))
    reported_at = datetime.fromisoformat(data["reported_at"])
    if discovered is not None and reported_at - discovered > rules.concealment_threshold:
        found.append(
            (
                "R12:discovered",
                {
                    "rule_id": "R12",
                    "kind": "CONCEALED",
                    "party": reporter["party"],
                    "happened_at": reported_at,
                    "detail": f"事件于 {local(discovered)} 被发现，"
                    f"{rules.name(reporter['party'])}于 {local(reported_at)} 才首报，"
                    f"相隔 {duration_zh(reported_at - discovered)}，"
                    f"超过 {duration_zh(rules.concealment_threshold)}。",
                    "evidence_log_indexes": (reported.index,),
                    "drill": drill,
                },
            )
        )
    if party_kind_of(reporter["party"]) != PartyKind.SFS:
        office = f"SFS:{facts['township_code']}"
        own = next(
            (
                e
                for e in log
                if e.type == "incident.report_filed" and e.data["reporter"]["party"] == office
            ),
            None,
        )
        told_by = {
            PartyKind.PPS: "公安机关",
            PartyKind.PLATFORM: "",  # its name says it is the police's
        }.get(party_kind_of(reporter["party"]), "其他单位或群众")
        later = (
            f"{rules.name(office)}于 {local(own.data['filed_at'])} 才报告"
            if own is not None
            else f"此前未见{rules.name(office)}报告"
        )
        found.append(
            (
                "R12:reported-first-by-others",
                {
                    "rule_id": "R12",
                    "kind": "CONCEALED",
                    "party": office,
                    "happened_at": reported_at,
                    "detail": f"本事件由{told_by}{rules.name(reporter['party'])}"
                    f"于 {local(reported_at)} 首报，{later}。",
                    "evidence_log_indexes": tuple(
                        [reported.index] + ([own.index] if own is not None else [])
                    ),
                    "drill": drill,
                },
            )
        )
    return found


def _shown(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "category":
        return CATEGORY_NAMES_ZH[Category(value)]
    if field == "phase":
        return PHASE_NAMES_ZH[Phase(value)]
    if field in TIME_FACTS:
        return local(value)
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
                party, index = stated_by.get(field, (data["reporter"]["party"], event.index))
                contradicted.setdefault(party, []).append(
                    FactVersions(
                        field=field,
                        label=label,
                        previous=_shown(field, previous),
                        current=_shown(field, current),
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
                            f"{local(data['filed_at'])} {how}{rules.name(party)}所报事实："
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
                    f"{rules.name(event.data['party'])}于 {local(event.data['due_at'])} 前"
                    "将其列为重点监控对象（依据 R17 五(三)）。",
                    "evidence_log_indexes": tuple(evidence),
                },
            )
        )
    return found
