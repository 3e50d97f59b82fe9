"""A new incident's first report (首报), written in one call of `intake.first_report` (migration
0011): the township's lock, whether the source used the reference before, whether an open
incident is of the same event (R20: then nothing is written), the caller's idempotency key, the
source's reference, the incident, its subjects, its INITIAL report and the event in the outbox;
with the incident's candidates (R20) read in passing.

A report that opens an incident pays one round trip for all of this, without BEGIN or COMMIT:
the call is its own transaction. Only a report the call wrote nothing for goes on in a
transaction of the request (services/intake/api.py).

Reports that arrive while a call is under way are written together by the next one
(`FirstReports`, group commit): one statement calls the function for each of them in turn, in
one transaction, and commits them all at once. Each report is matched as if alone: the
function's statements see what the reports before it in the same call wrote. A call takes its
townships' locks in the order of their codes, so two calls (two intake processes) holding
townships in common wait for each other rather than deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.linking import OPEN_STATUSES
from services.intake.models import SCHEMA
from shared.db import driver_of, single_statement
from shared.domain.correlation import Correlation, OpenIncident
from shared.domain.vocabulary import LifecycleStatus
from shared.driver import fetch
from shared.events import CloudEvent
from shared.jsontext import json_text
from shared.messaging import LocalRelay, notify_channel, outbox_values, woken_in_process
from shared.together import Together

log = logging.getLogger(__name__)

# The function of migration 0011's arguments, in the order the call passes them, with their
# types (for the arrays that carry many reports' arguments to one call, `FIRST_REPORTS`).
ARGUMENT_TYPES = {
    "township_code": "text",
    "category": "text",
    "phase": "text",
    "drill": "boolean",
    "subject_ids": "text[]",
    "facts": "jsonb",
    "incident_reporter": "jsonb",
    "report_reporter": "jsonb",
    "status": "text",
    "now": "timestamptz",
    "since": "timestamptz",
    "window": "interval",
    "open_statuses": "text[]",
    "caller": "text",
    "key": "text",
    "request_hash": "text",
    "incident_id": "uuid",
    "report_id": "uuid",
    "reporter_party": "text",
    "external_ref": "text",
    "channel": "text",
    "shard": "smallint",
    "topic": "text",
    "event_key": "text",
    "event_id": "uuid",
    "event_type": "text",
    "headers": "jsonb",
    "payload": "bytea",
}
PARAMETERS = tuple(ARGUMENT_TYPES)
# The township's lock, then one statement. Arguments by name, so the call reads as what it
# passes; numbered, as the driver takes them. Its candidates are a page at most
# (`shared.paging.PAGE`).
FIRST_REPORT = (
    "SELECT known_ref, open_incidents, key_claimed, written, candidates FROM intake.first_report("
    + ", ".join(f"p_{name} => ${number}" for number, name in enumerate(PARAMETERS, 1))
    + ")"
)
# The arguments that are arrays themselves travel to `FIRST_REPORTS` as JSON: PostgreSQL's
# arrays of arrays must all be of one length.
IN_JSON = tuple(name for name, type_ in ARGUMENT_TYPES.items() if type_.endswith("[]"))


def _array_type(name: str) -> str:
    return "jsonb[]" if name in IN_JSON else f"{ARGUMENT_TYPES[name]}[]"


def _argument(name: str) -> str:
    if name in IN_JSON:
        return f'ARRAY(SELECT jsonb_array_elements_text(report."{name}"))'
    return f'report."{name}"'


# Many reports in one call, in the order given, each as `FIRST_REPORT` would write it alone.
FIRST_REPORTS = text(
    "SELECT written.known_ref, written.open_incidents, written.key_claimed, written.written,"
    " written.candidates FROM unnest("
    + ", ".join(f"CAST(:{name} AS {_array_type(name)})" for name in PARAMETERS)
    + ") WITH ORDINALITY AS report("
    + ", ".join(f'"{name}"' for name in PARAMETERS)  # quoted: `window` is a keyword
    + ", position) CROSS JOIN LATERAL intake.first_report("
    + ", ".join(f"p_{name} => {_argument(name)}" for name in PARAMETERS)
    + ") AS written ORDER BY report.position"
)
# The reports one call writes at most: enough that a burst is a few calls and commits; few
# enough that the first report of a call does not wait long for its last (each costs about a
# millisecond), and that the process prepares the next reports while PostgreSQL writes these
# rather than wait with them (64 at once, as many as the bench's connections, left intake idle
# a fifth of the time and took 300 reports/s where 16 take 390).
MOST_IN_ONE_CALL = 16


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
    return written_of(report, row)


def written_of(report: dict[str, Any], row: Any) -> Written:
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


def call_arguments(reports: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The reports' arguments as `FIRST_REPORTS` takes them: an array of each."""
    arguments = {name: [report[name] for report in reports] for name in PARAMETERS}
    for name in IN_JSON:
        arguments[name] = [json_text(list(value)) for value in arguments[name]]
    return arguments


def in_lock_order(reports: list[dict[str, Any]]) -> list[int]:
    """The reports' positions in the order their call takes the townships' locks: by code, the
    reports of one township in the order they came."""
    return sorted(range(len(reports)), key=lambda position: reports[position]["township_code"])


def quiet(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reports without a channel to notify: their call wakes intake's relay in process."""
    return [{**report, "channel": None} for report in reports]


class FirstReports:
    """The reports that may open an incident, written by as few calls as they allow: a report
    that comes alone is one call as before, the reports that came while a call was under way
    are one call together (`FIRST_REPORTS`), each answered what the call did for it. If that
    call fails, nothing of it was written, and each report is written again by a call of its
    own, so one report's failure is its own."""

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        relay: LocalRelay | None = None,
        most: int = MOST_IN_ONE_CALL,
    ) -> None:
        self._sessions = sessions  # the service's, made when it starts
        # Intake's outbox relay in this process: a call whose events all fall in its shards
        # wakes it once committed, and notifies nobody.
        self._relay = relay or LocalRelay()
        self.write = Together[dict[str, Any], Written](self._write_all, most=most)

    async def _write_all(self, reports: list[dict[str, Any]]) -> list[Written | BaseException]:
        if len(reports) > 1:
            try:
                return await self._write_in_one_call(reports)
            except Exception as error:
                log.info(
                    "%d first reports in one call failed (%r); each alone", len(reports), error
                )
        outcomes: list[Written | BaseException] = []
        for report in reports:
            try:
                async with woken_in_process(self._relay, [report["shard"]]) as in_process:
                    called = quiet([report])[0] if in_process else report
                    async with single_statement(self._sessions()) as connection:
                        outcomes.append(await write_incident(await driver_of(connection), called))
            except Exception as error:
                outcomes.append(error)
        return outcomes

    async def _write_in_one_call(
        self, reports: list[dict[str, Any]]
    ) -> list[Written | BaseException]:
        order = in_lock_order(reports)
        ordered = [reports[position] for position in order]
        shards = [report["shard"] for report in ordered]
        async with woken_in_process(self._relay, shards) as in_process:
            called = quiet(ordered) if in_process else ordered
            async with single_statement(self._sessions()) as connection:
                rows = await fetch(connection, FIRST_REPORTS, call_arguments(called))
        written = {
            position: written_of(report, row)
            for position, report, row in zip(order, ordered, rows, strict=True)
        }
        return [written[position] for position in range(len(reports))]
