"""Small helpers for the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import httpx

from shared.domain.ownership import ACTIONS_OF
from shared.domain.vocabulary import ActionCode, PartyKind, party_code
from shared.events import CloudEvent
from shared.events.models import (
    IncidentFacts,
    IncidentReported,
    IncidentStatusChanged,
    Reporter,
    Subject,
)
from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.support import PATIENCE_SECONDS

T = TypeVar("T")


async def new_topic(settings: Settings, partitions: int, prefix: str = "test") -> str:
    """A topic of its own for one test, with `partitions` partitions, on the real broker."""
    topic = f"{prefix}.{uuid4().hex[:8]}"
    layout = {"kafka_topic_partitions": partitions, "kafka_topic_replication_factor": 1}
    await ensure_topics(settings.model_copy(update=layout), [topic])
    return topic


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout: float = PATIENCE_SECONDS,
) -> T:
    """Poll `probe` until `accept` holds for its result; fail with the last result otherwise."""
    last: T | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await probe()
                if accept(last):
                    return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(
            f"condition not met within {timeout}s; last: {described(last)}"
        ) from None


def described(result: object, limit: int = 2000) -> str:
    """A probe's result for a failure message: a response with its body, which says what was
    there when the wait gave up."""
    if isinstance(result, httpx.Response):
        return f"{result!r} {result.text[:limit]}"
    return repr(result)[:limit]


def reported_event() -> CloudEvent:
    """Intake's event of a report of violence under way in 图克镇, as a consumer reads it."""
    incident_id = uuid4()
    facts = IncidentFacts(
        category="VIOLENCE",
        phase="IN_PROGRESS",
        township_code="150626102",
        township_name="图克镇",
        subjects=(Subject(id="SQJZ-1", name="赵某某"),),
        location="图克镇",
        summary="正在行凶",
    )
    data = IncidentReported(
        incident_id=incident_id,
        facts=facts,
        reporter=Reporter(party="SFS:150626102", name="李明"),
        reported_at=datetime.now(UTC),
    )
    return CloudEvent.new("intake", data, incident_id)


def status_changed(reason: str = "test") -> CloudEvent:
    """Escalation's event of an incident's status moved from REPORTED to RESPONDING."""
    data = IncidentStatusChanged(
        incident_id=uuid4(),
        status="RESPONDING",
        previous_status="REPORTED",
        changed_at=datetime.now(UTC),
        reason=reason,
    )
    return CloudEvent.new("escalation", data, data.incident_id)


def subject_id() -> str:
    """A 社区矫正对象编号 nobody else's report names."""
    return f"SQJZ-{uuid4().hex[:12]}"


def violence_report(**overrides: Any) -> dict[str, Any]:
    """A report of violence under way in 图克镇. Its subject has an id of its own on every call:
    a report naming the subject of an open incident is of that incident (R20)."""
    now = datetime.now(UTC)
    body = {
        "category": "VIOLENCE",
        "phase": "IN_PROGRESS",
        "township": "图克镇",
        "subjects": [{"id": subject_id(), "name": "王某某", "id_number": "150626199001011234"}],
        "occurred_at": (now - timedelta(minutes=6)).isoformat(),
        "discovered_at": (now - timedelta(minutes=4)).isoformat(),
        "location": "图克镇中心街农贸市场东门",
        "summary": "社区矫正对象王某某持刀与摊贩发生冲突，扬言伤人，现场已有群众围观。",
        "measures_taken": "司法所工作人员已赶赴现场劝阻，同时拨打110。",
        "persons_involved": "社区矫正对象1人，摊贩1人（轻伤）。",
        "reporter": {"party": "SFS:150626102", "name": "李明", "phone": "13900000000"},
    }
    body.update(overrides)
    return body


def count_of(event_type: str, response: Any) -> int:
    if response.status_code != 200:
        return 0
    return sum(entry["ce_type"] == event_type for entry in response.json()["entries"])


async def timeline_with(
    audit: Any,
    incident_id: str,
    event_type: str,
    at_least: int = 1,
    timeout: float = PATIENCE_SECONDS,
    also: dict[str, int] | None = None,
) -> Any:
    """The audit timeline of an incident, once it holds `at_least` events of `event_type` (and
    of each type in `also`, as many as it says). Audit reads every topic at its own pace, so
    waiting for one type does not mean another has arrived."""
    wanted = {event_type: at_least, **(also or {})}
    return await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: all(count_of(name, response) >= n for name, n in wanted.items()),
        timeout,
    )


async def report(clients: dict[str, Any], **overrides: Any) -> str:
    """Report `violence_report(**overrides)`; the new incident's id."""
    response = await clients["intake"].post("/v1/incidents", json=violence_report(**overrides))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def recorder_of(action: str, township: str = "150626102") -> str:
    """The party whose own action it is (every party records only its own): the 司法所 where
    it may, else the first kind that records it."""
    code = ActionCode(action)
    for kind in (PartyKind.SFS, PartyKind.TCG, PartyKind.PPS, PartyKind.BLO, PartyKind.BJO):
        if code in ACTIONS_OF[kind]:
            return party_code(kind, township)
    raise ValueError(f"nobody records {action}")


async def act(
    clients: dict[str, Any],
    incident_id: str,
    action: str,
    party: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Record `action` as its own recorder (or `party`), with extra body `fields` (`to`,
    `on_behalf_of`, `reason`); the recorded action as intake returns it."""
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={
            "action": action,
            "party": party or recorder_of(action),
            "actor_name": "李明",
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def obligations_when(
    clients: dict[str, Any],
    incident_id: str,
    accept: Callable[[dict[str, Any]], Any],
    timeout: float = PATIENCE_SECONDS,
) -> dict[str, Any]:
    """The incident's obligations (the whole response body), once `accept` holds for it."""
    response = await eventually(
        lambda: clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations"),
        lambda response: response.status_code == 200 and bool(accept(response.json())),
        timeout,
    )
    return response.json()


def find(body: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    """The obligations of a response body whose fields have the given values."""
    return [o for o in body["obligations"] if all(o[k] == v for k, v in fields.items())]
