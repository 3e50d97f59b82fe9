"""Who records which action, for whom, and who closes (shared/domain/ownership.py): "How rules
apply"."""

from __future__ import annotations

import pytest

from shared.domain.ownership import ACTIONS_OF, Recording, closing_refusal, refusal
from shared.domain.vocabulary import ActionCode, Category

A = ActionCode
TUKE = "150626102"


def refused_field(party: str, action: ActionCode, **details: str) -> str | None:
    refused = refusal(Recording(party=party, action=action, **details), TUKE)
    return None if refused is None else refused[0]


@pytest.mark.parametrize(
    ("party", "own", "not_own"),
    [
        (f"SFS:{TUKE}", A.FIRST_RESPONSE_STARTED, A.PLAN_ACTIVATED),
        (f"TCG:{TUKE}", A.PLAN_ACTIVATED, A.ON_SCENE),
        (f"PPS:{TUKE}", A.POLICE_DISPATCHED, A.POLICE_CALLED),
        ("BLO", A.DEPARTMENTS_CONTACTED, A.PLAN_ACTIVATED),
        ("BJO", A.INVESTIGATION_REPORT_FILED, A.CLOSED),
    ],
)
def test_each_party_records_only_its_own_actions(party, own, not_own):
    assert refused_field(party, own) is None
    assert refused_field(party, not_own) == "action"


def test_parties_without_actions_record_none():
    assert refused_field("CEO", A.CLOSED) == "action"
    assert refused_field("PLATFORM", A.REPORTED) == "action"


def test_on_behalf_one_rung_up_needs_a_reason():
    for_sfs = {"on_behalf_of": f"SFS:{TUKE}"}
    assert refused_field(f"TCG:{TUKE}", A.ON_SCENE, **for_sfs) == "reason"
    assert refused_field(f"TCG:{TUKE}", A.ON_SCENE, **for_sfs, reason="  ") == "reason"
    assert refused_field(f"TCG:{TUKE}", A.ON_SCENE, **for_sfs, reason="所长在现场无法登录") is None
    # Two rungs up, or sideways, is not one rung up.
    assert refused_field("BLO", A.ON_SCENE, **for_sfs, reason="代录") == "on_behalf_of"
    assert refused_field(f"PPS:{TUKE}", A.ON_SCENE, **for_sfs, reason="代录") == "on_behalf_of"
    # Only for the owner of this township.
    other = {"on_behalf_of": "SFS:150626101", "reason": "代录"}
    assert refused_field(f"TCG:{TUKE}", A.ON_SCENE, **other) == "on_behalf_of"
    # The owner's own action codes count: the TCG records ON_SCENE only for the SFS.
    assert refused_field(f"TCG:{TUKE}", A.ON_SCENE) == "action"


def test_reported_names_whom():
    assert refused_field(f"SFS:{TUKE}", A.REPORTED) == "to"
    assert refused_field(f"SFS:{TUKE}", A.REPORTED, to="BLO") is None
    assert refused_field(f"SFS:{TUKE}", A.REPORTED, to=f"TCG:{TUKE}") is None
    assert refused_field(f"SFS:{TUKE}", A.REPORTED, to="TCG:150626101") == "to"
    assert refused_field(f"SFS:{TUKE}", A.REPORTED, to=f"PPS:{TUKE}") == "to"
    assert refused_field(f"SFS:{TUKE}", A.ON_SCENE, to="BLO") == "to"


def closing(party: str, category: Category, found: bool, reason: str | None = None) -> str | None:
    return closing_refusal(Recording(party, A.CLOSED, reason=reason), category, found)


def test_closed_only_by_tcg_or_blo():
    assert {kind for kind, codes in ACTIONS_OF.items() if A.CLOSED in codes} == {"TCG", "BLO"}
    assert closing(f"TCG:{TUKE}", Category.VIOLENCE, found=False) is None
    assert closing("BLO", Category.VIOLENCE, found=False) is None
    assert "只有" in closing(f"SFS:{TUKE}", Category.VIOLENCE, found=False)
    assert refused_field(f"SFS:{TUKE}", A.CLOSED) == "action"


def test_absconded_closes_after_found_or_blo_with_reason():
    assert closing(f"TCG:{TUKE}", Category.ABSCONDED, found=True) is None
    assert "已找到" in closing(f"TCG:{TUKE}", Category.ABSCONDED, found=False)
    assert "理由" in closing("BLO", Category.ABSCONDED, found=False)
    assert (
        closing("BLO", Category.ABSCONDED, found=False, reason="经查已死亡，转非正常死亡") is None
    )


def test_only_closed_is_judged_by_the_closing_rule():
    recording = Recording(f"SFS:{TUKE}", A.CONTROLLED)
    assert closing_refusal(recording, Category.ABSCONDED, found_recorded=False) is None
