"""Pure functions over an incident's facts: as stored, as changed, as published."""

from __future__ import annotations

from typing import Any

from services.intake.schemas import FactsUpdate, IncidentIn
from shared.directory import Township
from shared.events.models import IncidentFacts, Subject
from shared.privacy import mask_id_number


def initial_facts(report: IncidentIn, township: Township) -> dict[str, Any]:
    """Facts as stored: JSON-ready, with the subjects' full ID numbers."""
    facts = report.model_dump(mode="json", exclude={"reporter", "township"})
    facts["township_code"] = township.code
    facts["township_name"] = township.name
    return facts


def apply_changes(facts: dict[str, Any], update: FactsUpdate) -> tuple[dict, dict, dict]:
    """(new facts, the changes that differ, the values they replace)."""
    stated = update.model_dump(mode="json", exclude_unset=True)
    changes = {name: value for name, value in stated.items() if facts.get(name) != value}
    previous = {name: facts.get(name) for name in changes}
    return {**facts, **changes}, changes, previous


def masked_subjects(subjects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": subject["id"],
            "name": subject["name"],
            "id_number_masked": mask_id_number(subject.get("id_number")),
        }
        for subject in subjects
    ]


def masked(facts: dict[str, Any]) -> dict[str, Any]:
    """The same facts with ID numbers masked, for events and responses."""
    if "subjects" not in facts or facts["subjects"] is None:
        return dict(facts)
    return {**facts, "subjects": masked_subjects(facts["subjects"])}


def event_facts(facts: dict[str, Any]) -> IncidentFacts:
    shown = masked(facts)
    return IncidentFacts(
        **{**shown, "subjects": tuple(Subject(**subject) for subject in shown["subjects"])}
    )
