"""R20 as pure decisions (shared/domain/correlation.py): which open incident a report is of, which
incidents are only candidates, and the facts of one event from two reports of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from shared.domain.correlation import Correlation, OpenIncident, candidates, combined, match
from shared.settings import Settings

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
TUKE, WUSHENZHAO = "150626102", "150626101"


@pytest.fixture(scope="module")
def policy() -> Correlation:
    settings = Settings()
    return Correlation.load(settings.policy_file)


def incident(
    *,
    ago: timedelta = timedelta(minutes=2),
    township: str = TUKE,
    category: str = "VIOLENCE",
    subjects: frozenset[str] = frozenset({"SQJZ-1"}),
    refs: frozenset[str] = frozenset(),
    drill: bool = False,
    identifier: UUID | None = None,
) -> OpenIncident:
    return OpenIncident(
        id=identifier or uuid4(),
        township_code=township,
        category=category,
        reported_at=NOW - ago,
        drill=drill,
        subject_ids=subjects,
        external_refs=refs,
    )


def test_the_policy_ranks_every_category_and_phase_once(policy: Correlation) -> None:
    assert policy.rule_id == "R20"
    assert policy.link_window == timedelta(hours=24)
    assert policy.candidate_window == timedelta(hours=1)
    with pytest.raises(ValidationError, match="category_severity"):
        Correlation.model_validate(
            {**policy.model_dump(), "category_severity": ["VIOLENCE", "OTHER"]}
        )


def test_R20_same_subject_id_in_the_township_within_the_window_matches(
    policy: Correlation,
) -> None:
    earlier = incident(ago=timedelta(hours=23))
    found = match(policy, [earlier], TUKE, False, ["SQJZ-1"], None, NOW)
    assert found is not None and (found.incident_id, found.linked_by) == (earlier.id, "SUBJECT_ID")


@pytest.mark.parametrize(
    "other",
    [
        incident(ago=timedelta(hours=25)),  # outside the link window
        incident(township=WUSHENZHAO),  # another township
        incident(drill=True),  # a drill never matches a real report
        incident(subjects=frozenset({"SQJZ-2"})),  # another subject
    ],
)
def test_R20_what_does_not_match(policy: Correlation, other: OpenIncident) -> None:
    assert match(policy, [other], TUKE, False, ["SQJZ-1"], None, NOW) is None


def test_R20_the_reference_matches_before_the_subject_and_the_earliest_wins(
    policy: Correlation,
) -> None:
    by_subject = incident(ago=timedelta(hours=3))
    by_reference = incident(subjects=frozenset(), refs=frozenset({"JQ-1"}))
    later_same_subject = incident(ago=timedelta(minutes=1))
    found = match(
        policy, [later_same_subject, by_subject, by_reference], TUKE, False, ["SQJZ-1"], "JQ-1", NOW
    )
    assert found is not None and (found.incident_id, found.linked_by) == (
        by_reference.id,
        "EXTERNAL_REF",
    )
    found = match(policy, [later_same_subject, by_subject], TUKE, False, ["SQJZ-1"], None, NOW)
    assert found is not None and found.incident_id == by_subject.id


def test_R20_near_matches_are_candidates_only(policy: Correlation) -> None:
    this = incident(subjects=frozenset({"SQJZ-9"}), ago=timedelta(0))
    near = incident(subjects=frozenset({"SQJZ-2"}), ago=timedelta(minutes=20))
    unnamed = incident(subjects=frozenset(), ago=timedelta(minutes=50))
    same_subject = incident(subjects=frozenset({"SQJZ-9"}))
    other_category = incident(category="ABSCONDED", subjects=frozenset())
    too_far = incident(subjects=frozenset(), ago=timedelta(minutes=61))
    already_linked = incident(subjects=frozenset())
    found = candidates(
        policy,
        this,
        [this, near, unnamed, same_subject, other_category, too_far, already_linked],
        frozenset({already_linked.id}),
    )
    assert [candidate.incident_id for candidate in found] == [near.id, unnamed.id]
    assert found[0].why.startswith("同一乡镇、同一类别（VIOLENCE），报告时间相隔 20 分钟")


def facts(**overrides: object) -> dict:
    return {
        "category": "VIOLENCE",
        "phase": "SIGNS",
        "offence": False,
        "subjects": [{"id": "SQJZ-1", "name": "王某某"}],
        "occurred_at": "2026-11-30T09:50:00+08:00",
        "discovered_at": None,
        "location": "农贸市场",
        "summary": None,
        **overrides,
    }


def test_R20_one_event_takes_the_more_severe_facts(policy: Correlation) -> None:
    other = facts(
        phase="IN_PROGRESS",
        offence=True,
        subjects=[{"id": "SQJZ-1", "name": "王某某"}, {"id": "SQJZ-2", "name": "李某"}],
        occurred_at="2026-11-30T01:40:00+00:00",  # 09:40 in the county: earlier
        discovered_at="2026-11-30T09:45:00+08:00",
        location="东门",
        summary="持刀伤人",
    )
    assert combined(policy, facts(), other) == {
        "phase": "IN_PROGRESS",
        "offence": True,
        "subjects": other["subjects"],
        "occurred_at": "2026-11-30T01:40:00+00:00",
        "discovered_at": "2026-11-30T09:45:00+08:00",
        "summary": "持刀伤人",  # the first report had none; its location stays
    }


def test_R20_the_first_reports_facts_stand_when_they_are_the_more_severe(
    policy: Correlation,
) -> None:
    first = facts(category="ABNORMAL_DEATH", phase="IN_PROGRESS")
    assert combined(policy, first, facts(category="VIOLENCE", phase="OCCURRED")) == {}
    assert combined(policy, facts(), first) == {
        "category": "ABNORMAL_DEATH",
        "phase": "IN_PROGRESS",
    }


def test_R20_an_unlink_restores_what_the_merge_set_unless_changed_since() -> None:
    from services.intake.linking import restored

    merge_changes = {"phase": "IN_PROGRESS", "offence": True}
    merge_previous = {"phase": "SIGNS", "offence": False}
    # A later correction set offence again, to false: it stands; the phase goes back.
    current = facts(phase="IN_PROGRESS", offence=False)
    assert restored(current, merge_changes, merge_previous) == (
        {"phase": "SIGNS"},
        {"phase": "IN_PROGRESS"},
    )
