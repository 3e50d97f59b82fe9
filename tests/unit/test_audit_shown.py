"""What a reader without pii:read sees of the log's events (services/audit/shown.py)."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from uuid import uuid4

from services.audit.api import exported_leaf
from services.audit.leaves import canonical_json, leaf_hash
from services.audit.shown import holds_personal_data, masked_event

ACTION = {
    "incident_id": "5b0f6c1e-3a55-4c55-9a43-0d7b3f0e2c11",
    "action": "FOUND",
    "party": "SFS:150626102",
    "actor_name": "李明",
    "occurred_at": "2026-11-30T14:05:00+08:00",
    "note": "已联系王某某本人，电话13904770105",
    "reason": None,
}


def test_people_phones_and_free_text_are_masked_accountability_stays() -> None:
    shown = masked_event(ACTION, names=("王某某",))
    assert shown["actor_name"] == "李*"
    assert shown["note"] == "已联系王**本人，电话139****0105"
    # Who, what, when and under which rule: what accountability rests on stays in clear.
    assert {key: shown[key] for key in ("incident_id", "action", "party", "occurred_at")} == {
        key: ACTION[key] for key in ("incident_id", "action", "party", "occurred_at")
    }
    assert shown["reason"] is None


def test_nested_reporters_name_lists_and_quoted_facts_are_masked() -> None:
    report = {
        "reporter": {"party": "SFS:150626102", "name": "李明", "phone": "13900000000"},
        "facts": {"location": "图克镇0477-7512345号", "township_name": "图克镇"},
        "incident": {"subject_names": ["王某某"], "category": "ABSCONDING"},
        "versions": [
            {"field": "location", "previous": "图克镇13904770105", "current": "乌审召"},
            {"field": "category", "previous": "VIOLENCE", "current": "ABSCONDING"},
        ],
        "sealed_subjects": {"kid": "k1", "nonce": "bm9uY2U=", "ct": "Y3Q="},
    }
    shown = masked_event(report)
    assert shown["reporter"] == {"party": "SFS:150626102", "name": "李*", "phone": "139****0000"}
    assert shown["facts"] == {"location": "图克镇0477-*****45号", "township_name": "图克镇"}
    assert shown["incident"] == {"subject_names": ["王**"], "category": "ABSCONDING"}
    assert shown["versions"][0]["previous"] == "图克镇139****0105"
    assert shown["versions"][1] == report["versions"][1]
    assert shown["sealed_subjects"] == report["sealed_subjects"]  # ciphertext only


def test_an_event_holds_personal_data_when_masking_changes_it() -> None:
    assert holds_personal_data(ACTION)
    checkpoint = {"origin": "log.example", "size": 12, "root_hash": "cm9vdA=="}
    assert not holds_personal_data(checkpoint)


def test_an_old_leaf_holding_personal_data_in_clear_is_exported_as_its_hash_only() -> None:
    """Leaves written before sealing hold people's data in clear: without pii:read the export
    gives their hash and id, not their bytes; sealed and non-incident leaves come whole."""
    incident = ACTION["incident_id"]

    def row(subject: str, data: dict) -> SimpleNamespace:
        leaf = canonical_json({"subject": subject, "data": data})
        return SimpleNamespace(
            index=7, ce_id=uuid4(), subject=subject, leaf=leaf, leaf_hash=leaf_hash(leaf)
        )

    old = row(incident, ACTION)
    assert set(exported_leaf(old, clear=False)) == {"index", "leaf_hash", "id", "withheld"}
    assert base64.b64decode(exported_leaf(old, clear=True)["leaf"]) == old.leaf
    envelope = {"sealed": {"kid": incident, "nonce": "bm9uY2U=", "ct": "Y3Q="}}
    sealed = row(incident, {**ACTION, "actor_name": envelope, "note": envelope})
    assert base64.b64decode(exported_leaf(sealed, clear=False)["leaf"]) == sealed.leaf
    checkpoint = row("log", {"note": "sqjz.example/audit\n13904770105\n"})
    assert "leaf" in exported_leaf(checkpoint, clear=False)
