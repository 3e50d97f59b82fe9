"""The living incident on the running stack (RULES.md "How rules apply"): the rules follow every
change of the facts, duties belong to their party, and everybody already told stays told."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.helpers import (
    act,
    find,
    obligations_when,
    report,
    timeline_with,
)
from tests.support import WebhookSink

TUKE = "150626102"
SFS, TCG, PPS = f"SFS:{TUKE}", f"TCG:{TUKE}", f"PPS:{TUKE}"


async def file_report(
    clients: dict[str, httpx.AsyncClient],
    incident_id: str,
    changes: dict[str, Any],
    kind: str = "FOLLOW_UP",
    party: str = SFS,
    **fields: Any,
) -> dict[str, Any]:
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": kind,
            "reporter": {"party": party, "name": "李明"},
            "changes": changes,
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def entries_of(response: Any, event_type: str) -> list[dict[str, Any]]:
    return [e["event"]["data"] for e in response.json()["entries"] if e["ce_type"] == event_type]


async def test_R6_signs_then_in_progress_by_follow_up_alerts_the_police(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients, phase="SIGNS")
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R5"))
    assert not find(body, rule_id="R6")
    await file_report(clients, incident_id, {"phase": "IN_PROGRESS"}, text="对象正在持刀伤人")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS)
    )
    police = find(body, rule_id="R6", party=PPS)[0]
    assert (police["action"], police["trigger"]) == ("CALL_POLICE", "changed")
    assert "续报将事态阶段由「苗头迹象」改为「正在实施」" in police["why"]
    await webhook_sink.wait_for(incident_id, {PPS}, lambda alert: alert.get("rule_id") == "R6")
    # Signs no longer describe it: R5's duties still pending are waived, with the change.
    body = await obligations_when(
        clients,
        incident_id,
        lambda body: (
            find(body, rule_id="R5")
            and all(o["status"] != "PENDING" for o in find(body, rule_id="R5"))
        ),
    )
    waived = find(body, rule_id="R5", status="WAIVED")
    assert waived
    assert all("本项（R5）已不再适用" in o["closed_reason"] for o in waived)


async def test_R6_in_progress_corrected_back_to_signs_waives_the_police_duty_with_its_reason(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS))
    await file_report(clients, incident_id, {"phase": "SIGNS"}, kind="CORRECTION")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS, status="WAIVED")
    )
    police = find(body, rule_id="R6", party=PPS)[0]
    assert police["closed_reason"] == (
        "更正将事态阶段由「正在实施」改为「苗头迹象」，本项（R6）已不再适用"
    )
    assert find(body, rule_id="R5", party=TCG)  # signs again: R5 applies


async def test_R6_R18_absconded_corrected_to_abnormal_death(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients, category="ABSCONDED", phase="OCCURRED")
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R3"))
    await file_report(clients, incident_id, {"category": "ABNORMAL_DEATH"}, kind="CORRECTION")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R18") and find(body, rule_id="R6")
    )
    assert {(o["party"], o["action"]) for o in find(body, rule_id="R18")} == {
        ("PRO", "NOTIFY_PROCURATORATE"),
        ("BLO", "NOTIFY_DECIDING_AUTHORITY"),  # no subject names its deciding authority
    }
    assert {o["owner"] for o in find(body, rule_id="R18")} == {"BLO"}
    assert find(body, rule_id="R6", party=PPS, action="CALL_POLICE")
    search = find(body, rule_id="R3", action="ORGANISE_SEARCH")[0]
    assert search["status"] == "WAIVED"
    assert "种类由「脱离监督管理」改为「非正常死亡」" in search["closed_reason"]
    await webhook_sink.wait_for(
        incident_id, {PPS, "PRO"}, lambda a: a.get("rule_id") in ("R6", "R18")
    )


async def test_R19_a_follow_up_reaches_every_party_already_alerted(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6"))
    alerted = {o["party"] for o in body["obligations"] if o["notify"]}
    await file_report(clients, incident_id, {"summary": "对象已被控制，伤者送医"})
    timeline = await timeline_with(clients["audit"], incident_id, "incident.updated")
    update = entries_of(timeline, "incident.updated")[0]
    assert update["rule_id"] == "R19"
    assert set(update["recipients"]) == alerted - {SFS}
    assert PPS in update["recipients"]
    assert update["about"] == "FOLLOW_UP"


async def test_R19_the_police_learn_when_the_incident_is_closed(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS))
    await act(clients, incident_id, "CONTROLLED")
    await act(clients, incident_id, "CLOSED")
    timeline = await timeline_with(clients["audit"], incident_id, "incident.updated", at_least=2)
    updates = entries_of(timeline, "incident.updated")
    closed = next(update for update in updates if update["about"] == "CLOSED")
    assert PPS in closed["recipients"]
    assert TCG not in closed["recipients"]  # the command group closed it itself
    assert closed["status"] == "CLOSED"


async def test_ownership_another_partys_action_is_kept_and_meets_nothing_of_others(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """The command group's CONTROLLED does not start the 司法所's first response; the 司法所's
    own record does."""
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R1"))
    await act(clients, incident_id, "CONTROLLED", party=TCG)
    incident = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    assert [(a["action"], a["party"]) for a in incident["actions"]] == [("CONTROLLED", TCG)]
    await timeline_with(clients["audit"], incident_id, "incident.status_changed", at_least=2)
    body = (await clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    assert find(body, rule_id="R1")[0]["status"] == "PENDING"
    await act(clients, incident_id, "FIRST_RESPONSE_STARTED")
    await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R1", status="MET")
    )


async def test_township_correction_moves_the_duties_and_alerts_to_the_new_township(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    wushenzhao = "150626101"
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS))
    await file_report(
        clients,
        incident_id,
        {"township": "乌审召镇"},
        kind="CORRECTION",
        reason="事发地为乌审召镇辖区，首报误填图克镇",
    )
    new_police = f"PPS:{wushenzhao}"
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", party=new_police)
    )
    assert find(body, rule_id="R1", party=f"SFS:{wushenzhao}")
    moved_away = find(body, rule_id="R6", party=PPS)[0]
    assert moved_away["status"] == "WAIVED"
    assert "苏木(镇)由「图克镇」改为「乌审召镇」" in moved_away["closed_reason"]
    await webhook_sink.wait_for(incident_id, {new_police}, lambda a: a.get("rule_id") == "R6")


async def test_R16_a_drill_corrected_to_real_alerts_real_contacts_again(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients, drill=True)
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6"))
    assert body["drill"] is True
    await file_report(
        clients, incident_id, {"drill": False}, kind="CORRECTION", reason="演练中发现真实冲突"
    )
    body = await obligations_when(clients, incident_id, lambda body: body["drill"] is False)
    real = [o for o in find(body, rule_id="R6", party=PPS) if not o["drill"]]
    assert real and real[0]["trigger"] == "changed"
    drilled = [o for o in find(body, rule_id="R6", party=PPS) if o["drill"]]
    assert [o["status"] for o in drilled] == ["WAIVED"]
    assert "按真实事件重新适用规则" in drilled[0]["closed_reason"]
    # The real police station hears of it now, on its real contacts.
    await webhook_sink.wait_for(
        incident_id,
        {PPS},
        lambda alert: alert.get("rule_id") == "R6" and alert.get("obligation_id") == real[0]["id"],
    )


async def test_ownership_one_rung_up_records_for_the_owner_with_a_reason(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R1"))
    r1 = find(body, rule_id="R1")[0]
    recorded = await act(
        clients,
        incident_id,
        "FIRST_RESPONSE_STARTED",
        party=TCG,
        on_behalf_of=SFS,
        reason="司法所值班电话无人接听，指挥小组代为记录",
    )
    assert recorded["on_behalf_of"] == SFS
    await obligations_when(clients, incident_id, lambda body: find(body, id=r1["id"], status="MET"))
    timeline = await timeline_with(clients["audit"], incident_id, "obligation.met")
    (met,) = [m for m in entries_of(timeline, "obligation.met") if m["obligation_id"] == r1["id"]]
    assert (met["recorded_by"], met["on_behalf_of"]) == (TCG, SFS)
