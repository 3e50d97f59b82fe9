"""A new incident's first report (首报), written in one statement: whether an open incident is of
the same event (R20: then nothing is written), the caller's idempotency key, the source's
reference, the incident, its subjects, its INITIAL report and the event in the outbox, in the
request's transaction; with the incident's candidates (R20) read in passing.

Each report that opens an incident pays one round trip for all of this instead of one per row,
and the statement's text is built once: nothing is compiled per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.linking import OPEN_STATUSES
from services.intake.models import SCHEMA
from shared.domain.correlation import Correlation, OpenIncident
from shared.domain.vocabulary import LifecycleStatus
from shared.events import CloudEvent
from shared.messaging import OUTBOX_COLUMNS, OUTBOX_VALUES, notify_channel, outbox_values
from shared.paging import PAGE

# Candidates of a new incident (R20, `correlation.candidates`): open, not merged incidents of
# the same township, category and drill reported within the candidate window, naming none of
# its subjects; nearest first. A new incident has no links yet. The first page of
# GET /v1/incidents/{id}/candidates at most: two walks of the township's index by time, one
# back and one forward from now, so a busy township costs no more than a quiet one.
_CANDIDATE_FILTER = f"""
      i.township_code = :township_code AND i.category = :category
  AND i.status = ANY(CAST(:open_statuses AS text[])) AND i.merged_into IS NULL
  AND COALESCE((i.facts ->> 'drill')::boolean, false) = :drill
  AND NOT EXISTS (SELECT FROM {SCHEMA}.incident_subjects s
                  WHERE s.incident_id = i.id AND s.subject_id = ANY(CAST(:subject_ids AS text[])))
"""

_WRITE = f"""
WITH naming AS (
    SELECT i.id, i.category, i.reported_at,
           COALESCE((i.facts ->> 'drill')::boolean, false) AS drill, i.merged_into,
           ARRAY(SELECT s.subject_id FROM {SCHEMA}.incident_subjects s
                 WHERE s.incident_id = i.id) AS subject_ids,
           ARRAY(SELECT r.external_ref FROM {SCHEMA}.external_refs r
                 WHERE r.incident_id = i.id) AS external_refs
    FROM {SCHEMA}.incidents i
    WHERE i.township_code = :township_code
      AND i.status = ANY(CAST(:open_statuses AS text[]))
      AND i.reported_at >= :since
      AND (i.id IN (SELECT s.incident_id FROM {SCHEMA}.incident_subjects s
                    WHERE s.subject_id = ANY(CAST(:subject_ids AS text[])))
           OR i.id IN (SELECT r.incident_id FROM {SCHEMA}.external_refs r
                       WHERE r.external_ref = CAST(:external_ref AS text)))
), matched AS (
    SELECT EXISTS (SELECT FROM naming WHERE drill = :drill) AS found
), claimed_key AS (
    INSERT INTO {SCHEMA}.idempotency_keys (caller, key, request_hash, incident_id)
    SELECT :caller, CAST(:key AS text), :request_hash, :incident_id
    FROM matched WHERE NOT found AND CAST(:key AS text) IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING true AS claimed
), key_ok AS (
    SELECT NOT found AND (CAST(:key AS text) IS NULL OR EXISTS (SELECT FROM claimed_key)) AS ok
    FROM matched
), claimed_ref AS (
    INSERT INTO {SCHEMA}.external_refs (source_party, external_ref, incident_id, request_hash)
    SELECT :reporter_party, CAST(:external_ref AS text), :incident_id, :request_hash
    FROM key_ok WHERE ok AND CAST(:external_ref AS text) IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING true AS claimed
), written AS (
    SELECT ok AND (CAST(:external_ref AS text) IS NULL OR EXISTS (SELECT FROM claimed_ref)) AS ok
    FROM key_ok
), incident AS (
    INSERT INTO {SCHEMA}.incidents
        (id, category, phase, township_code, facts, reporter, status, reported_at)
    SELECT :incident_id, :category, :phase, :township_code, CAST(:facts AS jsonb),
           CAST(:incident_reporter AS jsonb), :status, :now
    FROM written WHERE ok
    RETURNING id
), subjects AS (
    INSERT INTO {SCHEMA}.incident_subjects (incident_id, subject_id)
    SELECT incident.id, subject_id
    FROM incident, unnest(CAST(:subject_ids AS text[])) AS subject_id
    ON CONFLICT DO NOTHING
), report AS (
    INSERT INTO {SCHEMA}.reports (id, incident_id, kind, changes, previous, reporter, filed_at)
    SELECT :report_id, incident.id, 'INITIAL', CAST(:facts AS jsonb), '{{}}'::jsonb,
           CAST(:report_reporter AS jsonb), :now
    FROM incident
), event AS (
    INSERT INTO {SCHEMA}.outbox ({OUTBOX_COLUMNS})
    SELECT {OUTBOX_VALUES}
    FROM incident
)
SELECT
    CASE WHEN (SELECT found FROM matched)
         THEN (SELECT json_agg(naming) FROM naming) END AS open_incidents,
    (SELECT ok FROM key_ok) AS key_claimed,
    (SELECT ok FROM written) AS written,
    CASE WHEN (SELECT ok FROM written) THEN pg_notify(:channel, '') END AS notified,
    ARRAY(
        SELECT near.id FROM (
            (SELECT i.id, i.reported_at FROM {SCHEMA}.incidents i
             WHERE i.reported_at <= :now AND i.reported_at >= :now - CAST(:window AS interval)
               AND {_CANDIDATE_FILTER}
             ORDER BY i.reported_at DESC LIMIT {PAGE})
            UNION ALL
            (SELECT i.id, i.reported_at FROM {SCHEMA}.incidents i
             WHERE i.reported_at > :now AND i.reported_at <= :now + CAST(:window AS interval)
               AND {_CANDIDATE_FILTER}
             ORDER BY i.reported_at LIMIT {PAGE})
        ) AS near
        WHERE (SELECT ok FROM written)
        ORDER BY abs(extract(epoch FROM near.reported_at - :now)), near.id
        LIMIT {PAGE}
    ) AS candidates
"""
WRITE = text(_WRITE)


@dataclass(frozen=True)
class Written:
    """What the statement did. `open_incidents`: an open incident names the report's subjects
    or quotes its reference (R20), nothing was written, and these are what matching decides
    on. Else `key_claimed` False: the caller's key was used before (a replay), nothing was
    written; `written` False with the key claimed: the source's reference was just taken.
    Otherwise the incident stands, with its `candidates`."""

    open_incidents: list[OpenIncident] | None
    key_claimed: bool
    written: bool
    candidates: list[UUID]


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def open_incident(township_code: str, row: dict[str, Any]) -> OpenIncident:
    """An open incident as the statement returns it (JSON), as matching sees it."""
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


async def write_incident(
    session: AsyncSession,
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
) -> Written:
    """Write the incident and its first report with its event, in one round trip, unless an
    open incident of the township is of the same event (R20), or the key or the reference was
    used before. The caller holds the township (`linking.hold_township`): what this statement
    reads of the township's open incidents stands until it commits."""
    row = (
        await session.execute(
            WRITE,
            {
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
            },
        )
    ).one()
    found = row.open_incidents  # json, decoded by the driver
    return Written(
        [open_incident(township_code, incident) for incident in found]
        if found is not None
        else None,
        bool(row.key_claimed),
        bool(row.written),
        list(row.candidates or ()),
    )
