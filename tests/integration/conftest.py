"""The whole system as separate processes, plus a webhook sink standing in for the parties."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.devrun import ServiceProcesses
from shared.localinfra import Infrastructure, free_port
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES


@dataclass
class WebhookSink:
    """A local HTTP server that records every alert POSTed to it."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def for_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return [alert for alert in self.received if alert.get("incident_id") == incident_id]

    async def wait_for(
        self, incident_id: str, parties: set[str], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while not parties <= {alert["party"] for alert in self.for_incident(incident_id)}:
                await asyncio.sleep(0.05)
        return self.for_incident(incident_id)


@pytest.fixture(scope="session")
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink(free_port())

    async def receive(request: Request) -> JSONResponse:
        sink.received.append(json.loads(await request.body()))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/alerts", receive, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=sink.port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield sink
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(scope="session")
def webhook_directory(work_dir: Path, webhook_sink: WebhookSink) -> Path:
    """The real directory of 乌审旗 with every party reached through the sink."""
    directory = yaml.safe_load((REPOSITORY_ROOT / "config" / "directory.yaml").read_text("utf-8"))
    for party in directory["parties"]:
        party["contacts"] = [{"channel": "webhook", "address": webhook_sink.url}]
    path = work_dir / "directory.yaml"
    path.write_text(yaml.safe_dump(directory, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
async def system(
    infra: Infrastructure, work_dir: Path, webhook_directory: Path
) -> AsyncIterator[ServiceProcesses]:
    services = ServiceProcesses(
        environment={
            **infra.environment(),
            "DIRECTORY_FILE": str(webhook_directory),
            "ALERTS_FILE": str(work_dir / "alerts.jsonl"),
            "OUTBOX_POLL_INTERVAL_SECONDS": "0.5",
        },
        ports={service: free_port() for service in SERVICE_NAMES},
        log_dir=work_dir / "logs",
    )
    try:
        await services.start()
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
async def clients(system: ServiceProcesses) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = {
        service: httpx.AsyncClient(base_url=system.url(service), timeout=10)
        for service in SERVICE_NAMES
    }
    yield opened
    for client in opened.values():
        await client.aclose()
