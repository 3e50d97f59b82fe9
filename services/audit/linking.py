"""One event, several reports (R20) as the log shows them; pure.

Intake publishes a link, a merge or its undoing under the incident it keeps (`incident_id`); the
log also files it under the other incident it names (`linked_incident_id`, `merged_incident_id`),
so each incident's history shows it. The incidents of one event are those joined by links and
merges not undone since, directly or through one another. An incident linked or merged into
another is judged, for what concerns the event as a whole (R12), on that other one: its reports
are reports of the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.audit.logged import LoggedEvent

LINK_TYPES = frozenset({"incident.linked", "incident.merged", "incident.unlinked"})
# How a stored leaf of those types says its type (canonical JSON: no blanks).
LINK_MARKERS = tuple(f'"type":"{ce_type}"'.encode() for ce_type in sorted(LINK_TYPES))


def other_incident(ce_type: str, data: Mapping[str, Any]) -> str | None:
    """The incident a link, merge or unlink names besides the one it is published under."""
    if ce_type not in LINK_TYPES:
        return None
    other = data.get("merged_incident_id") or data.get("linked_incident_id")
    return str(other) if other else None


def incidents_named(ce_type: str, data: Mapping[str, Any], subject: str) -> tuple[str, ...]:
    """The incidents whose history holds an event besides the one it is published under."""
    other = other_incident(ce_type, data)
    return (other,) if other is not None and other != subject else ()


def subject_of(event: LoggedEvent, incident_id: str) -> str:
    """The incident the event was published under (fixtures may leave it to the judged one)."""
    return event.subject or incident_id


def concerns(event: LoggedEvent, incident_id: str) -> bool:
    """The event is of the incident's own history: published under it, or a link, merge or
    unlink naming it."""
    return (
        subject_of(event, incident_id) == incident_id
        or other_incident(event.type, event.data) == incident_id
    )


@dataclass(frozen=True)
class Link:
    """A link or merge that stands: `other` is linked or merged into `kept`."""

    link_id: str
    kept: str
    other: str
    how: Literal["LINK", "MERGE"]
    event: LoggedEvent


def standing_links(events: Iterable[LoggedEvent]) -> dict[str, Link]:
    """Links and merges between incidents not undone since, by link id, in log order."""
    links: dict[str, Link] = {}
    for event in sorted(events, key=lambda event: event.index):
        data = event.data
        if event.type == "incident.unlinked":
            links.pop(str(data["link_id"]), None)
            continue
        other = other_incident(event.type, data)
        if other is None:
            continue  # a report linked on arrival joins no other incident
        how: Literal["LINK", "MERGE"] = "MERGE" if event.type == "incident.merged" else "LINK"
        links[str(data["link_id"])] = Link(
            str(data["link_id"]), str(data["incident_id"]), other, how, event
        )
    return links


def joined_by_links(events: Iterable[LoggedEvent]) -> set[str]:
    """The incidents that standing links and merges among the events join (none without
    one)."""
    links = standing_links(event for event in events if event.type in LINK_TYPES)
    return {incident for link in links.values() for incident in (link.kept, link.other)}


def joined_incidents(history: Iterable[tuple[int, bytes]]) -> set[str]:
    """`joined_by_links` of a history of stored leaves (index, leaf): only leaves of those
    types are read."""
    return joined_by_links(
        LoggedEvent.from_leaf(index, leaf)
        for index, leaf in history
        if any(marker in leaf for marker in LINK_MARKERS)
    )


def incidents_of_event(incident_id: str, events: Iterable[LoggedEvent]) -> set[str]:
    """The incident and every incident joined to it by standing links, however indirectly."""
    links = list(standing_links(events).values())
    found, frontier = {incident_id}, [incident_id]
    while frontier:
        current = frontier.pop()
        for link in links:
            for one, other in ((link.kept, link.other), (link.other, link.kept)):
                if one == current and other not in found:
                    found.add(other)
                    frontier.append(other)
    return found


def kept_by(incident_id: str, events: Iterable[LoggedEvent]) -> Link | None:
    """The standing link or merge that makes the incident part of another one, if any."""
    return next(
        (link for link in standing_links(events).values() if link.other == incident_id), None
    )


ReportKind = Literal["FIRST", "LINKED", "FOLLOW_UP", "CORRECTION"]


@dataclass(frozen=True)
class EventReport:
    """One report of the event: a first report of one of its incidents, a report linked on
    arrival, or a follow-up or correction filed on one of them."""

    kind: ReportKind
    incident_id: str
    party: str
    reporter_name: str
    at: datetime = datetime.min  # when the system received it
    index: int = 0
    facts: Mapping[str, Any] | None = None  # as the source stated them (first and linked)


def reports_of_event(incident_id: str, events: Sequence[LoggedEvent]) -> list[EventReport]:
    """Every report of the event the incident belongs to, in the order the system received
    them: each incident's first report, the reports linked on arrival to any of them, and the
    follow-ups and corrections filed on them. `events`: the histories of the event's incidents
    (duplicates, as a link filed under both incidents, count once)."""
    members = incidents_of_event(incident_id, events)
    # A report linked on arrival and then taken out by people is an incident of its own.
    taken_out = {str(e.data["link_id"]) for e in events if e.type == "incident.unlinked"}
    seen: set[int] = set()
    reports: list[EventReport] = []
    for event in events:
        subject = subject_of(event, incident_id)
        if event.index in seen or subject not in members:
            continue
        seen.add(event.index)
        data = event.data
        if event.type == "incident.reported":
            reports.append(_report("FIRST", subject, data, data["reported_at"], event, data))
        elif (
            event.type == "incident.linked"
            and data.get("report")
            and str(data["link_id"]) not in taken_out
        ):
            linked = data["report"]
            reports.append(_report("LINKED", subject, linked, linked["reported_at"], event, linked))
        elif event.type == "incident.report_filed":
            reports.append(_report(data["kind"], subject, data, data["filed_at"], event, None))
    return sorted(reports, key=lambda report: (report.at, report.index))


def _report(
    kind: ReportKind,
    incident_id: str,
    carrier: Mapping[str, Any],
    at: str,
    event: LoggedEvent,
    stated: Mapping[str, Any] | None,
) -> EventReport:
    reporter = carrier["reporter"]
    return EventReport(
        kind=kind,
        incident_id=incident_id,
        party=reporter["party"],
        reporter_name=reporter.get("name") or "—",
        at=datetime.fromisoformat(at),
        index=event.index,
        facts=stated["facts"] if stated is not None else None,
    )
