"""Vocabulary of the response plan shared by every service (codes of docs/rules.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class Category(StrEnum):
    """Incident categories, plan section 二."""

    VIOLENCE = "VIOLENCE"
    MASS_INCIDENT = "MASS_INCIDENT"
    ABSCONDED = "ABSCONDED"
    DISRUPTION = "DISRUPTION"
    ABNORMAL_DEATH = "ABNORMAL_DEATH"
    DISASTER = "DISASTER"
    OTHER = "OTHER"


CATEGORY_NAMES_ZH: dict[Category, str] = {
    Category.VIOLENCE: "暴力犯罪或以要挟为目的的自杀、自焚、自残",
    Category.MASS_INCIDENT: "参与群体性事件",
    Category.ABSCONDED: "脱离监督管理",
    Category.DISRUPTION: "集中教育和社区服务中严重滋扰管理秩序",
    Category.ABNORMAL_DEATH: "非正常死亡",
    Category.DISASTER: "不可抗拒力和其他重大突发事件",
    Category.OTHER: "其他突发事件",
}


class Phase(StrEnum):
    SIGNS = "SIGNS"  # 苗头、迹象、扬言报复
    IN_PROGRESS = "IN_PROGRESS"  # 正在实施
    OCCURRED = "OCCURRED"  # 已发生


PHASE_NAMES_ZH: dict[Phase, str] = {
    Phase.SIGNS: "苗头迹象",
    Phase.IN_PROGRESS: "正在实施",
    Phase.OCCURRED: "已发生",
}


class ActionCode(StrEnum):
    """Actions a party records against an incident."""

    FIRST_RESPONSE_STARTED = "FIRST_RESPONSE_STARTED"
    UNCONTROLLABLE = "UNCONTROLLABLE"
    SEARCH_STARTED = "SEARCH_STARTED"
    SEARCH_FAILED = "SEARCH_FAILED"
    FOUND = "FOUND"
    POLICE_CALLED = "POLICE_CALLED"
    REPORTED = "REPORTED"
    WRITTEN_NOTICE_SENT = "WRITTEN_NOTICE_SENT"
    PLAN_ACTIVATED = "PLAN_ACTIVATED"
    ON_SCENE = "ON_SCENE"
    COUNSELLING_DONE = "COUNSELLING_DONE"
    KEY_MONITORING = "KEY_MONITORING"
    DEPARTMENTS_CONTACTED = "DEPARTMENTS_CONTACTED"
    RELIEF_JOINED = "RELIEF_JOINED"
    CONTROLLED = "CONTROLLED"
    CLOSED = "CLOSED"
    INVESTIGATION_REPORT_FILED = "INVESTIGATION_REPORT_FILED"
    # The police station's own (docs/rules.md "How rules apply").
    POLICE_DISPATCHED = "POLICE_DISPATCHED"
    POLICE_ON_SCENE = "POLICE_ON_SCENE"
    SEARCH_TAKEN_OVER = "SEARCH_TAKEN_OVER"
    # The township command group's own.
    COMMAND_ON_SCENE = "COMMAND_ON_SCENE"
    # The banner leading-group office's own.
    INSTRUCTED = "INSTRUCTED"
    DEC_NOTIFIED = "DEC_NOTIFIED"
    PRO_NOTIFIED = "PRO_NOTIFIED"


class PartyKind(StrEnum):
    """Org units of docs/rules.md; township-bound kinds carry a division code (`SFS:150626102`)."""

    SFS = "SFS"
    TCG = "TCG"
    PPS = "PPS"
    BLO = "BLO"
    BJO = "BJO"
    CEO = "CEO"
    DEPT = "DEPT"
    PRO = "PRO"
    DEC = "DEC"
    PLATFORM = "PLATFORM"


# `SFS:150626102`, `BLO`, `DEPT:应急管理局`, `DEC:乌审旗人民法院` …; PLATFORM is the county
# public-security platform, PRO the banner procuratorate, DEC a deciding authority (R18).
PARTY_PATTERN = (
    r"^(SFS|TCG|PPS):\d{9}$|^(BLO|BJO|CEO|PRO|PLATFORM)$|^(DEPT|DEC):[^\x00-\x1f\x7f:]{1,35}$"
)

TOWNSHIP_BOUND_KINDS = frozenset({PartyKind.SFS, PartyKind.TCG, PartyKind.PPS})


def party_code(kind: PartyKind | str, township_code: str | None = None) -> str:
    kind = PartyKind(kind)
    if kind in TOWNSHIP_BOUND_KINDS:
        if not township_code:
            raise ValueError(f"{kind} needs a township code")
        return f"{kind}:{township_code}"
    return str(kind)


def party_kind_of(party: str) -> PartyKind:
    return PartyKind(party.split(":", 1)[0])


class LifecycleStatus(StrEnum):
    REPORTED = "REPORTED"
    RESPONDING = "RESPONDING"
    SEARCHING = "SEARCHING"
    ESCALATED = "ESCALATED"
    CONTROLLED = "CONTROLLED"
    CLOSED = "CLOSED"
    REVIEWED = "REVIEWED"


# --- the same vocabulary as people read it (zh-CN): no codes in any text meant for people ------

ACTION_NAMES_ZH: dict[str, str] = {
    ActionCode.FIRST_RESPONSE_STARTED: "开展先期处置",
    ActionCode.UNCONTROLLABLE: "先期处置不能控制",
    ActionCode.SEARCH_STARTED: "组织查找",
    ActionCode.SEARCH_FAILED: "查找未果",
    ActionCode.FOUND: "已找到",
    ActionCode.POLICE_CALLED: "已报警",
    ActionCode.REPORTED: "已报告",
    ActionCode.WRITTEN_NOTICE_SENT: "已书面通知",
    ActionCode.PLAN_ACTIVATED: "已启动预案",
    ActionCode.ON_SCENE: "已到现场",
    ActionCode.COUNSELLING_DONE: "已教育疏导",
    ActionCode.KEY_MONITORING: "已实施重点监控",
    ActionCode.DEPARTMENTS_CONTACTED: "已联系相关部门",
    ActionCode.RELIEF_JOINED: "已参加救助",
    ActionCode.CONTROLLED: "事态已控制",
    ActionCode.CLOSED: "处置结束",
    ActionCode.INVESTIGATION_REPORT_FILED: "已报送调查报告",
    ActionCode.POLICE_DISPATCHED: "已出警",
    ActionCode.POLICE_ON_SCENE: "民警已到现场",
    ActionCode.SEARCH_TAKEN_OVER: "派出所已接手查找",
    ActionCode.COMMAND_ON_SCENE: "指挥小组已到现场指挥",
    ActionCode.INSTRUCTED: "已作出处置指示",
    ActionCode.DEC_NOTIFIED: "已通知决定机关",
    ActionCode.PRO_NOTIFIED: "已通知人民检察院",
}

STATUS_NAMES_ZH: dict[str, str] = {
    LifecycleStatus.REPORTED: "已报告",
    LifecycleStatus.RESPONDING: "处置中",
    LifecycleStatus.SEARCHING: "查找中",
    LifecycleStatus.ESCALATED: "已升级",
    LifecycleStatus.CONTROLLED: "已控制",
    LifecycleStatus.CLOSED: "处置结束",
    LifecycleStatus.REVIEWED: "已调查",
}

# Facts of a report by the names R7 and the plan (四(三)) give them.
FACT_NAMES_ZH: dict[str, str] = {
    "category": "种类",
    "phase": "事态阶段",
    "township_code": "苏木(镇)",
    "township_name": "苏木(镇)",
    "subjects": "涉及对象",
    "occurred_at": "发生时间",
    "discovered_at": "发现时间",
    "location": "地点",
    "summary": "事态发展情况",
    "measures_taken": "已采取的措施",
    "persons_involved": "涉及人员基本情况",
    "drill": "演练标记",
    "offence": "涉嫌违法犯罪",
}

# Named deadlines (docs/rules.md) in the plan's words; the policy says how long each is.
DEADLINE_WORDS_ZH: dict[str, str] = {
    "IMMEDIATE": "立即",
    "PROMPT": "及时",
    "WRITTEN": "书面报告",
    "SEARCH_WINDOW": "查找",
    "FOLLOW_UP": "续报",
    "ACK": "确认收悉",
    "INVESTIGATION": "调查报告",
}

# Parties that have no entry of their own in the directory.
PARTY_KIND_NAMES_ZH: dict[str, str] = {
    PartyKind.SFS: "司法所",
    PartyKind.TCG: "苏木(镇)社区矫正突发事件应急处置指挥小组",
    PartyKind.PPS: "派出所",
    PartyKind.BLO: "旗社区矫正工作领导小组办公室",
    PartyKind.BJO: "旗司法局办公室",
    PartyKind.CEO: "市司法局应急办公室",
    PartyKind.DEPT: "相关部门",
    PartyKind.PRO: "旗人民检察院",
    PartyKind.DEC: "决定机关",
    PartyKind.PLATFORM: "公安机关警情平台",
}


def fact_name_zh(field: str) -> str:
    return FACT_NAMES_ZH.get(field, field)


def deadline_words_zh(name: str, duration: str | None = None) -> str:
    """立即（15分钟）: the plan's word, and how long when the caller knows the policy."""
    word = DEADLINE_WORDS_ZH.get(name, name)
    return f"{word}（{duration}）" if duration else word


def party_name_zh(party: str, names: dict[str, str] | None = None) -> str:
    """A party as people know it: its directory name, else what kind of body it is."""
    if names and party in names:
        return names[party]
    kind, _, detail = party.partition(":")
    if kind in (PartyKind.DEPT, PartyKind.DEC) and detail:
        return detail
    try:
        return PARTY_KIND_NAMES_ZH[PartyKind(kind)]
    except ValueError:
        return party


# The county's clock: every time shown to people is in the county's zone (the setting
# COUNTY_TIME_ZONE, Beijing time by default), whatever the servers run on.
DEFAULT_COUNTY_TIME_ZONE = "Asia/Shanghai"
COUNTY_TIME = ZoneInfo(DEFAULT_COUNTY_TIME_ZONE)
# Zones that keep Beijing time, as people in China name it.
_BEIJING_TIME_ZONES = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Harbin", "PRC"})


def county_time(moment: datetime, zone: ZoneInfo = COUNTY_TIME) -> str:
    """2026-11-30 12:15: a time as people in the county read it."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def time_zone_label(zone: ZoneInfo = COUNTY_TIME) -> str:
    """北京时间, or the zone's name where a deployment keeps another clock."""
    return "北京时间" if zone.key in _BEIJING_TIME_ZONES else f"{zone.key}时间"
