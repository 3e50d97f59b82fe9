"""What each screen shows, from what the services answered: pure, no I/O.

The routes (api.py) fetch; these functions sort, group and word; the templates lay out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console.traces import shown_duration
from shared.domain.directory import Directory
from shared.domain.vocabulary import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    PHASE_NAMES_ZH,
    STATUS_NAMES_ZH,
    Category,
    Phase,
    county_time,
    party_name_zh,
)
from shared.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
# An incident no longer on the board: its handling is over.
FINISHED = frozenset({"CLOSED", "REVIEWED"})
OPEN_OBLIGATION = "PENDING"
# Alerts still waiting for somebody to say they read them: notification's NOT_ACKNOWLEDGED.
AWAITING_ACK = frozenset({"NEW", "PENDING", "DELIVERED", "UNACKNOWLEDGED", "FAILED"})
# Lifecycle states of an incident still on the board.
OPEN_STATUSES = ("REPORTED", "RESPONDING", "SEARCHING", "ESCALATED", "CONTROLLED")
NOTIFICATION_STATUS_ZH = {
    "NEW": "待发送",
    "PENDING": "发送中",
    "DELIVERED": "已送达，待确认",
    "ACKNOWLEDGED": "已确认收悉",
    "UNACKNOWLEDGED": "未确认",
    "FAILED": "发送失败",
    "WITHDRAWN": "已撤回",
    "INFORMED": "已告知",
}
MET = frozenset({"MET", "MET_LATE"})
OBLIGATION_STATUS_ZH = {
    "PENDING": "待履行",
    "MET": "已履行",
    "MET_LATE": "逾期履行",
    "MISSED": "已超时",
    "WAIVED": "不再适用",
    "OMITTED": "已免除",
}
DELIVERY_STATUS_ZH = {
    "PENDING": "待发送",
    "SENDING": "发送中",
    "DELIVERED": "已送达",
    "FAILED": "失败",
    "CANCELLED": "已取消",
}
FINDING_STATE_ZH = {"OPEN": "待审查", "CONFIRMED": "已确认", "DISMISSED": "已排除"}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_overdue(obligation: Mapping[str, Any], now: datetime) -> bool:
    due = parse_time(obligation.get("due_at"))
    return obligation.get("status") == OPEN_OBLIGATION and due is not None and due <= now


@dataclass(frozen=True)
class TownshipRow:
    code: str
    name: str
    by_status: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.by_status.values())


@dataclass(frozen=True)
class Board:
    townships: list[TownshipRow]
    overdue: list[Mapping[str, Any]]
    due: list[Mapping[str, Any]]
    met: list[Mapping[str, Any]]
    unacknowledged: list[Mapping[str, Any]]

    @property
    def open_incidents(self) -> int:
        return sum(row.count for row in self.townships)


def board(
    incidents: Iterable[Mapping[str, Any]],
    obligations: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    now: datetime,
) -> Board:
    """The duty board: open incidents by township and status; duties overdue (pending past due,
    most overdue first, then missed ones of open incidents), due (soonest first) and met (of
    open incidents, latest first); alerts awaiting an acknowledgement (oldest first)."""
    rows: dict[str, TownshipRow] = {}
    open_ids: set[str] = set()
    for incident in incidents:
        if incident.get("status") in FINISHED:
            continue
        open_ids.add(str(incident["id"]))
        code = incident.get("township_code") or ""
        row = rows.setdefault(code, TownshipRow(code, incident.get("township_name") or code))
        row.by_status.setdefault(incident.get("status") or "", []).append(incident)
    obligations = list({str(o.get("id")): o for o in obligations}.values())
    pending = [o for o in obligations if o.get("status") == OPEN_OBLIGATION]
    by_due = sorted(pending, key=lambda o: o.get("due_at") or "")
    missed = sorted(
        (
            o
            for o in obligations
            if o.get("status") == "MISSED" and str(o.get("incident_id")) in open_ids
        ),
        key=lambda o: o.get("due_at") or "",
    )
    met = sorted(
        (
            o
            for o in obligations
            if o.get("status") in MET and str(o.get("incident_id")) in open_ids
        ),
        key=lambda o: o.get("met_at") or "",
        reverse=True,
    )
    return Board(
        sorted(rows.values(), key=lambda row: row.code),
        [o for o in by_due if is_overdue(o, now)] + missed,
        [o for o in by_due if not is_overdue(o, now)],
        met,
        sorted(
            (
                a
                for a in alerts
                if a.get("kind", "ALERT") == "ALERT" and a.get("status") in AWAITING_ACK
            ),
            key=lambda a: a.get("created_at") or "",
        ),
    )


def group_by_incident(items: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for item in items:
        grouped[str(item.get("incident_id"))].append(item)
    return dict(grouped)


def masked(value: str | None) -> bool:
    return bool(value) and "*" in str(value)


class Screens:
    """The templates, with the vocabulary of the plan as filters (no codes shown to people)."""

    def __init__(self, settings: Settings, directory: Directory) -> None:
        self.settings = settings
        self.directory = directory
        names = {party.code: party.name for party in directory.parties}
        self.environment = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        zone = settings.county_zone

        def local_time(value: object) -> str:
            moment = parse_time(value) if isinstance(value, str) else value
            return county_time(moment, zone) if isinstance(moment, datetime) else "—"

        # Each filter takes whatever a template hands it: a value read from a JSON document.
        filters: dict[str, Callable[[Any], str]] = {
            "local_time": local_time,
            "party_name": lambda party: party_name_zh(str(party), names) if party else "—",
            "category_name": lambda value: (
                CATEGORY_NAMES_ZH.get(Category(value), value)
                if value in Category.__members__
                else value
            ),
            "phase_name": lambda value: (
                PHASE_NAMES_ZH.get(Phase(value), value) if value in Phase.__members__ else value
            ),
            "status_name": lambda value: STATUS_NAMES_ZH.get(value, value),
            "action_name": lambda value: ACTION_NAMES_ZH.get(value, value),
            "alert_status": lambda value: NOTIFICATION_STATUS_ZH.get(value, value),
            "duty_status": lambda value: OBLIGATION_STATUS_ZH.get(value, value),
            "delivery_status": lambda value: DELIVERY_STATUS_ZH.get(value, value),
            "finding_state": lambda value: FINDING_STATE_ZH.get(value, value),
            "duration": shown_duration,
        }
        self.environment.filters.update(filters)
        self.environment.globals.update(
            categories=[(c.value, CATEGORY_NAMES_ZH[c]) for c in Category],
            phases=[(p.value, PHASE_NAMES_ZH[p]) for p in Phase],
            actions=sorted(ACTION_NAMES_ZH.items()),
            townships=directory.townships,
            statuses=sorted(STATUS_NAMES_ZH.items()),
        )

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("now", datetime.now(UTC))
        html = self.environment.get_template(template).render(**context)
        return HTMLResponse(
            html,
            status_code=status_code,
            headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP},
        )


# Everything the pages load comes from the console itself; scripts only from its files.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
