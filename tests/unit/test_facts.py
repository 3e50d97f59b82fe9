"""Incident facts as stored, changed and published (shared/domain/facts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.intake.schemas import ReportIn
from shared.domain.directory import Township
from shared.domain.facts import (
    apply_changes,
    earliest_known_time,
    event_facts,
    initial_facts,
    masked,
)
from shared.domain.reports import FactsUpdate, IncidentIn
from shared.domain.vocabulary import Category, Phase
from shared.events.models import IncidentFacts

TUKE = Township(code="150626102", name="图克镇")
ID_NUMBER = "150626199001011234"
MASKED = "150626********1234"
OCCURRED = datetime(2025, 3, 1, 9, 55, tzinfo=timezone(timedelta(hours=8)))


def report(**overrides) -> IncidentIn:
    return IncidentIn.model_validate(
        {
            "category": "VIOLENCE",
            "phase": "IN_PROGRESS",
            "township": "图克镇",
            "subjects": [
                {"id": "WS-1", "name": "王某某", "id_number": ID_NUMBER},
                {"id": "WS-2", "name": "李四"},
            ],
            "occurred_at": OCCURRED.isoformat(),
            "location": "图克镇某村",
            "summary": "持刀威胁邻居",
            "reporter": {"party": "SFS:150626102", "name": "李所长"},
            **overrides,
        }
    )


def stored() -> dict:
    return initial_facts(report(), TUKE)


def test_initial_facts_are_json_ready_with_the_township_resolved():
    facts = stored()
    assert "reporter" not in facts
    assert "township" not in facts
    assert facts["township_code"] == "150626102"
    assert facts["township_name"] == "图克镇"
    assert facts["category"] == "VIOLENCE"
    assert facts["phase"] == "IN_PROGRESS"
    assert facts["occurred_at"] == "2025-03-01T09:55:00+08:00"
    assert facts["drill"] is False
    assert facts["discovered_at"] is None


def test_initial_facts_keep_the_full_id_number_for_storage():
    subjects = stored()["subjects"]
    assert subjects[0] == {
        "id": "WS-1",
        "name": "王某某",
        "id_number": ID_NUMBER,
        "deciding_authority": None,
    }
    assert subjects[1]["id_number"] is None


def test_masked_replaces_names_and_id_numbers_and_leaves_the_rest():
    facts = stored()
    shown = masked(facts)
    assert shown["subjects"] == [
        {"id": "WS-1", "name": "王**", "id_number_masked": MASKED, "deciding_authority": None},
        {"id": "WS-2", "name": "李*", "id_number_masked": None, "deciding_authority": None},
    ]
    assert ID_NUMBER not in repr(shown)
    assert {k: v for k, v in shown.items() if k != "subjects"} == {
        k: v for k, v in facts.items() if k != "subjects"
    }
    assert facts["subjects"][0]["id_number"] == ID_NUMBER  # the stored facts are untouched


def test_masked_without_subjects_is_a_copy():
    changes = {"location": "乌审召镇"}
    assert masked(changes) == changes
    assert masked(changes) is not changes
    assert masked({"subjects": None}) == {"subjects": None}


def test_event_facts_mask_id_numbers():
    facts = event_facts(stored())
    assert isinstance(facts, IncidentFacts)
    assert facts.category is Category.VIOLENCE
    assert facts.phase is Phase.IN_PROGRESS
    assert facts.township_name == "图克镇"
    assert facts.occurred_at == OCCURRED
    assert [s.id_number_masked for s in facts.subjects] == [MASKED, None]
    assert ID_NUMBER not in facts.model_dump_json()


def test_apply_changes_returns_only_what_differs_and_what_it_replaces():
    """Follow-up reports (R9) and corrections (R13) keep both versions."""
    facts = stored()
    update = FactsUpdate(location="图克镇另一村", summary="持刀威胁邻居", phase=Phase.OCCURRED)
    new, changes, previous = apply_changes(facts, update)
    assert changes == {"location": "图克镇另一村", "phase": "OCCURRED"}
    assert previous == {"location": "图克镇某村", "phase": "IN_PROGRESS"}
    assert new == {**facts, **changes}
    assert facts["location"] == "图克镇某村"  # input not mutated


def test_apply_changes_with_nothing_stated_changes_nothing():
    facts = stored()
    new, changes, previous = apply_changes(facts, FactsUpdate())
    assert (new, changes, previous) == (facts, {}, {})


def test_apply_changes_restating_the_same_facts_changes_nothing():
    facts = stored()
    update = FactsUpdate.model_validate(
        {"category": "VIOLENCE", "location": "图克镇某村", "occurred_at": OCCURRED.isoformat()}
    )
    assert apply_changes(facts, update)[1:] == ({}, {})


def test_apply_changes_of_subjects_are_masked_for_publication():
    facts = stored()
    update = FactsUpdate.model_validate(
        {"subjects": [{"id": "WS-1", "name": "王某某", "id_number": "150626199001015678"}]}
    )
    _, changes, previous = apply_changes(facts, update)
    assert masked(changes)["subjects"][0]["id_number_masked"] == "150626********5678"
    assert masked(previous)["subjects"][0]["id_number_masked"] == MASKED
    published = repr((masked(changes), masked(previous)))
    assert ID_NUMBER not in published
    assert "150626199001015678" not in published


def test_apply_changes_can_add_a_fact_not_yet_stated():
    facts = stored()
    discovered = datetime(2025, 3, 1, 1, 50, tzinfo=UTC)
    _, changes, previous = apply_changes(facts, FactsUpdate(discovered_at=discovered))
    assert changes == {"discovered_at": "2025-03-01T01:50:00Z"}
    assert previous == {"discovered_at": None}


def test_apply_changes_same_instant_in_another_offset_is_no_change():
    facts = stored()
    same_instant = OCCURRED.astimezone(UTC)
    assert same_instant == OCCURRED
    _, changes, _ = apply_changes(facts, FactsUpdate(occurred_at=same_instant))
    assert changes == {}


@pytest.mark.parametrize("field", ["category", "phase", "subjects", "offence", "township", "drill"])
def test_explicit_null_does_not_erase_a_required_fact(field):
    facts = stored()
    try:
        update = FactsUpdate.model_validate({field: None})
    except ValidationError:
        return  # refused at the door: also correct
    new, _, _ = apply_changes(facts, update)
    assert new[field] == facts[field]


def test_masked_hides_subject_names_typed_into_free_text():
    facts = {**stored(), "summary": "王某某持刀，李四在场", "location": "王某某家门口"}
    shown = masked(facts)
    assert shown["summary"] == "王**持刀，李*在场"
    assert shown["location"] == "王**家门口"


def test_a_report_listing_one_subject_twice_is_refused():
    twice = [{"id": "WS-1", "name": "王某某"}, {"id": "WS-1", "name": "王某"}]
    with pytest.raises(ValidationError, match="subject ids listed more than once: WS-1"):
        report(subjects=twice)
    with pytest.raises(ValidationError, match="listed more than once: WS-1"):
        FactsUpdate(subjects=twice)


def test_distinct_subjects_with_the_same_name_are_two_people():
    namesakes = [{"id": "WS-1", "name": "王某某"}, {"id": "WS-2", "name": "王某某"}]
    assert [subject.id for subject in report(subjects=namesakes).subjects] == ["WS-1", "WS-2"]


# --- what intake accepts, every consumer can store ---------------------------------------------

CONTROL_CHARACTERS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f"]


@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
@pytest.mark.parametrize(
    "field",
    ["location", "summary", "measures_taken", "persons_involved", "subjects", "reporter"],
)
def test_a_control_character_anywhere_in_a_report_is_refused(field, character):
    """JSONB refuses NUL: a report intake accepted with one would be dead-lettered by escalation
    and get no duties at all. No report needs a C0 control character, so none is accepted."""
    value: object = f"a{character}b"
    if field == "subjects":
        value = [{"id": f"WS{character}1", "name": "王某某"}]
    elif field == "reporter":
        value = {"party": "SFS:150626102", "name": f"李{character}所长"}
    with pytest.raises(ValidationError, match=f"U\\+{ord(character):04X}"):
        report(**{field: value})


@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_a_control_character_in_a_follow_up_is_refused(character):
    with pytest.raises(ValidationError, match="control characters"):
        FactsUpdate.model_validate({"summary": f"续报{character}内容"})


def test_tabs_and_line_breaks_are_text_not_control():
    text = "第一行\r\n第二行\n\t缩进"
    assert report(summary=text).summary == text
    assert FactsUpdate.model_validate({"measures_taken": text}).measures_taken == text


def test_earliest_known_time_is_the_first_of_occurred_discovered_and_reported():
    reported_at = OCCURRED + timedelta(hours=2)
    facts = stored()
    assert earliest_known_time(facts, reported_at) == OCCURRED
    discovered = OCCURRED - timedelta(minutes=30)
    facts = {**facts, "discovered_at": discovered.isoformat()}
    assert earliest_known_time(facts, reported_at) == discovered
    unstated = {**facts, "occurred_at": None, "discovered_at": None}
    assert earliest_known_time(unstated, reported_at) == reported_at


MUSIC = Township(code="150626101", name="乌审召镇")


def test_r6_offence_is_a_fact_of_any_category_false_unless_stated():
    assert stored()["offence"] is False
    facts = initial_facts(report(category="DISRUPTION", phase="OCCURRED", offence=True), TUKE)
    assert facts["offence"] is True
    assert event_facts(facts).offence is True
    _, changes, previous = apply_changes(stored(), FactsUpdate(offence=True))
    assert (changes, previous) == ({"offence": True}, {"offence": False})


def test_r18_deciding_authority_is_kept_and_published_unmasked():
    subjects = [
        {
            "id": "WS-1",
            "name": "王某某",
            "id_number": ID_NUMBER,
            "deciding_authority": "乌审旗人民法院",
        }
    ]
    facts = initial_facts(report(subjects=subjects), TUKE)
    assert facts["subjects"][0]["deciding_authority"] == "乌审旗人民法院"
    assert masked(facts)["subjects"][0]["deciding_authority"] == "乌审旗人民法院"
    assert event_facts(facts).subjects[0].deciding_authority == "乌审旗人民法院"


@pytest.mark.parametrize("authority", ["DEC:乌审旗人民法院", "法" * 36, ""])
def test_r18_deciding_authority_names_a_dec_party_without_colon_within_35(authority):
    subjects = [{"id": "WS-1", "name": "王某某", "deciding_authority": authority}]
    with pytest.raises(ValidationError, match="deciding_authority"):
        report(subjects=subjects)


def test_township_correction_changes_code_and_name_and_keeps_the_old_ones():
    _, changes, previous = apply_changes(stored(), FactsUpdate(township="乌审召镇"), MUSIC)
    assert changes == {"township_code": "150626101", "township_name": "乌审召镇"}
    assert previous == {"township_code": "150626102", "township_name": "图克镇"}


def test_township_correction_to_the_same_township_changes_nothing():
    assert apply_changes(stored(), FactsUpdate(township="图克镇"), TUKE)[1:] == ({}, {})


def test_drill_correction_to_real_is_a_change_of_drill():
    drill = initial_facts(report(drill=True), TUKE)
    new, changes, previous = apply_changes(drill, FactsUpdate(drill=False))
    assert (changes, previous, new["drill"]) == ({"drill": False}, {"drill": True}, False)


@pytest.mark.parametrize("changes", [{"township": "乌审召镇"}, {"drill": False}])
def test_township_and_drill_change_only_by_a_correction(changes):
    reporter = {"party": "SFS:150626102", "name": "李所长"}
    with pytest.raises(ValidationError, match="only by a CORRECTION"):
        ReportIn.model_validate({"kind": "FOLLOW_UP", "reporter": reporter, "changes": changes})
    corrected = ReportIn.model_validate(
        {"kind": "CORRECTION", "reporter": reporter, "changes": changes, "reason": "报错了"}
    )
    assert corrected.changes.model_fields_set == set(changes)
