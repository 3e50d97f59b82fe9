"""intake.first_report planned once: its candidates looked up on their own, for each call's values

Migration 0011 had PostgreSQL plan the whole function for the values of each call
(`plan_cache_mode = force_custom_plan`), because a plan cached for any values walked all of a busy
township's incidents of the last hour for the candidates. Planning the statement that writes five
tables then cost more of the server's time than running it (0.48 against 0.62 ms a call, in
`pg_stat_statements` at 30 reports a second). The statement that writes is now planned once, as
any other, and the candidates are looked up after it, only when it wrote, by a statement run with
`EXECUTE`, which PostgreSQL plans for the values of each call: it walks the township's index from
now and stops at a page, whatever the township holds. The township is still held, so the look-up
sees the same incidents the statement saw, and the one the statement wrote, which it leaves out.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:30:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Candidates of a new incident (R20), as in 0011: open, not merged incidents of the same township,
# category and drill reported within the candidate window, naming none of its subjects; nearest
# first, at most a page (100). $1 now, $2 the window, $3 township, $4 category, $5 open statuses,
# $6 drill, $7 the incidents naming its subjects, $8 the incident just written.
CANDIDATE_FILTER = """
          i.township_code = $3 AND i.category = $4
      AND i.status = ANY($5) AND i.merged_into IS NULL
      AND COALESCE((i.facts ->> 'drill')::boolean, false) = $6
      AND NOT i.id = ANY($7) AND i.id <> $8
"""
CANDIDATES = f"""
    SELECT ARRAY(
        SELECT near.id FROM (
            (SELECT i.id, i.reported_at FROM intake.incidents i
             WHERE i.reported_at <= $1 AND i.reported_at >= $1 - $2
               AND {CANDIDATE_FILTER}
             ORDER BY i.reported_at DESC LIMIT 100)
            UNION ALL
            (SELECT i.id, i.reported_at FROM intake.incidents i
             WHERE i.reported_at > $1 AND i.reported_at <= $1 + $2
               AND {CANDIDATE_FILTER}
             ORDER BY i.reported_at LIMIT 100)
        ) AS near
        ORDER BY abs(extract(epoch FROM near.reported_at - $1)), near.id
        LIMIT 100
    )
"""


def _first_report_of_0011() -> ModuleType:
    path = Path(__file__).with_name("0011_first_report_in_one_call.py")
    spec = importlib.util.spec_from_file_location("intake_migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replaced(text: str, old: str, new: str) -> str:
    """`text` with `old`, which must be there once, replaced by `new`."""
    if text.count(old) != 1:
        raise ValueError(f"expected once in 0011's function: {old[:60]!r}")
    return text.replace(old, new)


def planned_once(first_report: str) -> str:
    """0011's function, its statement planned once and its candidates looked up after it."""
    function = _replaced(first_report, "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    comment = function.index("-- Planned for the values of each call")
    function = function[:comment] + function[function.index("SET plan_cache_mode", comment) :]
    # Left to PostgreSQL, which keeps a plan for any values after a connection's first calls.
    function = _replaced(function, "SET plan_cache_mode = force_custom_plan\n", "")
    start = function.index("        ARRAY(\n            SELECT near.id FROM (")
    end = function.index("    INTO open_incidents, key_claimed, written, candidates;")
    function = function[:start].rstrip().rstrip(",") + "\n" + function[end:]
    function = _replaced(
        function,
        "    INTO open_incidents, key_claimed, written, candidates;",
        "    INTO open_incidents, key_claimed, written;",
    )
    function = _replaced(
        function,
        "    IF written THEN\n",
        "    candidates := '{}';\n"
        "    IF written THEN\n"
        "        -- Planned for this call's values (EXECUTE), so it stops at a page whatever the\n"
        "        -- township holds; the township is still held.\n"
        f"        EXECUTE $candidates${CANDIDATES}$candidates$ INTO candidates\n"
        "        USING p_now, p_window, p_township_code, p_category, p_open_statuses, p_drill,\n"
        "              naming_subjects, p_incident_id;\n",
    )
    return function


def upgrade() -> None:
    before = _first_report_of_0011()
    op.execute(planned_once(before.FIRST_REPORT))


def downgrade() -> None:
    before = _first_report_of_0011()
    op.execute(_replaced(before.FIRST_REPORT, "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
