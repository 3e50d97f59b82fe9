"""Log lines of a request name the incident of its path (shared.observability.IncidentRoute)."""

from __future__ import annotations

import asyncio
import json
import logging
from uuid import uuid4

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from shared.db import service_metadata
from shared.observability import IncidentRoute, JsonFormatter, current_incident
from shared.runtime import MessagingTables, ServiceRuntime, create_service_app
from tools import contracts

log = logging.getLogger("tests.incident_in_logs")


def app_with_routes() -> FastAPI:
    router = APIRouter(prefix="/v1/incidents", route_class=IncidentRoute)

    @router.get("/{incident_id}/timeline")
    async def timeline(incident_id: str) -> dict[str, str | None]:
        log.warning("read the timeline")
        return {"bound": current_incident.get()}

    @router.post("")
    async def report() -> dict[str, str | None]:
        return {"bound": current_incident.get()}

    app = FastAPI()
    app.include_router(router)
    return app


async def test_a_route_with_an_incident_in_its_path_names_it_and_others_name_none() -> None:
    app = app_with_routes()
    incident_id = str(uuid4())
    lines: list[str] = []
    handler = logging.Handler()
    formatter = JsonFormatter("test")
    handler.emit = lambda record: lines.append(formatter.format(record))  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            # Each request in a task of its own, as the HTTP server runs them.
            read = await asyncio.create_task(client.get(f"/v1/incidents/{incident_id}/timeline"))
            reported = await asyncio.create_task(client.post("/v1/incidents"))
    finally:
        log.removeHandler(handler)
    assert read.json() == {"bound": incident_id}
    assert [json.loads(line)["incident_id"] for line in lines] == [incident_id]
    assert reported.json() == {"bound": None}


def test_a_service_app_refuses_a_router_whose_routes_would_not_name_their_incident() -> None:
    runtime = ServiceRuntime(
        "scratch", contracts.document_settings(), MessagingTables.of(service_metadata("scratch"))
    )
    plain = APIRouter(prefix="/v1/things")
    with pytest.raises(TypeError, match="/v1/things"):
        create_service_app(runtime, "scratch", "", routers=[plain])
    with pytest.raises(TypeError, match="/v1/things"):
        create_service_app(runtime, "scratch", "", routers=[], public_routers=[plain])
    bound = APIRouter(prefix="/v1/things", route_class=IncidentRoute)
    assert create_service_app(runtime, "scratch", "", routers=[bound], public_routers=[bound])
