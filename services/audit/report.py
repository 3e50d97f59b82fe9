"""The investigation report draft of R14 (六(一)), in Chinese, as Markdown or HTML; pure.

`build_view` turns an incident's logged events, its findings and the checkpoint with the
proofs that anchor them into a view; `render` fills a Jinja2 template (templates/) with it.
Sections the bureau writes itself (经验总结, 整改意见) are left for people to complete.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2

from services.audit.findings import LoggedEvent, local
from shared.domain import CATEGORY_NAMES_ZH, PHASE_NAMES_ZH, Category, Phase
from shared.events.models import AccountabilityFinding

Format = Literal["markdown", "html"]
TEMPLATES = Path(__file__).resolve().parent / "templates"

ACTION_NAMES_ZH = {
    "FIRST_RESPONSE_STARTED": "开展先期处置",
    "UNCONTROLLABLE": "先期处置不能控制",
    "SEARCH_STARTED": "组织查找",
    "SEARCH_FAILED": "查找未果",
    "FOUND": "已找到",
    "POLICE_CALLED": "已报警",
    "REPORTED": "已报告",
    "WRITTEN_NOTICE_SENT": "已书面通知",
    "PLAN_ACTIVATED": "已启动预案",
    "ON_SCENE": "已到现场",
    "COUNSELLING_DONE": "已教育疏导",
    "KEY_MONITORING": "已实施重点监控",
    "DEPARTMENTS_CONTACTED": "已联系相关部门",
    "RELIEF_JOINED": "已参加救助",
    "CONTROLLED": "事态已控制",
    "CLOSED": "处置结束",
    "INVESTIGATION_REPORT_FILED": "已报送调查报告",
}
STATUS_NAMES_ZH = {
    "REPORTED": "已报告",
    "RESPONDING": "处置中",
    "SEARCHING": "查找中",
    "ESCALATED": "已升级",
    "CONTROLLED": "已控制",
    "CLOSED": "处置结束",
    "REVIEWED": "已调查",
}
NOTIFICATION_NAMES_ZH = {
    "notification.delivered": "通知已送达",
    "notification.failed": "通知发送失败",
    "notification.acknowledged": "通知已确认",
    "notification.unacknowledged": "通知无人确认",
}


@dataclass(frozen=True)
class TimelineRow:
    index: int
    time: str
    party: str
    what: str


@dataclass(frozen=True)
class ProofRow:
    index: int
    leaf_hash: str
    proof: tuple[str, ...]
    covered: bool


@dataclass(frozen=True)
class Anchor:
    """The signed checkpoint and, per leaf, the inclusion proof against it."""

    note: str
    size: int
    root_hash: str
    proofs: tuple[ProofRow, ...] = ()


@dataclass(frozen=True)
class ReportView:
    incident_id: str
    generated_at: str
    drill: bool
    overview: tuple[tuple[str, str], ...]
    timeline: tuple[TimelineRow, ...]
    findings: tuple[AccountabilityFinding, ...]
    anchor: Anchor | None
    party_names: Mapping[str, str] = field(default_factory=dict)

    def party(self, code: str | None) -> str:
        if not code:
            return "—"
        return f"{self.party_names[code]}（{code}）" if code in self.party_names else code


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _facts(events: Sequence[LoggedEvent]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The incident's facts as corrected and completed so far, and its first report."""
    reported = next((e for e in events if e.type == "incident.reported"), None)
    facts: dict[str, Any] = dict(reported.data["facts"]) if reported else {}
    for event in events:
        if event.type == "incident.report_filed":
            facts.update(event.data["changes"])
    return facts, (dict(reported.data) if reported else None)


def _overview(
    events: Sequence[LoggedEvent], names: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    facts, first = _facts(events)
    if first is None:
        return (("事件", "日志中没有首报"),)

    def name(code: str) -> str:
        return f"{names[code]}（{code}）" if code in names else code

    category = facts.get("category")
    phase = facts.get("phase")
    closed = next(
        (e for e in events if e.type == "incident.status_changed" and e.data["status"] == "CLOSED"),
        None,
    )
    return (
        ("事件种类", f"{CATEGORY_NAMES_ZH[Category(category)]}（{category}）" if category else "—"),
        ("事态阶段", PHASE_NAMES_ZH[Phase(phase)] if phase else "—"),
        ("发生地", f"{facts.get('township_name', '')} {facts.get('location') or ''}".strip()),
        ("发生时间", local(facts.get("occurred_at")) if facts.get("occurred_at") else "—"),
        ("发现时间", local(facts.get("discovered_at")) if facts.get("discovered_at") else "—"),
        (
            "首报",
            f"{name(first['reporter']['party'])} {first['reporter']['name']}，"
            f"{local(first['reported_at'])}",
        ),
        ("涉及对象", "、".join(s["name"] for s in facts.get("subjects", ())) or "—"),
        ("涉及人员基本情况", facts.get("persons_involved") or "—"),
        ("事态发展情况", facts.get("summary") or "—"),
        ("已采取的措施", facts.get("measures_taken") or "—"),
        ("处置结束", local(closed.data["changed_at"]) if closed else "尚未结束"),
    )


def describe(event: LoggedEvent) -> tuple[str | None, str]:
    """Who acted in a logged event, and what happened, in Chinese."""
    data = event.data
    match event.type:
        case "incident.reported":
            facts = data["facts"]
            return data["reporter"]["party"], (
                f"首报：{CATEGORY_NAMES_ZH[Category(facts['category'])]}，"
                f"{PHASE_NAMES_ZH[Phase(facts['phase'])]}，{facts.get('location') or ''}"
            ).rstrip("，")
        case "incident.action_recorded":
            action = data["action"]
            return data["party"], f"记录处置：{ACTION_NAMES_ZH.get(action, action)}（{action}）" + (
                f"，{data['note']}" if data.get("note") else ""
            )
        case "incident.report_filed":
            kind = "更正" if data["kind"] == "CORRECTION" else "续报"
            changed = "、".join(data["changes"]) or "无事实变更"
            return data["reporter"]["party"], f"{kind}：{changed}" + (
                f"。{data['text']}" if data.get("text") else ""
            )
        case "obligation.created":
            return data["party"], (
                f"应办：{data['action_text']}，时限 {data['deadline_name']}，"
                f"{local(data['due_at'])} 前（{data['rule_id']} {data['plan_section']}）"
            )
        case "obligation.met":
            on_time = "按时办结" if data["status"] == "MET" else "逾期办结"
            return data["party"], f"{on_time}（{data['rule_id']}），{local(data['met_at'])}"
        case "obligation.waived":
            return data["party"], f"不再需要（{data['rule_id']}）：{data['reason']}"
        case "deadline.missed":
            escalated = f"，升级至 {data['escalated_to']}" if data.get("escalated_to") else ""
            return data["party"], f"逾期未办（{data['rule_id']} {data['action']}）{escalated}"
        case "incident.status_changed":
            previous = STATUS_NAMES_ZH.get(data.get("previous_status") or "", "—")
            return None, f"状态：{previous} → {STATUS_NAMES_ZH.get(data['status'], data['status'])}"
        case "action.rejected":
            return None, f"动作不被接受：{data['action']}（{data['reason']}）"
        case "audit.finding":
            return data[
                "party"
            ], f"审计发现：{data.get('title') or data['kind']}（{data['rule_id']}）"
        case _ if event.type in NOTIFICATION_NAMES_ZH:
            channel = f"，经 {data['channel']}" if data.get("channel") else ""
            return data.get("party"), f"{NOTIFICATION_NAMES_ZH[event.type]}{channel}"
    return None, event.type


def build_view(
    incident_id: str,
    events: Sequence[LoggedEvent],
    findings: Sequence[AccountabilityFinding],
    anchor: Anchor | None,
    party_names: Mapping[str, str],
    generated_at: datetime,
) -> ReportView:
    ordered = sorted(events, key=lambda event: (event.time, event.index))
    rows = []
    for event in ordered:
        party, what = describe(event)
        rows.append(TimelineRow(event.index, local(event.time), party or "系统", what))
    _, first = _facts(events)
    return ReportView(
        incident_id=incident_id,
        generated_at=local(generated_at),
        drill=bool(first and first["facts"].get("drill")),
        overview=_overview(ordered, party_names),
        timeline=tuple(rows),
        findings=tuple(findings),
        anchor=anchor,
        party_names=dict(party_names),
    )


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _cell(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(view: ReportView, fmt: Format) -> str:
    environment = _environment(fmt == "html")
    environment.filters["cell"] = _cell
    environment.filters["local"] = local
    template = environment.get_template(
        "investigation_report.html.j2" if fmt == "html" else "investigation_report.md.j2"
    )
    return template.render(view=view)
