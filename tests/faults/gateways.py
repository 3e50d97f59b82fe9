"""Webhook gateways the parties are reached through, whose behaviour a test switches.

Each party's contact list is [primary gateway, duty desk]. The primary gateway answers at once,
after 5 s, or not at all (its port closed), and nobody reads what it receives: every alert it
takes waits out the acknowledgement window and moves on to the duty desk. The duty desk answers
at once and a person there acknowledges through the alert's link, except for the township
command groups (TCG), whose desk never answers: their alerts walk the whole list and are
reported unacknowledged, which moves the duty up the ladder.

Both record every POST by its `Idempotency-Key`, as a real gateway that drops repeats would.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import LocalServer
from tools.localinfra import free_port

# A gateway answering this late is slow, yet within the send timeout the system is given.
SLOW_ANSWER_SECONDS = 5.0
# Parties whose duty desk never acknowledges (their alerts end unacknowledged).
SILENT_PARTY_KINDS = ("TCG",)


class Behaviour(enum.Enum):
    PROMPT = "answers at once"
    SLOW = "answers after 5 s"
    DOWN = "refuses connections"


@dataclass(frozen=True)
class Received:
    """One POST as the gateway saw it."""

    idempotency_key: str
    notification_id: str
    contact_index: int
    incident_id: str
    party: str


@dataclass
class Gateway:
    """A local HTTP endpoint taking alerts; `acknowledge_via` makes it a duty desk."""

    name: str
    port: int = field(default_factory=free_port)
    behaviour: Behaviour = Behaviour.PROMPT
    received: list[Received] = field(default_factory=list)
    # Base URL of the notification service, where a duty desk follows acknowledgement links.
    acknowledge_via: str | None = None
    acknowledged: set[str] = field(default_factory=set)
    _server: LocalServer | None = None
    _acks: set[asyncio.Task] = field(default_factory=set)
    # One client for all the desk's acknowledgements: a client apiece costs its TLS setup
    # (over 100 ms of CPU on a busy machine), which held up this gateway's own answers to
    # a burst of alerts past the send timeout.
    _ack_client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        app = Starlette(routes=[Route("/alerts", self._receive, methods=["POST"])])
        # Slow answers keep up to a hundred connections open at once.
        self._server = LocalServer(app, self.port, backlog=2048, timeout_keep_alive=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    @property
    def pending_acknowledgements(self) -> int:
        return len(self._acks)

    def posts_by_key(self) -> dict[str, list[Received]]:
        grouped: dict[str, list[Received]] = defaultdict(list)
        for post in self.received:
            grouped[post.idempotency_key].append(post)
        return grouped

    async def start(self) -> None:
        assert self._server is not None
        await self._server.start()

    async def stop(self) -> None:
        assert self._server is not None
        await self._server.stop(cut_requests=True)  # slow answers in flight: the gateway is down

    async def set_behaviour(self, behaviour: Behaviour) -> None:
        """Switch how the gateway answers; DOWN closes its port, anything else opens it."""
        assert self._server is not None
        if behaviour is Behaviour.DOWN and self._server.running:
            await self.stop()
        elif behaviour is not Behaviour.DOWN and not self._server.running:
            await self.start()
        self.behaviour = behaviour

    async def close(self) -> None:
        for task in self._acks:
            task.cancel()
        await asyncio.gather(*self._acks, return_exceptions=True)
        if self._ack_client is not None:
            await self._ack_client.aclose()
        await self.stop()

    async def _receive(self, request: Request) -> Response:
        alert: dict[str, Any] = json.loads(await request.body())
        self.received.append(
            Received(
                idempotency_key=request.headers["Idempotency-Key"],
                notification_id=alert["notification_id"],
                contact_index=int(alert["contact_index"]),
                incident_id=alert["incident_id"],
                party=alert["party"],
            )
        )
        if self.behaviour is Behaviour.SLOW:
            await asyncio.sleep(SLOW_ANSWER_SECONDS)
        if self.acknowledge_via is not None and not alert["party"].startswith(SILENT_PARTY_KINDS):
            task = asyncio.create_task(self._acknowledge(alert["ack_url"]))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)
        return JSONResponse({"ok": True})

    async def _acknowledge(self, ack_url: str, give_up_after: float = 90.0) -> None:
        """The person at the desk confirms through the link, trying again while the service
        cannot take it (restarting, its database away)."""
        link = urlsplit(ack_url)
        assert self.acknowledge_via is not None
        target = f"{self.acknowledge_via}{link.path}?{link.query}"
        if self._ack_client is None:
            # A burst of acknowledgements waits for a connection rather than failing.
            self._ack_client = httpx.AsyncClient(timeout=httpx.Timeout(10, pool=None))
        async with asyncio.timeout(give_up_after):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    response = await self._ack_client.post(target)
                    if response.status_code == 200:
                        self.acknowledged.add(link.path.split("/")[-2])
                        return
                await asyncio.sleep(0.5)
