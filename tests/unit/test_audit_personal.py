"""Personal data sealed in the log's leaves (services/audit/personal.py) and when the retention
period erases it (shared/retention.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.audit.datakeys import (
    DEV_KEK_FILE,
    incident_cipher,
    key_encryption_gaps,
    load_key_encryption_key,
)
from services.audit.leaves import canonical_json
from services.audit.personal import (
    ERASED,
    UNREADABLE,
    Opened,
    has_personal_fields,
    open_personal,
    seal_personal,
)
from shared.pii import PersonalDataKeyError, new_key
from shared.retention import Retention, years_before
from shared.settings import Settings

INCIDENT = "5b0f6c1e-3a55-4c55-9a43-0d7b3f0e2c11"
KEY = incident_cipher(INCIDENT, bytes(range(32)))
REPORTED = {
    "incident_id": INCIDENT,
    "reported_at": "2026-11-30T06:00:00+00:00",
    "reporter": {"party": "SFS:150626102", "name": "李明", "phone": "13900000000"},
    "facts": {
        "category": "VIOLENCE",
        "township_code": "150626102",
        "subjects": [{"id": "SQJZ-2024-0107", "name": "王**", "id_number_masked": None}],
        "location": "图克镇中心街农贸市场东门",
        "summary": None,
    },
    "sealed_subjects": {"kid": "2026-11", "nonce": "bm9uY2U=", "ct": "Y3Q="},
}


def test_personal_fields_are_sealed_and_what_accountability_needs_stays_clear() -> None:
    sealed = seal_personal(REPORTED, KEY)
    leaf = canonical_json(sealed).decode()
    assert [
        clear
        for clear in ("李明", "13900000000", "王**", "SQJZ-2024-0107", "农贸市场")
        if clear in leaf
    ] == []
    assert sealed["reporter"]["party"] == "SFS:150626102"
    assert (
        sealed["facts"]["category"] == "VIOLENCE"
        and sealed["facts"]["township_code"] == "150626102"
    )
    assert sealed["reported_at"] == REPORTED["reported_at"] and sealed["incident_id"] == INCIDENT
    assert sealed["facts"]["summary"] is None  # nothing to seal
    found = Opened()
    assert open_personal(json.loads(leaf), KEY, found) == REPORTED
    assert found.opened == 5 and found.erased == 0


def test_only_the_fields_named_are_opened_wherever_they_are_the_rest_stay_sealed() -> None:
    sealed = json.loads(canonical_json(seal_personal(REPORTED, KEY)))
    found = Opened()
    shown = open_personal(sealed, KEY, found, only=frozenset({"location", "name"}))
    assert shown["facts"]["location"] == REPORTED["facts"]["location"]
    assert shown["reporter"]["name"] == REPORTED["reporter"]["name"]
    assert shown["reporter"]["phone"] == sealed["reporter"]["phone"]  # still sealed
    assert shown["facts"]["subjects"] == sealed["facts"]["subjects"]
    assert found.opened == 2 and found.erased == 0
    assert open_personal(sealed, KEY, only=frozenset()) == sealed


def test_an_erased_key_leaves_every_personal_field_marked_erased_as_a_value_of_its_kind() -> None:
    sealed = json.loads(canonical_json(seal_personal(REPORTED, KEY)))
    found = Opened()
    shown = open_personal(sealed, None, found)
    assert shown["reporter"] == {"party": "SFS:150626102", "name": ERASED, "phone": ERASED}
    assert shown["facts"]["subjects"] == [] and shown["facts"]["location"] == ERASED
    assert shown["sealed_subjects"] is None
    assert found.erased == 5
    # An event arriving after the erasure is written erased: its key is not made again.
    assert seal_personal(REPORTED, None)["reporter"]["name"] == ERASED


def test_a_field_sealed_under_another_key_does_not_open() -> None:
    other = incident_cipher(INCIDENT, bytes(32))
    sealed = seal_personal({"actor_name": "周强"}, other)
    assert open_personal(sealed, KEY) == {"actor_name": UNREADABLE}
    assert open_personal(sealed, incident_cipher(INCIDENT, bytes(32))) == {"actor_name": "周强"}
    assert len(new_key()) == 44  # base64 of 32 bytes


def test_quoted_fact_values_are_personal_when_the_fact_is() -> None:
    finding = {
        "detail": "地点更正",
        "versions": [
            {"field": "location", "previous": "甲地", "current": "乙地"},
            {"field": "category", "previous": "VIOLENCE", "current": "OTHER"},
        ],
    }
    sealed = seal_personal(finding, KEY)
    assert "甲地" not in json.dumps(sealed, ensure_ascii=False)
    assert sealed["versions"][1] == finding["versions"][1]
    assert has_personal_fields(finding) and not has_personal_fields({"size": 3, "origin": "x"})


@pytest.mark.parametrize(
    ("closed", "now", "erased"),
    [
        (datetime(2021, 11, 30, 9, tzinfo=UTC), datetime(2026, 11, 30, 10, tzinfo=UTC), True),
        (datetime(2021, 11, 30, 11, tzinfo=UTC), datetime(2026, 11, 30, 10, tzinfo=UTC), False),
        (datetime(2024, 2, 29, tzinfo=UTC), datetime(2029, 2, 28, 1, tzinfo=UTC), False),
        (datetime(2024, 2, 29, tzinfo=UTC), datetime(2029, 3, 1, 1, tzinfo=UTC), True),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC), False),
    ],
)
def test_personal_data_is_due_for_erasure_years_after_closure(
    closed: datetime, now: datetime, erased: bool
) -> None:
    retention = Retention(personal_data_years_after_closure=5)
    assert (closed < retention.erase_before(now)) is erased


def test_29_february_counts_back_to_the_28th() -> None:
    assert years_before(datetime(2028, 2, 29, 12, tzinfo=UTC), 5) == datetime(
        2023, 2, 28, 12, tzinfo=UTC
    )


def test_the_key_encryption_key_is_required_in_production(tmp_path: Path) -> None:
    production = Settings(local_data_dir=tmp_path, deployment_environment="production")
    with pytest.raises(PersonalDataKeyError, match="AUDIT_KEY_ENCRYPTION_KEYS"):
        load_key_encryption_key(production)
    assert [gap.setting for gap in key_encryption_gaps(production)] == ["AUDIT_KEY_ENCRYPTION_KEYS"]
    keyed = production.model_copy(update={"audit_key_encryption_keys": {"2026-11": new_key()}})
    assert key_encryption_gaps(Settings(**keyed.model_dump())) == []
    configured = load_key_encryption_key(
        Settings(
            local_data_dir=tmp_path,
            deployment_environment="production",
            audit_key_encryption_keys={"2026-11": new_key()},
        )
    )
    assert configured.current == "2026-11" and not (tmp_path / DEV_KEK_FILE).exists()
    # Without keys and not required (a local run): one development key, kept and shared.
    first = load_key_encryption_key(Settings(local_data_dir=tmp_path))
    again = load_key_encryption_key(Settings(local_data_dir=tmp_path))
    assert first.keys == again.keys and len(first.keys[first.current]) == 32
    sealed = first.seal(new_key(), "data key of x")
    assert again.open(sealed, "data key of x")
