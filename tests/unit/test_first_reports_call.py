"""How many first reports travel in one call of `intake.first_report` (services/intake/
first_report.py): the townships' locks in the order of their codes, and each argument as one
array."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.first_report import PARAMETERS, call_arguments, in_lock_order


def report(township_code: str, subject_ids: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: None for name in PARAMETERS}
    return values | {
        "township_code": township_code,
        "subject_ids": subject_ids,
        "open_statuses": ["REPORTED", "RESPONDING"],
        "now": datetime(2026, 12, 3, tzinfo=UTC),
        "window": timedelta(hours=1),
    }


def test_a_call_takes_townships_in_order_of_code_and_one_townships_in_arrival_order() -> None:
    """Two calls holding townships in common then wait for each other, never deadlock."""
    reports = [report(code, []) for code in ("150626200", "150626100", "150626200", "150626101")]
    assert in_lock_order(reports) == [1, 3, 0, 2]


def test_each_argument_is_one_array_and_the_arrays_among_them_travel_as_json() -> None:
    reports = [report("150626100", ["SQJZ-1", "SQJZ-2"]), report("150626101", ["SQJZ-3"])]
    arguments = call_arguments(reports)
    assert set(arguments) == set(PARAMETERS)
    assert arguments["township_code"] == ["150626100", "150626101"]
    assert [json.loads(each) for each in arguments["subject_ids"]] == [
        ["SQJZ-1", "SQJZ-2"],
        ["SQJZ-3"],
    ]
    assert json.loads(arguments["open_statuses"][1]) == ["REPORTED", "RESPONDING"]
    assert arguments["window"] == [timedelta(hours=1)] * 2
