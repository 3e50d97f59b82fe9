"""Intake at the door of the revised rules ("How rules apply"): every party records only its
own actions, one rung up on the owner's behalf with a reason; only TCG or BLO closes, an
absconding only once found or by the BLO with a reason; township and drill corrections; the
R6 offence and R18 deciding-authority facts."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.helpers import act, report, timeline_with

TUKE = "150626102"  # 图克镇
WUSHENZHAO = "150626101"  # 乌审召镇


async def record(
    clients: dict[str, httpx.AsyncClient], incident_id: str, action: str, party: str, **more: Any
) -> httpx.Response:
    return await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": action, "party": party, "actor_name": "值班员", **more},
    )


def refused_field(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()["errors"][0]["field"]


async def correct(
    clients: dict[str, httpx.AsyncClient],
    incident_id: str,
    changes: dict[str, Any],
    party: str = f"SFS:{TUKE}",
    kind: str = "CORRECTION",
    **more: Any,
) -> httpx.Response:
    return await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": kind,
            "reporter": {"party": party, "name": "李明"},
            "changes": changes,
            **more,
        },
    )


async def shown(clients: dict[str, httpx.AsyncClient], incident_id: str, reader: str = "BLO"):
    return await clients["intake"].get(f"/v1/incidents/{incident_id}", headers={"X-Act-As": reader})


async def test_each_party_records_only_its_own_actions(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    # A 司法所 neither activates the township plan nor contacts departments.
    for action in ("PLAN_ACTIVATED", "DEPARTMENTS_CONTACTED", "POLICE_DISPATCHED"):
        refused = await record(clients, incident_id, action, f"SFS:{TUKE}")
        assert refused_field(refused) == "action", action
        assert "every party records only its own" in refused.json()["errors"][0]["message"]
    for action, party in (
        ("PLAN_ACTIVATED", f"TCG:{TUKE}"),
        ("DEPARTMENTS_CONTACTED", "BLO"),
        ("POLICE_DISPATCHED", f"PPS:{TUKE}"),
        ("ON_SCENE", f"SFS:{TUKE}"),
    ):
        accepted = await record(clients, incident_id, action, party)
        assert accepted.status_code == 201, (action, accepted.text)
        assert (accepted.json()["party"], accepted.json()["on_behalf_of"]) == (party, None)
    actions = (await shown(clients, incident_id)).json()["actions"]
    assert [(a["action"], a["party"]) for a in actions] == [
        ("PLAN_ACTIVATED", f"TCG:{TUKE}"),
        ("DEPARTMENTS_CONTACTED", "BLO"),
        ("POLICE_DISPATCHED", f"PPS:{TUKE}"),
        ("ON_SCENE", f"SFS:{TUKE}"),
    ]


async def test_on_behalf_one_rung_up_needs_a_reason(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    for_sfs = {"on_behalf_of": f"SFS:{TUKE}"}
    without_reason = await record(clients, incident_id, "ON_SCENE", f"TCG:{TUKE}", **for_sfs)
    assert refused_field(without_reason) == "reason"
    two_rungs_up = await record(clients, incident_id, "ON_SCENE", "BLO", **for_sfs, reason="代录")
    assert refused_field(two_rungs_up) == "on_behalf_of"
    other_township = await record(
        clients,
        incident_id,
        "ON_SCENE",
        f"TCG:{TUKE}",
        on_behalf_of=f"SFS:{WUSHENZHAO}",
        reason="代录",
    )
    assert refused_field(other_township) == "on_behalf_of"
    # The caller speaks for the recorder, not for the owner it records for.
    as_the_owner = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "ON_SCENE", "party": f"TCG:{TUKE}", "actor_name": "某", **for_sfs},
        headers={"X-Act-As": f"SFS:{TUKE}"},
    )
    assert as_the_owner.status_code == 403, as_the_owner.text

    reason = "所长在现场，手机无信号，由指挥小组代为登记"
    accepted = await record(
        clients, incident_id, "ON_SCENE", f"TCG:{TUKE}", **for_sfs, reason=reason
    )
    assert accepted.status_code == 201, accepted.text
    (action,) = (await shown(clients, incident_id)).json()["actions"]
    assert (action["party"], action["on_behalf_of"], action["reason"]) == (
        f"TCG:{TUKE}",
        f"SFS:{TUKE}",
        reason,
    )
    timeline = await timeline_with(clients["audit"], incident_id, "incident.action_recorded")
    (recorded,) = [
        entry["event"]["data"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "incident.action_recorded"
    ]
    assert (recorded["on_behalf_of"], recorded["reason"]) == (f"SFS:{TUKE}", reason)


async def test_reported_names_whom(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id = await report(clients)
    assert refused_field(await record(clients, incident_id, "REPORTED", f"SFS:{TUKE}")) == "to"
    to_police = await record(clients, incident_id, "REPORTED", f"SFS:{TUKE}", to=f"PPS:{TUKE}")
    assert refused_field(to_police) == "to"
    to_other_tcg = await record(
        clients, incident_id, "REPORTED", f"SFS:{TUKE}", to=f"TCG:{WUSHENZHAO}"
    )
    assert refused_field(to_other_tcg) == "to"
    not_a_report = await record(clients, incident_id, "ON_SCENE", f"SFS:{TUKE}", to="BLO")
    assert refused_field(not_a_report) == "to"
    for to in (f"TCG:{TUKE}", "BLO"):
        accepted = await record(clients, incident_id, "REPORTED", f"SFS:{TUKE}", to=to)
        assert accepted.status_code == 201, accepted.text
    actions = (await shown(clients, incident_id)).json()["actions"]
    assert [(a["action"], a["to"]) for a in actions] == [
        ("REPORTED", f"TCG:{TUKE}"),
        ("REPORTED", "BLO"),
    ]
    timeline = await timeline_with(
        clients["audit"], incident_id, "incident.action_recorded", at_least=2
    )
    assert sorted(
        entry["event"]["data"]["to"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "incident.action_recorded"
    ) == ["BLO", f"TCG:{TUKE}"]


async def test_closed_only_by_tcg_or_blo(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    for party in (f"SFS:{TUKE}", f"PPS:{TUKE}", "BJO"):
        refused = await record(clients, incident_id, "CLOSED", party)
        assert refused_field(refused) == "action", party
    assert (await shown(clients, incident_id)).json()["actions"] == []
    closed = await record(clients, incident_id, "CLOSED", f"TCG:{TUKE}")
    assert closed.status_code == 201, closed.text
    other_id = await report(clients, category="OTHER", phase="OCCURRED")
    by_blo = await record(clients, other_id, "CLOSED", "BLO")
    assert by_blo.status_code == 201, by_blo.text


async def test_absconded_closes_after_found_or_blo_with_reason(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="ABSCONDED", phase="OCCURRED")
    not_found = await record(clients, incident_id, "CLOSED", f"TCG:{TUKE}")
    assert not_found.status_code == 409, not_found.text
    assert not_found.headers["content-type"] == "application/problem+json"
    assert "已找到" in not_found.json()["detail"]
    without_reason = await record(clients, incident_id, "CLOSED", "BLO")
    assert refused_field(without_reason) == "reason"
    assert "理由" in without_reason.json()["errors"][0]["message"]
    await act(clients, incident_id, "SEARCH_STARTED")
    await act(clients, incident_id, "FOUND")
    after_found = await record(clients, incident_id, "CLOSED", f"TCG:{TUKE}")
    assert after_found.status_code == 201, after_found.text

    still_missing = await report(clients, category="ABSCONDED", phase="OCCURRED")
    reason = "经公安机关核实，对象已出境，移交公安机关继续查找"
    decided = await record(clients, still_missing, "CLOSED", "BLO", reason=reason)
    assert decided.status_code == 201, decided.text
    (closing,) = (await shown(clients, still_missing)).json()["actions"]
    assert (closing["action"], closing["reason"]) == ("CLOSED", reason)


async def test_township_correction_needs_reason_and_moves_access(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)  # 图克镇
    to_wushenzhao = {"township": "乌审召镇"}
    assert refused_field(await correct(clients, incident_id, to_wushenzhao)) == "reason"
    blank = await correct(clients, incident_id, to_wushenzhao, reason="  ")
    assert refused_field(blank) == "reason"
    unknown = await correct(clients, incident_id, {"township": "呼和浩特"}, reason="报错乡镇")
    assert refused_field(unknown) == "changes.township"
    as_follow_up = await correct(clients, incident_id, to_wushenzhao, kind="FOLLOW_UP")
    assert as_follow_up.status_code == 422, as_follow_up.text
    assert (await shown(clients, incident_id, f"SFS:{TUKE}")).status_code == 200

    reason = "事发地为乌审召镇辖区，首报误填图克镇"
    moved = await correct(clients, incident_id, to_wushenzhao, reason=reason)
    assert moved.status_code == 201, moved.text
    assert moved.json()["changes"] == {"township_code": WUSHENZHAO, "township_name": "乌审召镇"}
    assert moved.json()["previous"] == {"township_code": TUKE, "township_name": "图克镇"}
    assert moved.json()["reason"] == reason

    old_township = await shown(clients, incident_id, f"SFS:{TUKE}")
    assert old_township.status_code == 403, old_township.text
    new_township = await shown(clients, incident_id, f"SFS:{WUSHENZHAO}")
    assert new_township.status_code == 200, new_township.text
    facts = new_township.json()["facts"]
    assert (facts["township_code"], facts["township_name"]) == (WUSHENZHAO, "乌审召镇")
    assert new_township.json()["reports"][-1]["reason"] == reason

    timeline = await timeline_with(clients["audit"], incident_id, "incident.report_filed")
    (filed,) = [
        entry["event"]["data"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "incident.report_filed"
    ]
    assert filed["changes"] == {"township_code": WUSHENZHAO, "township_name": "乌审召镇"}
    assert filed["previous"] == {"township_code": TUKE, "township_name": "图克镇"}
    assert filed["reason"] == reason


async def test_drill_to_real_accepted_real_to_drill_refused(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    drill_id = await report(clients, drill=True)
    by_command_group = await correct(clients, drill_id, {"drill": False}, party=f"TCG:{TUKE}")
    assert refused_field(by_command_group) == "changes.drill"
    turned_real = await correct(clients, drill_id, {"drill": False}, reason="演练中发现真实冲突")
    assert turned_real.status_code == 201, turned_real.text
    assert (turned_real.json()["changes"], turned_real.json()["previous"]) == (
        {"drill": False},
        {"drill": True},
    )
    assert (await shown(clients, drill_id)).json()["facts"]["drill"] is False

    real_id = await report(clients)
    for party in (f"SFS:{TUKE}", "BLO"):
        refused = await correct(clients, real_id, {"drill": True}, party=party)
        assert refused_field(refused) == "changes.drill"
        assert "real → drill is refused" in refused.json()["errors"][0]["message"]
    assert (await shown(clients, real_id)).json()["facts"]["drill"] is False


async def test_r6_offence_and_r18_deciding_authority_are_kept_and_shown(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    subject = {
        "id": "SQJZ-2024-0107",
        "name": "王某某",
        "id_number": "150626199001011234",
        "deciding_authority": "乌审旗人民法院",
    }
    incident_id = await report(
        clients, category="DISRUPTION", phase="OCCURRED", offence=True, subjects=[subject]
    )
    facts = (await shown(clients, incident_id)).json()["facts"]
    assert facts["offence"] is True
    assert facts["subjects"][0]["deciding_authority"] == "乌审旗人民法院"
    assert facts["subjects"][0]["name"] == "王**"  # the rest stays masked
    plain = await report(clients)
    assert (await shown(clients, plain)).json()["facts"]["offence"] is False
    follow_up = await correct(clients, plain, {"offence": True}, kind="FOLLOW_UP")
    assert follow_up.status_code == 201, follow_up.text
    assert (await shown(clients, plain)).json()["facts"]["offence"] is True
