"""A new incident's first report (首报), written in one call of `intake.first_report` (migration
0011): the township's lock, whether the source used the reference before, whether an open
incident is of the same event (R20: then nothing is written), the caller's idempotency key, the
source's reference, the incident, its subjects, its INITIAL report and the event in the outbox;
with the incident's candidates (R20) read in passing.

A report that opens an incident pays one round trip for all of this, without BEGIN or COMMIT:
the call is its own transaction. Only a report the call wrote nothing for goes on in a
transaction of the request (services/intake/api.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.linking import OPEN_STATUSES
from services.intake.models import SCHEMA
from shared.domain.correlation import Correlation, OpenIncident
from shared.domain.vocabulary import LifecycleStatus
from shared.events import CloudEvent
from shared.messaging import notify_channel, outbox_values

# The function of migration 0011's arguments, in the order the call passes them.
PARAMETERS = tuple(
    """
    township_code category phase drill subject_ids facts incident_reporter
    report_reporter status now since window open_statuses caller key request_hash
    incident_id report_id reporter_party external_ref channel
    shard topic event_key event_id event_type headers payload
    """.split()
)
# The township's lock, then one statement. Arguments by name, so the call reads as what it
# passes; numbered, as the driver takes them. Its candidates are a page at most
# (`shared.paging.PAGE`).
FIRST_REPORT = (
    "SELECT known_ref, open_incidents, key_claimed, written, candidates FROM intake.first_report("
    + ", ".join(f"p_{name} => ${number}" for number, name in enumerate(PARAMETERS, 1))
    + ")"
)


@dataclass(frozen=True)
class Written:
    """What the call did. `known_ref`: the source reported under this reference before,
    nothing was written. `open_incidents`: an open incident names the report's subjects or
    quotes its reference (R20), nothing was written, and these are what matching decides on.
    Else `key_claimed` False: the caller's key was used before (a replay), nothing was
    written; `written` False with the key claimed: the source's reference was just taken by
    another township's report, and the key was let go. Otherwise the incident stands, with its
    `candidates`."""

    known_ref: bool
    open_incidents: list[OpenIncident] | None
    key_claimed: bool
    written: bool
    candidates: list[UUID]


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def open_incident(township_code: str, row: dict[str, Any]) -> OpenIncident:
    """An open incident as the function returns it (JSON), as matching sees it."""
    return OpenIncident(
        id=UUID(row["id"]),
        township_code=township_code,
        category=row["category"],
        reported_at=datetime.fromisoformat(row["reported_at"]),
        drill=row["drill"],
        subject_ids=frozenset(row["subject_ids"]),
        external_refs=frozenset(row["external_refs"]),
        merged_into=UUID(row["merged_into"]) if row["merged_into"] else None,
    )


def first_report(
    *,
    incident_id: UUID,
    report_id: UUID,
    key: tuple[str, str] | None,
    request_hash: str,
    reporter_party: str,
    external_ref: str | None,
    category: str,
    phase: str,
    township_code: str,
    drill: bool,
    subject_ids: list[str],
    sealed_facts: dict[str, Any],
    incident_reporter: dict[str, Any],
    report_reporter: dict[str, Any],
    now: datetime,
    policy: Correlation,
    event: CloudEvent,
) -> dict[str, Any]:
    """The report as `write_incident` passes it: built once, passed again as it was when the
    first call wrote nothing."""
    return {
        "caller": key[0] if key else None,
        "key": key[1] if key else None,
        "request_hash": request_hash,
        "incident_id": incident_id,
        "reporter_party": reporter_party,
        "external_ref": external_ref,
        "category": category,
        "phase": phase,
        "township_code": township_code,
        "facts": json_text(sealed_facts),
        "incident_reporter": json_text(incident_reporter),
        "report_reporter": json_text(report_reporter),
        "status": str(LifecycleStatus.REPORTED),
        "now": now,
        "since": now - policy.link_window,
        "subject_ids": subject_ids,
        "report_id": report_id,
        "channel": notify_channel(SCHEMA),
        "window": policy.candidate_window,
        "drill": drill,
        "open_statuses": list(OPEN_STATUSES),
        **outbox_values(event),
    }


async def write_incident(
    database: asyncpg.Connection | AsyncSession, report: dict[str, Any]
) -> Written:
    """Write the incident and its first report with its event, in one round trip, unless the
    reference was used before, an open incident of the township is of the same event (R20),
    or the key was used before. On a connection of its own (`shared.db.single_statement`),
    straight to the driver, the call is its own transaction; in a session's transaction, the
    township stays held to its end, and what the call read of the township's open incidents
    stands until then."""
    arguments = tuple(report[name] for name in PARAMETERS)
    if isinstance(database, AsyncSession):
        # Through the session, which begins its transaction before the call.
        connection = await database.connection()
        row = (await connection.exec_driver_sql(FIRST_REPORT, arguments)).mappings().one()
    else:
        row = await database.fetchrow(FIRST_REPORT, *arguments)
    found = row["open_incidents"]  # json, decoded by the driver
    return Written(
        bool(row["known_ref"]),
        [open_incident(report["township_code"], incident) for incident in found]
        if found is not None
        else None,
        bool(row["key_claimed"]),
        bool(row["written"]),
        list(row["candidates"] or ()),
    )
