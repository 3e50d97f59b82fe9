"""Pure functions over an incident's facts: as stored, as changed, as published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain.directory import Township
from shared.domain.privacy import mask_id_number, masked_name, masked_phone, masked_text
from shared.domain.reports import FactsUpdate, IncidentIn
from shared.events.models import IncidentFacts, Reporter, Subject


def initial_facts(report: IncidentIn, township: Township) -> dict[str, Any]:
    """Facts as stored: JSON-ready, with the subjects' full ID numbers."""
    # Only the report's own fields: callers may pass a subclass carrying more (a dry run's).
    facts = report.model_dump(
        mode="json", include=set(IncidentIn.model_fields) - {"reporter", "township", "external_ref"}
    )
    facts["township_code"] = township.code
    facts["township_name"] = township.name
    return facts


TIME_FIELDS = frozenset({"occurred_at", "discovered_at"})


def earliest_known_time(facts: dict[str, Any], reported_at: datetime) -> datetime:
    """The earliest moment the incident is known to exist: when it occurred, was discovered or
    was reported, whichever came first. Nothing done about it can precede this."""
    stated = [datetime.fromisoformat(facts[name]) for name in TIME_FIELDS if facts.get(name)]
    return min([reported_at, *stated])


def _same(name: str, stored: Any, stated: Any) -> bool:
    """Equal as facts: the same instant counts as the same time whatever its UTC offset."""
    if name in TIME_FIELDS and stored is not None and stated is not None:
        return datetime.fromisoformat(stored) == datetime.fromisoformat(stated)
    return bool(stored == stated)


def apply_changes(
    facts: dict[str, Any], update: FactsUpdate, township: Township | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(new facts, the changes that differ, the values they replace).

    `township`: the directory's township for `update.township` (the caller resolves it); a
    move changes both `township_code` and `township_name`.
    """
    stated = update.model_dump(mode="json", exclude_unset=True, exclude={"township"})
    if township is not None:
        stated["township_code"] = township.code
        stated["township_name"] = township.name
    changes = {
        name: value for name, value in stated.items() if not _same(name, facts.get(name), value)
    }
    previous = {name: facts.get(name) for name in changes}
    return {**facts, **changes}, changes, previous


def masked_subjects(subjects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": subject["id"],
            "name": masked_name(subject["name"]),
            "id_number_masked": mask_id_number(subject.get("id_number")),
            # The deciding authority is a court or office, not personal data (R18).
            "deciding_authority": subject.get("deciding_authority"),
        }
        for subject in subjects
    ]


FREE_TEXT_FIELDS = ("location", "summary", "measures_taken", "persons_involved")


def masked(facts: dict[str, Any], known_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """The same facts with names and ID numbers masked, also where typed into free text
    (`known_names`: subjects' names to look for there besides the facts' own)."""
    shown = dict(facts)
    names = [*known_names, *(subject["name"] for subject in facts.get("subjects") or ())]
    for field in FREE_TEXT_FIELDS:
        if shown.get(field):
            shown[field] = masked_text(shown[field], names)
    if shown.get("subjects") is not None:
        shown["subjects"] = masked_subjects(shown["subjects"])
    return shown


def event_reporter(reporter: dict[str, Any]) -> Reporter:
    """The reporter as events carry them: the party and name, the phone masked (nobody
    downstream calls back from an event; intake keeps the number sealed)."""
    phone = reporter.get("phone")
    return Reporter(**{**reporter, "phone": masked_phone(phone) if phone else phone})


def event_facts(facts: dict[str, Any]) -> IncidentFacts:
    shown = masked(facts)
    return IncidentFacts(
        **{**shown, "subjects": tuple(Subject(**subject) for subject in shown["subjects"])}
    )
