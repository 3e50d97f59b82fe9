"""The table of who may do what, row by row (shared/domain/access.py)."""

from __future__ import annotations

import pytest

from shared.domain.access import DEFAULT_SCOPES, PII_READ, Permission, Principal, decide

TUKE, GALUTU = "150626102", "150626100"
P = Permission

# (party, permission, the incident's township or None, allowed?) — written out, not derived.
ROWS = [
    # a 司法所: its own township only, may write and read, not the log or findings
    ("SFS:150626102", P.REPORT_INCIDENT, TUKE, True),
    ("SFS:150626102", P.REPORT_INCIDENT, GALUTU, False),
    ("SFS:150626102", P.RECORD_ACTION, TUKE, True),
    ("SFS:150626102", P.RECORD_ACTION, GALUTU, False),
    ("SFS:150626102", P.FILE_REPORT, TUKE, True),
    ("SFS:150626102", P.READ_INCIDENT, TUKE, True),
    ("SFS:150626102", P.READ_INCIDENT, GALUTU, False),
    ("SFS:150626102", P.READ_OBLIGATIONS, GALUTU, False),
    ("SFS:150626102", P.READ_NOTIFICATIONS, TUKE, True),
    ("SFS:150626102", P.READ_TIMELINE, TUKE, True),
    ("SFS:150626102", P.READ_TIMELINE, GALUTU, False),
    ("SFS:150626102", P.READ_TIMELINE, None, False),  # township not known: refused
    ("BLO", P.READ_TIMELINE, None, True),
    ("SFS:150626102", P.READ_LOG, None, False),
    ("SFS:150626102", P.READ_FINDINGS, None, False),
    ("SFS:150626102", P.READ_DRILLS, None, False),
    ("SFS:150626102", P.EVALUATE_POLICY, TUKE, True),
    ("SFS:150626102", P.READ_REPORTS, None, False),
    # the township command group and the police station: likewise
    ("TCG:150626102", P.RECORD_ACTION, TUKE, True),
    ("TCG:150626102", P.READ_INCIDENT, GALUTU, False),
    ("PPS:150626102", P.RECORD_ACTION, TUKE, True),
    ("PPS:150626102", P.READ_OBLIGATIONS, TUKE, True),
    ("PPS:150626102", P.READ_OBLIGATIONS, GALUTU, False),
    # the banner offices see and act on all
    ("BLO", P.READ_INCIDENT, GALUTU, True),
    ("BLO", P.RECORD_ACTION, GALUTU, True),
    ("BLO", P.READ_FINDINGS, None, True),
    ("BJO", P.RECORD_ACTION, TUKE, True),
    ("BJO", P.READ_REPORTS, None, True),
    # the county platform reports and reads, records no action, reads no log
    ("PLATFORM", P.REPORT_INCIDENT, GALUTU, True),
    ("PLATFORM", P.FILE_REPORT, TUKE, True),
    ("PLATFORM", P.READ_INCIDENT, TUKE, True),
    ("PLATFORM", P.RECORD_ACTION, TUKE, False),
    ("PLATFORM", P.READ_LOG, None, False),
    # the city office and auditors read findings, reports and the log; write nothing
    ("CEO", P.READ_FINDINGS, None, True),
    ("CEO", P.READ_REPORTS, None, True),
    ("CEO", P.READ_LOG, None, True),
    ("CEO", P.READ_TIMELINE, TUKE, True),
    ("CEO", P.REPORT_INCIDENT, TUKE, False),
    ("CEO", P.RECORD_ACTION, TUKE, False),
    ("CEO", P.READ_INCIDENT, TUKE, False),
    ("CEO", P.EVALUATE_POLICY, TUKE, False),
    ("AUDITOR", P.READ_LOG, None, True),
    ("AUDITOR", P.READ_DRILLS, None, True),
    ("AUDITOR", P.FILE_REPORT, TUKE, False),
    ("AUDITOR", P.READ_NOTIFICATIONS, TUKE, False),
    # findings are judged by the bureau office and the city office, nobody else
    ("BJO", P.REVIEW_FINDINGS, None, True),
    ("CEO", P.REVIEW_FINDINGS, None, True),
    ("BLO", P.REVIEW_FINDINGS, None, False),
    ("SFS:150626102", P.REVIEW_FINDINGS, TUKE, False),
    ("AUDITOR", P.REVIEW_FINDINGS, None, False),
    # R15: commendations and disciplines are the bureau office's to record
    ("BJO", P.RECORD_ACCOUNTABILITY, TUKE, True),
    ("CEO", P.RECORD_ACCOUNTABILITY, TUKE, False),
    ("BLO", P.RECORD_ACCOUNTABILITY, TUKE, False),
    # R20: the township's command group or the banner office says which reports are one event
    (f"TCG:{TUKE}", P.LINK_INCIDENTS, TUKE, True),
    ("TCG:150626101", P.LINK_INCIDENTS, TUKE, False),
    ("BLO", P.LINK_INCIDENTS, TUKE, True),
    (f"SFS:{TUKE}", P.LINK_INCIDENTS, TUKE, False),
    ("PLATFORM", P.LINK_INCIDENTS, TUKE, False),
    ("BJO", P.LINK_INCIDENTS, TUKE, False),
    # the procuratorate reads like the city office (R18: it is told of deaths); a deciding
    # authority holds no standing access
    ("PRO", P.READ_FINDINGS, None, True),
    ("PRO", P.READ_TIMELINE, TUKE, True),
    ("PRO", P.RECORD_ACTION, TUKE, False),
    ("DEC:乌审旗人民法院", P.READ_INCIDENT, TUKE, False),
    ("DEC:乌审旗人民法院", P.READ_TIMELINE, TUKE, False),
]


def principal(party: str, scopes: tuple[str, ...] | None = None) -> Principal:
    kind = party.split(":", 1)[0]
    return Principal("someone", party, frozenset(scopes or DEFAULT_SCOPES[kind]))


@pytest.mark.parametrize(("party", "permission", "township", "allowed"), ROWS)
def test_who_may_do_what(party, permission, township, allowed):
    refusal = decide(principal(party), permission, township)
    assert (refusal is None) is allowed, refusal


def test_every_permission_has_rows():
    assert {row[1] for row in ROWS} == set(Permission)


def test_a_missing_scope_refuses_even_the_right_party():
    refusal = decide(principal("BLO", ("incidents:read",)), P.RECORD_ACTION, TUKE)
    assert refusal is not None and "incidents:write" in refusal.reason


def test_personal_data_needs_its_own_scope():
    assert not principal("BLO").may_read_personal_data
    assert principal("BLO", ("incidents:read", PII_READ)).may_read_personal_data
