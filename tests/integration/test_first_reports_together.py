"""First reports arriving together, each written by one statement (services/intake/first_report):
each is answered 201 only once it is committed, readable at once and replayed under its key;
one key sent twice at once is one incident, and another body under it a conflict."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.integration.helpers import violence_report

TOGETHER = 40


async def test_reports_arriving_together_are_each_committed_before_their_201(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    intake = clients["intake"]

    async def report_and_read() -> str:
        body, key = violence_report(), str(uuid.uuid4())
        created = await intake.post("/v1/incidents", json=body, headers={"Idempotency-Key": key})
        assert created.status_code == 201, created.text
        read = await intake.get(created.headers["Location"])
        assert read.status_code == 200, read.text
        again = await intake.post("/v1/incidents", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 201, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == created.json()["id"]
        return str(created.json()["id"])

    incident_ids = await asyncio.gather(*(report_and_read() for _ in range(TOGETHER)))
    assert len(set(incident_ids)) == TOGETHER


async def test_one_key_sent_twice_at_once_is_one_incident(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    intake = clients["intake"]
    body, key = violence_report(), str(uuid.uuid4())
    others = [violence_report() for _ in range(TOGETHER)]
    answers = await asyncio.gather(
        *(intake.post("/v1/incidents", json=body, headers={"Idempotency-Key": key}) for _ in "ab"),
        *(intake.post("/v1/incidents", json=other) for other in others),
    )
    assert all(answer.status_code == 201 for answer in answers), [a.text for a in answers]
    first, second = answers[:2]
    assert first.json()["id"] == second.json()["id"]
    assert "true" in (
        first.headers.get("Idempotent-Replayed"),
        second.headers.get("Idempotent-Replayed"),
    )
    conflict = await intake.post(
        "/v1/incidents", json=violence_report(), headers={"Idempotency-Key": key}
    )
    assert conflict.status_code == 409, conflict.text
    assert conflict.headers["content-type"].startswith("application/problem+json")
