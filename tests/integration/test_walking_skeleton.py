"""One incident the whole way, on the real PostgreSQL and broker, services as processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import topics
from tests.integration.helpers import eventually, timeline_with, violence_report
from tests.support import PATIENCE_SECONDS, WebhookSink
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure

ALERTED_PARTIES = {"PPS:150626102", "TCG:150626102", "BLO"}


async def report(clients: dict[str, httpx.AsyncClient], body: dict, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return await clients["intake"].post("/v1/incidents", json=body, headers=headers)


async def test_violence_in_progress_travels_the_whole_way(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    created = await report(clients, violence_report())
    assert created.status_code == 201, created.text
    incident_id = created.json()["id"]
    assert created.headers["Location"] == f"/v1/incidents/{incident_id}"

    alerts = await webhook_sink.wait_for(incident_id, ALERTED_PARTIES)
    by_party = {alert["party"]: alert for alert in alerts}
    assert by_party["PPS:150626102"]["rule_id"] == "R6"
    assert "图克镇" in by_party["BLO"]["text"]
    assert "150626199001011234" not in json.dumps(alerts, ensure_ascii=False)
    # The reporting 司法所 is not alerted about its own report.
    assert "SFS:150626102" not in by_party

    obligations = await clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations")
    assert obligations.status_code == 200
    duties = {(o["rule_id"], o["party"], o["action"]) for o in obligations.json()["obligations"]}
    assert duties == {
        ("R1", "SFS:150626102", "START_FIRST_RESPONSE"),
        ("R6", "PPS:150626102", "CALL_POLICE"),
        ("R6", "TCG:150626102", "REPORT"),
        ("R6", "BLO", "REPORT"),
        ("R6", "SFS:150626102", "GO_ON_SCENE"),
        ("R6", "SFS:150626102", "FULL_WRITTEN_REPORT"),
        ("R9", "SFS:150626102", "FOLLOW_UP_REPORT"),
    }
    for obligation in obligations.json()["obligations"]:
        assert obligation["why"].startswith(f"依据 {obligation['rule_id']}")
        assert obligation["status"] == "PENDING"

    incident = await eventually(
        lambda: clients["intake"].get(f"/v1/incidents/{incident_id}"),
        lambda response: response.json()["status_changed_at"] is not None,
    )
    assert incident.json()["status"] == "REPORTED"
    assert incident.json()["facts"]["subjects"][0]["id_number_masked"] == "150626********1234"

    timeline = await timeline_with(
        clients["audit"],
        incident_id,
        "notification.delivered",
        at_least=3,
        also={"obligation.created": 7, "incident.status_changed": 1},
    )
    types = [entry["ce_type"] for entry in timeline.json()["entries"]]
    assert types[0] == "incident.reported"
    assert types.count("obligation.created") == 7
    first_delivery = types.index("notification.delivered")
    assert first_delivery > types.index("obligation.created")
    assert "incident.status_changed" in types


async def test_recorded_action_moves_lifecycle_and_meets_obligation(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = (await report(clients, violence_report())).json()["id"]
    action = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "FIRST_RESPONSE_STARTED", "party": "SFS:150626102", "actor_name": "李明"},
    )
    assert action.status_code == 201, action.text
    incident = await eventually(
        lambda: clients["intake"].get(f"/v1/incidents/{incident_id}"),
        lambda response: response.json()["status"] == "RESPONDING",
    )
    assert incident.json()["actions"][0]["action"] == "FIRST_RESPONSE_STARTED"
    obligations = await eventually(
        lambda: clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations"),
        lambda response: (
            response.status_code == 200
            and any(o["status"] == "MET" for o in response.json()["obligations"])
        ),
    )
    met = [o for o in obligations.json()["obligations"] if o["status"] == "MET"]
    assert [(o["rule_id"], o["action"]) for o in met] == [("R1", "START_FIRST_RESPONSE")]


async def test_idempotent_retry_yields_one_incident_and_one_set_of_alerts(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    key = f"retry-{uuid.uuid4()}"
    body = violence_report()
    first = await report(clients, body, key)
    second = await report(clients, body, key)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    incident_id = first.json()["id"]

    await webhook_sink.wait_for(incident_id, ALERTED_PARTIES)
    await asyncio.sleep(1.5)  # time for any duplicate to arrive, were there one
    parties = sorted(alert["party"] for alert in webhook_sink.for_incident(incident_id))
    assert parties == sorted(ALERTED_PARTIES)

    conflict = await report(clients, {**body, "location": "另一个地点"}, key)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert conflict.json()["incident_id"] == incident_id
    # A key is its caller's own: the platform's same key is another request, not a replay of
    # the 司法所's (which would show it another's incident) nor a conflict.
    platform = {"party": "PLATFORM", "name": "县公安局指挥中心"}
    other = await report(clients, violence_report(reporter=platform), key)
    assert other.status_code == 201, other.text
    assert other.json()["id"] != incident_id and "Idempotent-Replayed" not in other.headers


async def test_bad_input_is_a_problem_naming_each_field(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    response = await report(
        clients,
        violence_report(category="ROBBERY", subjects=[], occurred_at="yesterday"),
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"category", "subjects", "occurred_at"} <= fields

    unknown_township = await report(clients, violence_report(township="北京市"))
    assert unknown_township.status_code == 422
    assert unknown_township.json()["errors"][0]["field"] == "township"

    missing = await clients["intake"].get(f"/v1/incidents/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = PATIENCE_SECONDS
) -> list:
    """The records of `topic` from its start, once there are `expected` of them (or what there
    is after `timeout`: callers poll it)."""
    return await read_topic_until(
        bootstrap, topic, lambda records: len(records) >= expected, timeout
    )


async def read_topic_until(
    bootstrap: str, topic: str, enough: Callable[[list], bool], timeout: float = PATIENCE_SECONDS
) -> list:
    """The records of `topic` from its start, once `enough` holds for them."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list = []
    try:
        async with asyncio.timeout(timeout):
            while not enough(records):
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


async def test_malformed_record_goes_to_dead_letters_and_the_next_is_processed(
    infra: Infrastructure,
    system: ServiceProcesses,
    clients: dict[str, httpx.AsyncClient],
    webhook_sink: WebhookSink,
) -> None:
    poison_key = f"poison-{uuid.uuid4()}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.INCIDENTS,
            value=b"{not json",
            key=poison_key,
            headers=[("ce_type", b"incident.reported")],
        )
    finally:
        await producer.stop()

    incident_id = (await report(clients, violence_report())).json()["id"]
    await webhook_sink.wait_for(incident_id, ALERTED_PARTIES)

    # Every consumer of incidents.v1 sets it aside with its own reason: the console's too.
    every_consumer = {"escalation.incidents", "audit.log", "console.places"}

    def consumers_of(records: list) -> set[str]:
        return {
            dict(record.headers)["dlq_consumer"].decode()
            for record in records
            if record.key == poison_key
        }

    dead = await read_topic_until(
        infra.kafka_bootstrap_servers,
        "incidents.v1.dlq",
        lambda records: consumers_of(records) >= every_consumer,
    )
    poisoned = [record for record in dead if record.key == poison_key]
    assert consumers_of(dead) == every_consumer
    for record in poisoned:
        headers = dict(record.headers)
        assert b"missing CloudEvents headers" in headers["dlq_reason"]
        assert headers["dlq_original_topic"] == b"incidents.v1"
        assert record.value == b"{not json"


async def test_follow_up_report_updates_facts_and_is_audited(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = (await report(clients, violence_report(persons_involved=None))).json()["id"]
    follow_up = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": "SFS:150626102", "name": "李明"},
            "changes": {"persons_involved": "对象1人，摊贩1人轻伤（身份证150626198001011234）"},
            "text": "续报：伤者已送医。",
        },
    )
    assert follow_up.status_code == 201, follow_up.text
    assert follow_up.json()["changes"]["persons_involved"].endswith("150626********1234）")
    assert follow_up.json()["previous"] == {"persons_involved": None}

    incident = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    assert [entry["kind"] for entry in incident["reports"]] == ["INITIAL", "FOLLOW_UP"]
    assert "150626198001011234" not in json.dumps(incident, ensure_ascii=False)

    erase = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "CORRECTION",
            "reporter": {"party": "SFS:150626102", "name": "李明"},
            "changes": {"category": None},
        },
    )
    assert erase.status_code == 422
    assert erase.headers["content-type"] == "application/problem+json"

    timeline = await timeline_with(clients["audit"], incident_id, "incident.report_filed")
    assert "150626198001011234" not in timeline.text


async def test_action_that_makes_no_sense_now_is_refused_at_once_naming_the_status(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = (await report(clients, violence_report())).json()["id"]
    refused = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "SEARCH_FAILED", "party": "SFS:150626102", "actor_name": "李明"},
    )
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["incident_status"] == "REPORTED"
    assert "SEARCH_FAILED" in problem["detail"] and "REPORTED" in problem["detail"]
    assert "「查找未果」不适用于事件当前状态「已报告」" in problem["detail"]
    shown = await clients["intake"].get(f"/v1/incidents/{incident_id}")
    assert shown.json()["actions"] == []  # refused, so not on record
