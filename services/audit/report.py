"""The investigation report draft of R14 (六(一)), in Chinese, as Markdown or HTML; pure.

`build_view` turns an incident's logged events, its findings, what people judged of them
(reviews, R15's commendations and disciplines) and the checkpoint with the proofs that anchor
them into a view; `render` fills a Jinja2 template (templates/) with it. Every time is written
in the county's zone. Sections the bureau writes itself (经验总结, 整改意见) are left for people
to complete.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import jinja2

from services.audit.findings import REPORT_KIND_NAMES_ZH, LoggedEvent, local, superseded_by
from services.audit.linking import LINK_TYPES, EventReport, reports_of_event
from shared.domain.vocabulary import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    PHASE_NAMES_ZH,
    STATUS_NAMES_ZH,
    Category,
    Phase,
    deadline_words_zh,
    fact_name_zh,
    party_name_zh,
    time_zone_label,
)
from shared.events.models import AccountabilityFinding, AccountabilityRecorded, FindingReviewed

Format = Literal["markdown", "html"]
TEMPLATES = Path(__file__).resolve().parent / "templates"

# A notice says what it told by the event it is about.
NOTICE_NAMES_ZH = {
    "action.rejected": "已告知记录方：记录未被采纳",
    "incident.updated": "已告知事件新情况（R19）",
    "incident.went_quiet": "已告知续报中断（R9）",
    "accountability.recorded": "已告知表彰与处分（R15）",
}

NOTIFICATION_NAMES_ZH = {
    "notification.delivered": "通知已送达",
    "notification.failed": "通知发送失败",
    "notification.acknowledged": "通知已确认",
    "notification.unacknowledged": "通知无人确认",
    "notification.withdrawn": "通知已撤回",
    "notification.notice_attempted": "已告知记录方：记录未被采纳",
}
DECISION_NAMES_ZH = {"CONFIRMED": "确认", "DISMISSED": "排除"}
ACCOUNTABILITY_NAMES_ZH = {"COMMENDATION": "表彰", "DISCIPLINE": "处分"}
# Fields of a personal_data_read (shared.pii.SUBJECT_FIELDS and intake's free text).
READ_FIELD_NAMES_ZH = {
    "subjects.name": "对象姓名",
    "subjects.id_number": "身份证号",
    "free text": "事实描述原文",
    # services.audit.shown.LOG_FIELDS: what a read in clear of the log shows.
    "people.name": "人员姓名",
    "people.phone": "联系电话",
}
CHANNEL_NAMES_ZH = {
    "sms": "短信",
    "voice": "语音电话",
    "email": "电子邮件",
    "webhook": "系统接口",
    "wecom": "企业微信",
    "dingtalk": "钉钉",
    "file": "本地文件",
}


def place(township: str | None, location: str | None) -> str:
    """发生地: the township, then the place, without the township twice when the place names it."""
    township, location = township or "", (location or "").strip()
    if township and location.startswith(township):
        return location
    return f"{township}{location}" or "—"


@dataclass(frozen=True)
class Duties:
    """Obligations of the log by id, so every event about one can say which duty it was."""

    created: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    party_names: Mapping[str, str] = field(default_factory=dict)
    zone: ZoneInfo = field(kw_only=True)

    @classmethod
    def of(
        cls, events: Sequence[LoggedEvent], party_names: Mapping[str, str], zone: ZoneInfo
    ) -> Duties:
        created = {
            str(e.data["obligation_id"]): e.data for e in events if e.type == "obligation.created"
        }
        return cls(created, party_names, zone=zone)

    def local(self, moment: datetime | str | None) -> str:
        return local(moment, self.zone)

    def action_text(self, obligation_id: Any, action: str | None = None) -> str:
        data = self.created.get(str(obligation_id))
        if data is not None:
            return data["action_text"]
        return ACTION_NAMES_ZH.get(action or "", "某项义务")

    def deadline(self, obligation_id: Any, deadline_name: str | None = None) -> str:
        data = self.created.get(str(obligation_id)) or {}
        text = data.get("deadline_text")
        return text or deadline_words_zh(data.get("deadline_name") or deadline_name or "")

    def party(self, code: str) -> str:
        return party_name_zh(code, dict(self.party_names))


@dataclass(frozen=True)
class TimelineRow:
    index: int
    time: str
    party: str
    what: str
    person: str = "—"


@dataclass(frozen=True)
class ReportRow:
    """One report of the event (R20): its source, reporter, time and kind."""

    index: int
    time: str
    party: str
    person: str
    kind: str
    incident: str


@dataclass(frozen=True)
class LinkRow:
    """A link, merge or unlink: what, who, when and why."""

    index: int
    time: str
    what: str
    party: str
    person: str
    reason: str


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
class Judgements:
    """What people decided about an incident's findings: every review (the latest of a
    finding counts, all are shown) and R15's commendations and disciplines, in order."""

    reviews: tuple[FindingReviewed, ...] = ()
    records: tuple[AccountabilityRecorded, ...] = ()


@dataclass(frozen=True)
class ReportView:
    incident_id: str
    generated_at: str
    drill: bool
    overview: tuple[tuple[str, str], ...]
    timeline: tuple[TimelineRow, ...]
    findings: tuple[AccountabilityFinding, ...]
    anchor: Anchor | None
    duties: Duties
    party_names: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    judgements: Judgements = field(default_factory=Judgements)
    superseded: Mapping[UUID, UUID] = field(default_factory=dict)
    reports: tuple[ReportRow, ...] = ()
    links: tuple[LinkRow, ...] = ()

    @property
    def zone_label(self) -> str:
        """北京时间, as the county reads its clock."""
        return time_zone_label(self.duties.zone)

    def local(self, moment: datetime | str | None) -> str:
        return self.duties.local(moment)

    def number_of(self, finding_id: UUID) -> int | None:
        """The finding's number in section 三, as the report refers to it."""
        for number, finding in enumerate(self.findings, start=1):
            if finding.finding_id == finding_id:
                return number
        return None

    def reviews_of(self, finding: AccountabilityFinding) -> list[FindingReviewed]:
        return [r for r in self.judgements.reviews if r.finding_id == finding.finding_id]

    def review_line(self, review: FindingReviewed) -> str:
        return (
            f"{DECISION_NAMES_ZH[review.decision]}，理由：{review.reason}"
            f"（{self.party(review.reviewer_party)} {review.reviewer}，"
            f"{self.local(review.reviewed_at)}）"
        )

    def superseded_line(self, finding: AccountabilityFinding) -> str | None:
        """For an R11 omission done later: which R10 finding now stands in its place; for
        R12's "not reported yet", the finding that names the office's late report."""
        by = self.superseded.get(finding.finding_id)
        if by is None:
            return None
        number = self.number_of(by)
        where = f"第 {number} 条" if number is not None else "迟报认定"
        if finding.rule_id == "R12":
            return f"司法所其后已报告，本条已由{where}（疑似瞒报，R12，载明双方时间）取代"
        return f"该义务已补办，本条已由{where}（疑似迟报，R10）取代，不再按漏报核查"

    def record_heading(self, record: AccountabilityRecorded) -> str:
        return (
            f"{ACCOUNTABILITY_NAMES_ZH[record.kind]}：{record.person}"
            f"（{record.role}，{self.party(record.party)}）"
        )

    def record_findings(self, record: AccountabilityRecorded) -> list[str]:
        """The findings a record rests on, as section 三 names them."""
        by_id = {finding.finding_id: finding for finding in self.findings}
        lines = []
        for finding_id in record.finding_ids:
            finding = by_id.get(finding_id)
            if finding is None:
                lines.append(f"发现 {finding_id}")
                continue
            lines.append(
                f"第 {self.number_of(finding_id)} 条 {finding.title}（{finding.rule_id}）"
                f"— {self.party(finding.party)}"
            )
        return lines

    def party(self, code: str | None) -> str:
        if not code:
            return "—"
        if code in self.party_names:
            return f"{self.party_names[code]}（{code}）"
        return party_name_zh(code)

    def duty(self, finding: AccountabilityFinding) -> str:
        """The obligation a finding is about, as people read it."""
        duties = self.duties
        return (
            f"{duties.action_text(finding.obligation_id, finding.action)}"
            f"（依据 {finding.obligation_rule_id}，"
            f"时限：{duties.deadline(finding.obligation_id, finding.deadline_name)}，"
            f"应于 {self.local(finding.due_at)} 前）"
        )


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _facts(events: Sequence[LoggedEvent]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The incident's facts as corrected and completed so far (by 续报, corrections, and the
    links and merges it kept, R20), and its first report."""
    reported = next((e for e in events if e.type == "incident.reported"), None)
    facts: dict[str, Any] = dict(reported.data["facts"]) if reported else {}
    own = str(reported.data["incident_id"]) if reported else None
    for event in events:
        if event.type == "incident.report_filed" or (
            event.type in LINK_TYPES and str(event.data["incident_id"]) == own
        ):
            facts.update(event.data.get("changes", {}))
    return facts, (dict(reported.data) if reported else None)


def latest_sealed_subjects(events: Sequence[LoggedEvent]) -> dict[str, str] | None:
    """The subjects as last stated, sealed (`sealed_subjects` of the first report or of the
    last report, link or merge that changed them; R20: a link or merge changes those of the
    incident it keeps only), in log order; None when no event carries them."""
    sealed, own = None, None
    for event in sorted(events, key=lambda event: (event.time, event.index)):
        if event.type == "incident.reported":
            own = str(event.data["incident_id"])
        if event.type in ("incident.reported", "incident.report_filed") or (
            event.type in LINK_TYPES and str(event.data["incident_id"]) == own
        ):
            sealed = event.data.get("sealed_subjects") or sealed
    return sealed


def subject_line(subject: Mapping[str, Any]) -> str:
    """One subject as the report to the city office names them: name, 编号, 身份证号; in clear
    (`id_number`) or as events carry them (`id_number_masked`)."""
    id_number = subject.get("id_number") or subject.get("id_number_masked")
    return f"{subject['name']}（编号 {subject['id']}" + (
        f"，身份证号 {id_number}）" if id_number else "）"
    )


MASKED = "已遮蔽（持 pii:read 权限查阅可见明文）"


def _overview(
    events: Sequence[LoggedEvent],
    names: Mapping[str, str],
    zone: ZoneInfo,
    subjects_in_clear: Sequence[Mapping[str, Any]] | None = None,
    masked_because: str | None = None,
) -> tuple[tuple[str, str], ...]:
    local_ = partial(local, zone=zone)
    facts, first = _facts(events)
    if first is None:
        return (("事件", "日志中没有首报"),)

    def name(code: str) -> str:
        return f"{names[code]}（{code}）" if code in names else party_name_zh(code)

    category = facts.get("category")
    phase = facts.get("phase")
    closed = next(
        (e for e in events if e.type == "incident.status_changed" and e.data["status"] == "CLOSED"),
        None,
    )
    return (
        ("事件种类", CATEGORY_NAMES_ZH[Category(category)] if category else "—"),
        ("事态阶段", PHASE_NAMES_ZH[Phase(phase)] if phase else "—"),
        ("发生地", place(facts.get("township_name"), facts.get("location"))),
        ("发生时间", local_(facts.get("occurred_at")) if facts.get("occurred_at") else "—"),
        ("发现时间", local_(facts.get("discovered_at")) if facts.get("discovered_at") else "—"),
        (
            "首报",
            f"{name(first['reporter']['party'])} {first['reporter']['name']}，"
            f"{local_(first['reported_at'])}",
        ),
        (
            "涉及对象",
            "；".join(map(subject_line, subjects_in_clear or facts.get("subjects", ()))) or "—",
        ),
        (
            "个人信息",
            "明文（依 pii:read 查阅，本次查阅已记入审计日志）"
            if subjects_in_clear is not None
            else f"已遮蔽（{masked_because}）"
            if masked_because
            else MASKED,
        ),
        ("涉及人员基本情况", facts.get("persons_involved") or "—"),
        ("事态发展情况", facts.get("summary") or "—"),
        ("已采取的措施", facts.get("measures_taken") or "—"),
        ("处置结束", local_(closed.data["changed_at"]) if closed else "尚未结束"),
    )


def person_of(event: LoggedEvent) -> str:
    """The person who acted, as they named themselves when recording it."""
    data = event.data
    match event.type:
        case "incident.reported" | "incident.report_filed":
            return data["reporter"].get("name") or "—"
        case "incident.action_recorded" | "incident.merged" | "incident.unlinked":
            return data.get("actor_name") or "—"
        case "incident.linked":
            linked = data.get("report")
            return (linked["reporter"].get("name") if linked else data.get("actor_name")) or "—"
        case "incident.personal_data_read" | "audit.personal_data_read":
            return data.get("subject") or "—"
    return "—"


DUTY_OUTCOMES = (
    ("MET", "按时办结"),
    ("MET_LATE", "逾期办结"),
    ("MISSED", "逾期未办"),
    ("WAIVED", "不再需要"),
    ("MOVED", "随事件合并移出"),
    ("PENDING", "尚待办理"),
)


def summary_of(
    events: Sequence[LoggedEvent],
    findings: Sequence[AccountabilityFinding],
    superseded: Mapping[UUID, UUID] | None = None,
) -> str:
    """One sentence a reader needs before the details: how the duties ended, how many findings."""
    outcome: dict[str, str] = {
        str(e.data["obligation_id"]): "PENDING" for e in events if e.type == "obligation.created"
    }
    for event in events:
        obligation_id = str(event.data.get("obligation_id", ""))
        if obligation_id not in outcome:
            continue
        if event.type == "obligation.met":
            outcome[obligation_id] = event.data["status"]
        elif event.type == "obligation.waived":
            outcome[obligation_id] = "MOVED" if event.data.get("moved_to") else "WAIVED"
        elif event.type == "deadline.missed" and outcome[obligation_id] == "PENDING":
            outcome[obligation_id] = "MISSED"
    counts = "、".join(
        f"{words} {n} 项"
        for status, words in DUTY_OUTCOMES
        if (n := sum(value == status for value in outcome.values()))
    )
    duties = f"共产生义务 {len(outcome)} 项" + (f"：{counts}" if counts else "")
    replaced = len(superseded or {})
    standing = f"（其中 {replaced} 条已被取代）" if replaced else ""
    return f"{duties}；疑似情形 {len(findings)} 条{standing}，见“三、责任调查”。"


MATCHED_BY_ZH = {"SUBJECT_ID": "社区矫正对象编号相同", "EXTERNAL_REF": "警情编号相同"}


def incident_words(incident_id: Any) -> str:
    """An incident as a report names it: 事件 and the start of its id."""
    return f"事件 {str(incident_id)[:8]}"


def link_party(event: LoggedEvent) -> str | None:
    """Who linked, merged or unlinked: the people's party, or the reporting source of a
    report linked on arrival (the system matched it)."""
    data = event.data
    if data.get("party"):
        return data["party"]
    linked = data.get("report")
    return linked["reporter"]["party"] if linked else None


def link_words(event: LoggedEvent) -> str:
    """A link, merge or unlink as people read it (R20)."""
    data = event.data
    kept = incident_words(data["incident_id"])
    why = f"，理由：{data['reason']}" if data.get("reason") else ""
    if event.type == "incident.linked" and data.get("report"):
        return (
            f"关联报告（R20）：同一事件的另一来源首报，因{MATCHED_BY_ZH.get(data['linked_by'], '')}"
            f"由系统并入{kept}，不另立事件"
        )
    if event.type == "incident.linked":
        return (
            f"人工关联（R20）：{incident_words(data['linked_incident_id'])}与{kept}为同一事件{why}"
        )
    if event.type == "incident.merged":
        return f"合并（R20）：{incident_words(data['merged_incident_id'])}并入{kept}{why}"
    undone = "合并" if data.get("was") == "MERGE" else "关联"
    return (
        f"解除{undone}（R20）：{kept}与{incident_words(data['linked_incident_id'])}"
        f"重新作为两起事件{why}"
    )


def describe(event: LoggedEvent, duties: Duties) -> tuple[str | None, str]:
    """Who acted in a logged event, and what happened, in Chinese (codes only as names)."""
    data = event.data
    local = duties.local
    match event.type:
        case "incident.reported":
            facts = data["facts"]
            return data["reporter"]["party"], (
                f"首报：{CATEGORY_NAMES_ZH[Category(facts['category'])]}，"
                f"{PHASE_NAMES_ZH[Phase(facts['phase'])]}，{facts.get('location') or ''}"
            ).rstrip("，")
        case "incident.action_recorded":
            action = data["action"]
            return data["party"], f"记录处置：{ACTION_NAMES_ZH.get(action, action)}" + (
                f"，{data['note']}" if data.get("note") else ""
            )
        case "incident.report_filed":
            kind = "更正" if data["kind"] == "CORRECTION" else "续报"
            changed = "、".join(map(fact_name_zh, data["changes"])) or "无事实变更"
            return data["reporter"]["party"], f"{kind}：{changed}" + (
                f"。{data['text']}" if data.get("text") else ""
            )
        case "incident.linked" | "incident.merged" | "incident.unlinked":
            return link_party(event), link_words(event)
        case "obligation.created":
            deadline = data.get("deadline_text") or deadline_words_zh(data["deadline_name"])
            moved = "，由关联合并的事件移来，到期时间不变" if data.get("moved_from") else ""
            return data["party"], (
                f"应办：{data['action_text']}，时限：{deadline}，"
                f"{local(data['due_at'])} 前（{data['rule_id']} {data['plan_section']}）{moved}"
            )
        case "obligation.met":
            on_time = "按时办结" if data["status"] == "MET" else "逾期办结"
            duty = duties.action_text(data["obligation_id"])
            recorded = data.get("recorded_by")
            by = (
                f"，由{duties.party(recorded)}代为记录"
                if data.get("on_behalf_of") and recorded
                else ""
            )
            said = (
                f"，记录方称实际于 {local(data['asserted_at'])} 完成"
                if data.get("asserted_at")
                else ""
            )
            return data["party"], (
                f"{on_time}：{duty}（{data['rule_id']}），{local(data['met_at'])}{by}{said}"
            )
        case "obligation.waived":
            duty = duties.action_text(data["obligation_id"])
            if data.get("moved_to"):
                return data["party"], (
                    f"义务移至合并后保留的事件：{duty}（{data['rule_id']}），{data['reason']}"
                )
            return data["party"], f"不再需要：{duty}（{data['rule_id']}），{data['reason']}"
        case "deadline.missed":
            duty = duties.action_text(data["obligation_id"], data.get("action"))
            escalated = (
                f"，升级至{duties.party(data['escalated_to'])}" if data.get("escalated_to") else ""
            )
            return data["party"], f"逾期未办（{data['rule_id']}）：{duty}{escalated}"
        case "obligation.omitted":
            duty = duties.action_text(data["obligation_id"], data.get("action"))
            return data["party"], f"逾期仍未办理（{data['rule_id']}）：{duty}"
        case "incident.went_quiet":
            return data["party"], f"续报中断：自 {local(data['last_news_at'])} 起无新进展（R9）"
        case "incident.updated":
            return data["changed_by"], f"通报事件变化（{data['rule_id']}）：{data['summary']}"
        case "finding.reviewed":
            decision = DECISION_NAMES_ZH[data["decision"]]
            return data["reviewer_party"], (
                f"核查审计发现（{data['rule_id']}）：{decision}，理由：{data['reason']}"
            )
        case "accountability.recorded":
            kind = ACCOUNTABILITY_NAMES_ZH[data["kind"]]
            return data["recorded_by"], (
                f"记录{kind}（R15）：{data['person']}，{data['decision']}，"
                f"文号 {data['document_number']}"
            )
        case "incident.status_changed":
            previous = STATUS_NAMES_ZH.get(data.get("previous_status") or "", "—")
            return None, f"状态：{previous} → {STATUS_NAMES_ZH.get(data['status'], data['status'])}"
        case "action.rejected":
            action = ACTION_NAMES_ZH.get(data["action"], data["action"])
            return None, f"记录未被接受：{action}（{data['reason']}）"
        case "incident.personal_data_read" | "audit.personal_data_read":
            read = "、".join(READ_FIELD_NAMES_ZH.get(name, name) for name in data["fields"])
            return data["party"], f"查阅个人信息明文：{read}"
        case "audit.finding":
            return data[
                "party"
            ], f"审计发现：{data.get('title') or data['kind']}（{data['rule_id']}）"
        case _ if event.type in NOTIFICATION_NAMES_ZH:
            channel = data.get("channel")
            channel = f"，经{CHANNEL_NAMES_ZH.get(channel, channel)}" if channel else ""
            why = f"：{data['reason']}" if event.type == "notification.withdrawn" else ""
            name = NOTIFICATION_NAMES_ZH[event.type]
            if event.type == "notification.notice_attempted":
                name = NOTICE_NAMES_ZH.get(data.get("about", ""), name)
            return data.get("party"), f"{name}{channel}{why}"
    return None, event.type


def build_view(
    incident_id: str,
    events: Sequence[LoggedEvent],
    findings: Sequence[AccountabilityFinding],
    anchor: Anchor | None,
    party_names: Mapping[str, str],
    generated_at: datetime,
    subjects_in_clear: Sequence[Mapping[str, Any]] | None = None,
    masked_because: str | None = None,
    *,
    zone: ZoneInfo,
    judgements: Judgements | None = None,
    joined: Sequence[LoggedEvent] = (),
) -> ReportView:
    """`subjects_in_clear`: the subjects opened from `latest_sealed_subjects` for a reader who
    may read personal data; None keeps them masked as the events carry them, and
    `masked_because` tells such a reader why they could not be shown. `zone`: the county's
    time zone, in which every time is written. `joined`: the histories of the incidents
    linked or merged with this one (R20), whose reports are reports of the event."""
    ordered = sorted(events, key=lambda event: (event.time, event.index))
    duties = Duties.of(ordered, party_names, zone)
    local = duties.local
    rows = []
    for event in ordered:
        party, what = describe(event, duties)
        rows.append(
            TimelineRow(event.index, local(event.time), party or "系统", what, person_of(event))
        )
    _, first = _facts(events)
    superseded = superseded_by(findings)
    everything = sorted(
        {event.index: event for event in [*events, *joined]}.values(),
        key=lambda event: (event.time, event.index),
    )
    return ReportView(
        incident_id=incident_id,
        generated_at=local(generated_at),
        drill=bool(first and first["facts"].get("drill")),
        overview=_overview(ordered, party_names, zone, subjects_in_clear, masked_because),
        timeline=tuple(rows),
        findings=tuple(findings),
        anchor=anchor,
        duties=duties,
        party_names=dict(party_names),
        summary=summary_of(ordered, findings, superseded),
        judgements=judgements or Judgements(),
        superseded=superseded,
        reports=tuple(
            report_row(report, incident_id, local)
            for report in reports_of_event(incident_id, everything)
        ),
        # Every link, merge and unlink of the event's incidents, undone ones too.
        links=tuple(link_row(event, local) for event in everything if event.type in LINK_TYPES),
    )


def report_row(report: EventReport, incident_id: str, local_: Any) -> ReportRow:
    return ReportRow(
        index=report.index,
        time=local_(report.at),
        party=report.party,
        person=report.reporter_name,
        kind=REPORT_KIND_NAMES_ZH[report.kind],
        incident="本事件"
        if report.incident_id == incident_id
        else incident_words(report.incident_id),
    )


def link_row(event: LoggedEvent, local_: Any) -> LinkRow:
    data = event.data
    at = data.get("linked_at") or data.get("merged_at") or data.get("unlinked_at") or event.time
    return LinkRow(
        index=event.index,
        time=local_(at),
        what=link_words(event),
        party=link_party(event) or "系统",
        person=person_of(event),
        reason=data.get("reason") or MATCHED_BY_ZH.get(data.get("linked_by", ""), "—"),
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
    environment.filters["local"] = view.local
    template = environment.get_template(
        "investigation_report.html.j2" if fmt == "html" else "investigation_report.md.j2"
    )
    return template.render(view=view)
