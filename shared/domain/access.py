"""Who may do what: one table, row by row (社区矫正法 Arts. 26, 29, 54; 个人信息保护法 Art. 28).

A 司法所, 指挥小组 or 派出所 sees and acts only on incidents of its own township; the banner
offices see all; the county platform reports and reads; the city office and auditors read
findings, reports and the log, and write nothing. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeGuard

from shared.domain.vocabulary import PARTY_PATTERN, TOWNSHIP_BOUND_KINDS, PartyKind


class Permission(StrEnum):
    REPORT_INCIDENT = "report_incident"
    RECORD_ACTION = "record_action"
    FILE_REPORT = "file_report"
    READ_INCIDENT = "read_incident"
    READ_OBLIGATIONS = "read_obligations"
    EVALUATE_POLICY = "evaluate_policy"
    READ_NOTIFICATIONS = "read_notifications"
    READ_TIMELINE = "read_timeline"
    READ_LOG = "read_log"
    READ_FINDINGS = "read_findings"
    READ_REPORTS = "read_reports"
    READ_DRILLS = "read_drills"
    REVIEW_FINDINGS = "review_findings"
    RECORD_ACCOUNTABILITY = "record_accountability"
    LINK_INCIDENTS = "link_incidents"


class Reach(StrEnum):
    OWN_TOWNSHIP = "own township"
    ALL = "all"


AUDITOR = "AUDITOR"
WRITE, READ, AUDIT = "incidents:write", "incidents:read", "audit:read"
PII_READ = "pii:read"

SFS, TCG, PPS = PartyKind.SFS, PartyKind.TCG, PartyKind.PPS
BLO, BJO, CEO, PLATFORM = PartyKind.BLO, PartyKind.BJO, PartyKind.CEO, PartyKind.PLATFORM
# The procuratorate supervises community correction (社区矫正法 Art. 8) and is told of deaths
# (R18): it reads like the city office. A deciding authority is told of its subject's death
# and acknowledges the alert through its link; it holds no standing access.
PRO, DEC = PartyKind.PRO, PartyKind.DEC
LOCAL = (SFS, TCG, PPS)
BANNER = (BLO, BJO)


@dataclass(frozen=True)
class Grant:
    scope: str
    kinds: tuple[str, ...]


# permission → the scope it needs and who holds it; local parties only for their township.
ACCESS: dict[Permission, Grant] = {
    Permission.REPORT_INCIDENT: Grant(WRITE, (*LOCAL, *BANNER, PLATFORM)),
    Permission.RECORD_ACTION: Grant(WRITE, (*LOCAL, *BANNER)),
    Permission.FILE_REPORT: Grant(WRITE, (*LOCAL, *BANNER, PLATFORM)),
    Permission.READ_INCIDENT: Grant(READ, (*LOCAL, *BANNER, PLATFORM)),
    Permission.READ_OBLIGATIONS: Grant(READ, (*LOCAL, *BANNER, PLATFORM)),
    Permission.EVALUATE_POLICY: Grant(READ, (*LOCAL, *BANNER, PLATFORM)),
    Permission.READ_NOTIFICATIONS: Grant(READ, (*LOCAL, *BANNER, PLATFORM)),
    Permission.READ_TIMELINE: Grant(AUDIT, (*LOCAL, *BANNER, CEO, PRO, AUDITOR)),
    Permission.READ_LOG: Grant(AUDIT, (*BANNER, CEO, PRO, AUDITOR)),
    Permission.READ_FINDINGS: Grant(AUDIT, (*BANNER, CEO, PRO, AUDITOR)),
    Permission.READ_REPORTS: Grant(AUDIT, (*BANNER, CEO, PRO, AUDITOR)),
    Permission.READ_DRILLS: Grant(AUDIT, (*BANNER, CEO, AUDITOR)),
    # Findings are suspicions: the bureau office and the city office judge them.
    Permission.REVIEW_FINDINGS: Grant(AUDIT, (BJO, CEO)),
    # R15: the bureau office records commendations and disciplines.
    Permission.RECORD_ACCOUNTABILITY: Grant(WRITE, (BJO,)),
    # R20: the township's command group or the banner office says which reports are one event.
    Permission.LINK_INCIDENTS: Grant(WRITE, (TCG, BLO)),
}

# What a token minted for a kind of party carries unless told otherwise.
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    **{kind: (WRITE, READ, AUDIT) for kind in (*LOCAL, *BANNER)},
    PLATFORM: (WRITE, READ),
    CEO: (AUDIT,),
    PRO: (AUDIT,),
    DEC: (),
    AUDITOR: (AUDIT,),
}


def may_be_principal(party: object) -> TypeGuard[str]:
    """Whether `party` names a caller a token or a login may speak for: a party of the plan,
    or an auditor."""
    return isinstance(party, str) and (
        party == AUDITOR or re.match(PARTY_PATTERN, party) is not None
    )


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its party (`SFS:150626102`, `BLO`, `AUDITOR` ...) and scopes."""

    subject: str
    party: str
    scopes: frozenset[str]

    @property
    def kind(self) -> str:
        return self.party.split(":", 1)[0]

    @property
    def township(self) -> str | None:
        if self.kind in TOWNSHIP_BOUND_KINDS:
            return self.party.split(":", 1)[1]
        return None

    @property
    def reach(self) -> Reach:
        return Reach.OWN_TOWNSHIP if self.township else Reach.ALL

    @property
    def may_read_personal_data(self) -> bool:
        return PII_READ in self.scopes


# Permissions about one incident: a local party is refused when the township is not known.
INCIDENT_SCOPED = frozenset(
    {
        Permission.REPORT_INCIDENT,
        Permission.RECORD_ACTION,
        Permission.FILE_REPORT,
        Permission.READ_INCIDENT,
        Permission.READ_OBLIGATIONS,
        Permission.EVALUATE_POLICY,
        Permission.READ_NOTIFICATIONS,
        Permission.READ_TIMELINE,
        Permission.LINK_INCIDENTS,
    }
)


@dataclass(frozen=True)
class Refusal:
    reason: str


def decide(principal: Principal, permission: Permission, township: str | None) -> Refusal | None:
    """None when `principal` may do `permission` on an incident of `township` (None: not tied
    to one incident, or not known, which a local party is then refused); otherwise why not."""
    grant = ACCESS[permission]
    if principal.kind not in grant.kinds:
        return Refusal(f"{principal.kind} may not {permission.value}")
    if grant.scope not in principal.scopes:
        return Refusal(f"{permission.value} needs scope {grant.scope}")
    if principal.reach == Reach.OWN_TOWNSHIP and permission in INCIDENT_SCOPED:
        if township != principal.township:
            return Refusal(f"{principal.party} acts only on incidents of its own township")
    return None
