"""Vocabulary of the response plan shared by every service (codes of RULES.md)."""

from __future__ import annotations

from enum import StrEnum


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


class PartyKind(StrEnum):
    """Org units of RULES.md; township-bound kinds carry a division code (`SFS:150626102`)."""

    SFS = "SFS"
    TCG = "TCG"
    PPS = "PPS"
    BLO = "BLO"
    BJO = "BJO"
    CEO = "CEO"
    DEPT = "DEPT"
    PLATFORM = "PLATFORM"


# `SFS:150626102`, `BLO`, `DEPT:应急管理局` …; PLATFORM is the county public-security platform.
PARTY_PATTERN = r"^(SFS|TCG|PPS):\d{9}$|^(BLO|BJO|CEO|PLATFORM)$|^DEPT:[^\x00-\x1f\x7f]{1,35}$"

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
