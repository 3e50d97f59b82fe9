"""Event types change compatibly within a topic version; the comparison itself, case by case."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field, create_model

from shared.events import models
from shared.events.registry import EVENT_TYPES
from tools import contracts

NEW_VERSION = (
    "Event types may only gain optional properties within a topic version: new readers must "
    "read old records, and old readers (who ignore properties they do not know) new ones. "
    "Publish this change "
    "as a new topic version (e.g. escalations.v2) or as a new event type, and keep the old one "
    "as it is: subscribers rely on docs/events/schemas/."
)


def test_every_registered_type_is_compatible_with_its_published_schema() -> None:
    problems = contracts.registry_breaking_changes(
        contracts.committed_event_schemas(), contracts.event_schemas()
    )
    assert not problems, "BREAKING:\n  " + "\n  ".join(problems) + "\n" + NEW_VERSION


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


STRING = {"type": "string"}
UUID_STRING = {"type": "string", "format": "uuid"}
NULLABLE_STRING = {"anyOf": [STRING, {"type": "null"}], "default": None}

BREAKING = [
    pytest.param(
        obj({"a": STRING, "b": STRING}, ("a",)),
        obj({"a": STRING}, ("a",)),
        ["b: property removed"],
        id="property-removed",
    ),
    pytest.param(
        obj({"a": STRING}, ("a",)),
        obj({"a": {"type": "integer"}}, ("a",)),
        ["a: type changed from string to integer"],
        id="type-changed",
    ),
    pytest.param(
        obj({"a": {"type": "number"}}),
        obj({"a": {"type": "integer"}}),
        ["a: type changed from number to integer"],
        id="number-narrowed-to-integer",
    ),
    pytest.param(
        obj({"a": UUID_STRING}),
        obj({"a": {"type": "string", "format": "date-time"}}),
        ["a: format changed from uuid to date-time"],
        id="format-changed",
    ),
    pytest.param(
        obj({"a": STRING}),
        obj({"a": UUID_STRING}),
        ["a: format now uuid"],
        id="format-added",
    ),
    pytest.param(
        obj({"a": {"type": "string", "enum": ["X", "Y", "Z"]}}),
        obj({"a": {"type": "string", "enum": ["X", "Z"]}}),
        ['a: values removed: "Y"'],
        id="enum-value-removed",
    ),
    pytest.param(
        obj({"a": STRING}),
        obj({"a": {"type": "string", "enum": ["X"]}}),
        ['a: now limited to "X"'],
        id="enum-imposed",
    ),
    pytest.param(
        obj({"a": {"type": "string", "const": "MET"}}),
        obj({"a": {"type": "string", "const": "DONE"}}),
        ['a: values removed: "MET"'],
        id="const-changed",
    ),
    pytest.param(
        obj({"a": STRING, "b": STRING}, ("a",)),
        obj({"a": STRING, "b": STRING}, ("a", "b")),
        ["b: optional property made required"],
        id="optional-made-required",
    ),
    pytest.param(
        obj({"a": STRING}, ("a",)),
        obj({"a": STRING, "c": STRING}, ("a", "c")),
        ["c: new required property"],
        id="required-property-added",
    ),
    pytest.param(
        obj({"a": NULLABLE_STRING}),
        obj({"a": STRING}),
        ["a: type changed from null to string"],
        id="null-no-longer-allowed",
    ),
    pytest.param(
        obj({"a": {"type": "string", "maxLength": 64}}),
        obj({"a": {"type": "string", "maxLength": 32}}),
        ["a: maxLength lowered to 32"],
        id="max-length-lowered",
    ),
    pytest.param(
        obj({"a": {"type": "string", "minLength": 1}}),
        obj({"a": {"type": "string", "minLength": 1, "pattern": "^\\d{9}$"}}),
        ["a: pattern now '^\\\\d{9}$'"],
        id="pattern-imposed",
    ),
    pytest.param(
        obj({"a": {"type": "array", "items": STRING}}),
        obj({"a": {"type": "array", "items": {"type": "integer"}}}),
        ["a[]: type changed from string to integer"],
        id="item-type-changed",
    ),
    pytest.param(
        obj({"a": {"type": "object", "additionalProperties": True}}),
        obj({"a": {"type": "object", "additionalProperties": False}}),
        ["a: other properties no longer accepted"],
        id="extra-properties-forbidden",
    ),
    pytest.param(
        obj({"a": {}}),
        obj({"a": STRING}),
        ["a: accepted anything, now constrained"],
        id="anything-constrained",
    ),
    pytest.param(
        {
            "$defs": {"Inner": obj({"x": STRING, "y": STRING}, ("x",))},
            **obj({"inner": {"$ref": "#/$defs/Inner"}}, ("inner",)),
        },
        {
            "$defs": {"Inner": obj({"x": STRING}, ("x",))},
            **obj({"inner": {"$ref": "#/$defs/Inner"}}, ("inner",)),
        },
        ["inner.y: property removed"],
        id="nested-through-ref",
    ),
    pytest.param(
        {
            "$defs": {"Kind": {"type": "string", "enum": ["A", "B"]}},
            **obj({"kind": {"$ref": "#/$defs/Kind"}}),
        },
        {
            "$defs": {"Kind": {"type": "string", "enum": ["A"]}},
            **obj({"kind": {"$ref": "#/$defs/Kind"}}),
        },
        ['kind: values removed: "B"'],
        id="enum-through-ref",
    ),
    # Old readers: a subscriber upgraded after its producer reads what the new version writes.
    pytest.param(
        obj({"a": {"type": "string", "enum": ["X"]}}),
        obj({"a": {"type": "string", "enum": ["X", "Y"]}}),
        ['a: values added: "Y" (old readers refuse it)'],
        id="enum-value-added",
    ),
    pytest.param(
        obj({"a": STRING}),
        obj({"a": NULLABLE_STRING}),
        ["a: now also null (old readers refuse it)"],
        id="made-nullable",
    ),
    pytest.param(
        obj({"a": STRING, "b": STRING}, ("a", "b")),
        obj({"a": STRING, "b": STRING}, ("a",)),
        ["b: required property made optional (old readers refuse it)"],
        id="required-made-optional",
    ),
    pytest.param(
        obj({"a": {"type": "integer"}}),
        obj({"a": {"type": "number"}}),
        ["a: now also number (old readers refuse it)"],
        id="integer-widened",
    ),
    pytest.param(
        obj({"a": UUID_STRING}),
        obj({"a": STRING}),
        ["a: format uuid dropped (old readers refuse it)"],
        id="format-dropped",
    ),
    pytest.param(
        obj({"a": {"type": "string", "maxLength": 32}}),
        obj({"a": {"type": "string", "maxLength": 64}}),
        ["a: maxLength raised to 64 (old readers refuse it)"],
        id="max-length-raised",
    ),
    pytest.param(
        obj({"a": {"type": "string", "pattern": "^\\d{9}$"}}),
        obj({"a": STRING}),
        ["a: pattern changed (old readers refuse it)"],
        id="pattern-dropped",
    ),
    pytest.param(
        obj({"a": STRING}),
        obj({"a": {}}),
        ["a: constraints dropped (old readers refuse it)"],
        id="constraints-dropped",
    ),
    pytest.param(
        obj({"a": STRING}, ("a",), additionalProperties=False),
        obj({"a": STRING, "b": NULLABLE_STRING}, ("a",)),
        ["b: property added, other properties refused (old readers refuse it)"],
        id="property-added-for-readers-refusing-unknown-ones",
    ),
    pytest.param(
        obj({"a": {"type": "object", "additionalProperties": {"type": "integer"}}}),
        obj({"a": {"type": "object", "additionalProperties": {"type": "number"}}}),
        ["a.*: now also number (old readers refuse it)"],
        id="free-form-values-widened",
    ),
]

COMPATIBLE = [
    pytest.param(obj({"a": STRING}, ("a",)), obj({"a": STRING}, ("a",)), id="unchanged"),
    pytest.param(
        obj({"a": STRING}, ("a",)),
        obj({"a": STRING, "b": NULLABLE_STRING}, ("a",)),
        id="optional-property-added",  # old readers ignore it, new ones find it absent
    ),
    pytest.param(
        obj({"a": STRING}, ("a",), additionalProperties=True),
        obj({"a": STRING, "b": {"type": "integer"}}, ("a",), additionalProperties=True),
        id="optional-property-added-to-tolerant-readers",
    ),
    pytest.param(
        obj({"a": STRING}, additionalProperties=False),
        obj({"a": STRING}, additionalProperties=True),
        id="readers-made-tolerant",  # producers still write only `a`
    ),
    pytest.param(
        obj({"a": {"type": "string", "maxLength": 32}}),
        obj({"a": {"type": "string", "maxLength": 32, "description": "now described"}}),
        id="described",
    ),
    pytest.param(
        {"$defs": {"T": STRING}, **obj({"a": {"$ref": "#/$defs/T"}})},
        obj({"a": {"type": "string", "title": "inlined"}}),
        id="ref-inlined",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BREAKING)
def test_breaking_changes_are_named(old: dict, new: dict, expected: list[str]) -> None:
    assert contracts.breaking_changes(old, new) == expected


@pytest.mark.parametrize(("old", "new"), COMPATIBLE)
def test_compatible_changes_pass(old: dict, new: dict) -> None:
    assert contracts.breaking_changes(old, new) == []


def schema_of(model: type[models.EventData], topic: str = "escalations.v1") -> dict:
    return {"x-topic": topic, **model.model_json_schema()}


def test_types_removed_or_moved_break_the_topic() -> None:
    committed = {
        "obligation.met": schema_of(models.ObligationMet),
        "obligation.waived": schema_of(models.ObligationWaived),
    }
    current = {
        "obligation.met": schema_of(models.ObligationMet, "escalations.v2"),
        "obligation.escalated": schema_of(models.ObligationWaived),
    }
    assert contracts.registry_breaking_changes(committed, current) == [
        "obligation.met: moved from escalations.v1 to escalations.v2",
        "obligation.waived: removed from escalations.v1",
    ]


def test_a_new_type_is_compatible() -> None:
    committed = {"obligation.met": schema_of(models.ObligationMet)}
    current = {**committed, "obligation.reopened": schema_of(models.ObligationWaived)}
    assert contracts.registry_breaking_changes(committed, current) == []


# A real model changed the ways a change would: the comparison reads pydantic's schemas.


def obligation_met(drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """The schema of `obligation.met` with fields dropped, retyped or added."""
    kept = {
        name: (info.annotation, info)
        for name, info in models.ObligationMet.model_fields.items()
        if name not in drop
    }
    changed = create_model("ObligationMet", __base__=models.EventData, **{**kept, **fields})
    return changed.model_json_schema()


def test_changes_of_a_real_model() -> None:
    current = models.ObligationMet.model_json_schema()
    assert obligation_met() == current
    assert contracts.breaking_changes(current, obligation_met(drop=("drill",))) == [
        "drill: property removed"
    ]
    assert contracts.breaking_changes(current, obligation_met(status=(Literal["MET"], ...))) == [
        'status: values removed: "MET_LATE"'
    ]
    assert contracts.breaking_changes(current, obligation_met(reviewed_by=(str, ...))) == [
        "reviewed_by: new required property"
    ]
    reviewer = (str | None, Field(default=None, description="who checked it"))
    assert contracts.breaking_changes(current, obligation_met(reviewed_by=reviewer)) == []


def test_every_current_schema_is_compatible_with_itself() -> None:
    for ce_type in EVENT_TYPES:
        schema = contracts.event_schema(ce_type)
        assert contracts.breaking_changes(schema, schema) == [], ce_type


def test_regenerating_refuses_a_breaking_change(tmp_path: Path) -> None:
    committed = contracts.event_schema("obligation.met")
    committed["properties"]["escalated_by"] = {"type": "string"}
    folder = tmp_path / contracts.SCHEMAS_DIR
    folder.mkdir(parents=True)
    (folder / "obligation.met.json").write_text(contracts.render_json(committed))
    with pytest.raises(SystemExit, match="escalated_by: property removed"):
        contracts.write(tmp_path)
    assert not (tmp_path / contracts.ASYNCAPI_FILE).exists()
    written = contracts.write(tmp_path, accept_breaking=True)
    assert set(written) == set(contracts.document_paths())
    assert contracts.drift(tmp_path) == []
