"""a new incident's first report planned once: the incidents of the same event read from their ids

`intake.first_report` (0011) was planned afresh for each call's values (`force_custom_plan`),
about 0.5–0.7 ms of PostgreSQL's time a report: a plan kept for any values read the incidents
naming the report's subjects or quoting its reference by walking the township's incidents of
the window and testing each id against the arrays, which cost more the more incidents the
township held. The statement now reads those incidents from their ids, each by the table's
key, so one plan serves every call: the function keeps it for the connection
(`force_generic_plan`). What it does and returns is unchanged.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 23:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANDIDATE_FILTER = """
          i.township_code = p_township_code AND i.category = p_category
      AND i.status = ANY(p_open_statuses) AND i.merged_into IS NULL
      AND COALESCE((i.facts ->> 'drill')::boolean, false) = p_drill
      AND NOT i.id = ANY(naming_subjects)
"""

FIRST_REPORT = f"""
CREATE OR REPLACE FUNCTION intake.first_report(
    p_township_code text, p_category text, p_phase text, p_drill boolean,
    p_subject_ids text[], p_facts jsonb, p_incident_reporter jsonb, p_report_reporter jsonb,
    p_status text, p_now timestamptz, p_since timestamptz, p_window interval,
    p_open_statuses text[], p_caller text, p_key text, p_request_hash text,
    p_incident_id uuid, p_report_id uuid, p_reporter_party text, p_external_ref text,
    p_channel text, p_shard smallint, p_topic text, p_event_key text, p_event_id uuid,
    p_event_type text, p_headers jsonb, p_payload bytea,
    OUT known_ref boolean, OUT open_incidents json, OUT key_claimed boolean,
    OUT written boolean, OUT candidates uuid[]
) LANGUAGE plpgsql VOLATILE
-- Planned once for any values: the incidents of the same event are read from their ids and
-- the candidates walk the township's index by time, whatever the values.
SET plan_cache_mode = force_generic_plan
AS $function$
DECLARE
    naming_subjects uuid[];
    quoting_ref uuid[];
BEGIN
    -- Reports of one township are matched one at a time: two reports of one event arriving
    -- together must not both open an incident.
    PERFORM pg_advisory_xact_lock(hashtext('intake.match:' || p_township_code));
    -- The source reported under this reference before (its 警情编号): the caller decides.
    known_ref := p_external_ref IS NOT NULL AND EXISTS (
        SELECT FROM intake.external_refs r
        WHERE r.source_party = p_reporter_party AND r.external_ref = p_external_ref);
    IF known_ref THEN
        key_claimed := false;
        written := false;
        candidates := '{{}}';
        RETURN;
    END IF;
    -- The incidents naming one of the report's subjects, and those quoting its reference,
    -- looked up by subject and by reference: a statement of their own, so that the statement
    -- below filters by them whatever plan it is given, and never reads the township's incidents
    -- one by one against the subjects.
    naming_subjects := ARRAY(
        SELECT s.incident_id FROM intake.incident_subjects s
        WHERE s.subject_id = ANY(p_subject_ids));
    quoting_ref := ARRAY(
        SELECT r.incident_id FROM intake.external_refs r WHERE r.external_ref = p_external_ref);
    WITH naming AS (
        SELECT i.id, i.category, i.reported_at,
               COALESCE((i.facts ->> 'drill')::boolean, false) AS drill, i.merged_into,
               ARRAY(SELECT s.subject_id FROM intake.incident_subjects s
                     WHERE s.incident_id = i.id) AS subject_ids,
               ARRAY(SELECT r.external_ref FROM intake.external_refs r
                     WHERE r.incident_id = i.id) AS external_refs
        FROM (SELECT DISTINCT named.id FROM unnest(naming_subjects || quoting_ref) AS named(id))
             AS named
        -- Each by its key: the LIMIT keeps the look-up apart, so that no plan for any values
        -- joins the ids with a walk of the township's incidents of the window instead.
        CROSS JOIN LATERAL (
            SELECT * FROM intake.incidents i
            WHERE i.id = named.id
              AND i.township_code = p_township_code
              AND i.status = ANY(p_open_statuses)
              AND i.reported_at >= p_since
            LIMIT 1
        ) AS i
    ), matched AS (
        SELECT EXISTS (SELECT FROM naming WHERE naming.drill = p_drill) AS any_open
    ), new_key AS (
        INSERT INTO intake.idempotency_keys (caller, key, request_hash, incident_id)
        SELECT p_caller, p_key, p_request_hash, p_incident_id
        FROM matched WHERE NOT any_open AND p_key IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING true AS claimed
    ), key_ok AS (
        SELECT NOT any_open AND (p_key IS NULL OR EXISTS (SELECT FROM new_key)) AS ok
        FROM matched
    ), new_ref AS (
        INSERT INTO intake.external_refs (source_party, external_ref, incident_id, request_hash)
        SELECT p_reporter_party, p_external_ref, p_incident_id, p_request_hash
        FROM key_ok WHERE ok AND p_external_ref IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING true AS claimed
    ), ref_ok AS (
        SELECT ok AND (p_external_ref IS NULL OR EXISTS (SELECT FROM new_ref)) AS ok
        FROM key_ok
    ), incident AS (
        INSERT INTO intake.incidents
            (id, category, phase, township_code, facts, reporter, status, reported_at)
        SELECT p_incident_id, p_category, p_phase, p_township_code, p_facts,
               p_incident_reporter, p_status, p_now
        FROM ref_ok WHERE ok
        RETURNING id
    ), subjects AS (
        INSERT INTO intake.incident_subjects (incident_id, subject_id)
        SELECT incident.id, subject_id
        FROM incident, unnest(p_subject_ids) AS subject_id
        ON CONFLICT DO NOTHING
    ), report AS (
        INSERT INTO intake.reports (id, incident_id, kind, changes, previous, reporter, filed_at)
        SELECT p_report_id, incident.id, 'INITIAL', p_facts, '{{}}'::jsonb,
               p_report_reporter, p_now
        FROM incident
    ), event AS (
        INSERT INTO intake.outbox (shard, topic, key, event_id, event_type, headers, payload)
        SELECT p_shard, p_topic, p_event_key, p_event_id, p_event_type, p_headers, p_payload
        FROM incident
    )
    SELECT
        CASE WHEN (SELECT any_open FROM matched) THEN (SELECT json_agg(naming) FROM naming) END,
        (SELECT ok FROM key_ok),
        (SELECT ok FROM ref_ok),
        ARRAY(
            SELECT near.id FROM (
                (SELECT i.id, i.reported_at FROM intake.incidents i
                 WHERE i.reported_at <= p_now AND i.reported_at >= p_now - p_window
                   AND {CANDIDATE_FILTER}
                 ORDER BY i.reported_at DESC LIMIT 100)
                UNION ALL
                (SELECT i.id, i.reported_at FROM intake.incidents i
                 WHERE i.reported_at > p_now AND i.reported_at <= p_now + p_window
                   AND {CANDIDATE_FILTER}
                 ORDER BY i.reported_at LIMIT 100)
            ) AS near
            WHERE (SELECT ok FROM ref_ok)
            ORDER BY abs(extract(epoch FROM near.reported_at - p_now)), near.id
            LIMIT 100
        )
    INTO open_incidents, key_claimed, written, candidates;
    IF written THEN
        PERFORM pg_notify(p_channel, '');  -- the outbox relay's wake-up
    ELSIF key_claimed AND p_key IS NOT NULL THEN
        -- The key was claimed, then the reference was taken by a report of another township
        -- just now: the key must not name an incident that was never written.
        DELETE FROM intake.idempotency_keys
        WHERE caller = p_caller AND key = p_key AND incident_id = p_incident_id;
    END IF;
END
$function$
"""


def upgrade() -> None:
    op.execute(FIRST_REPORT)


def downgrade() -> None:
    op.execute(
        FIRST_REPORT.replace(
            "SET plan_cache_mode = force_generic_plan", "SET plan_cache_mode = force_custom_plan"
        )
    )
