"""Real servers on 127.0.0.1 standing in for the gateways: HTTP with programmable answers, SMTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.notification.channels.gateways import acs3_sign
from tests.support import PATIENCE_SECONDS, serving
from tools.localinfra import free_port


@dataclass(frozen=True)
class Call:
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def acs3_authorization(self, access_key_id: str, access_key_secret: str) -> str:
        """The `Authorization` Aliyun's gateway expects of this call, recomputed from what
        arrived (path, decoded query, headers, body) the way the gateway checks a V3 signature."""
        return acs3_sign(
            "POST",
            self.path,
            self.query,
            self.headers,
            self.body,
            access_key_id,
            access_key_secret,
        ).authorization


# Answers the n-th call (from 1) to a path.
Answer = Callable[[Call, int], Awaitable[Response]]


async def ok(_call: Call, _n: int) -> Response:
    return JSONResponse({"ok": True})


def fail_first(count: int, *failures: Response, then: Answer = ok) -> Answer:
    """The first `count` calls get `failures` in turn (the last one repeated), then `then`."""
    answers = failures or (Response(status_code=503),)

    async def answer(call: Call, n: int) -> Response:
        if n <= count:
            return answers[min(n, len(answers)) - 1]
        return await then(call, n)

    return answer


def always(status: int, body: Any = None) -> Answer:
    async def answer(_call: Call, _n: int) -> Response:
        return JSONResponse(body or {"error": status}, status_code=status)

    return answer


def hang(seconds: float, until: asyncio.Event) -> Answer:
    """Answer after `seconds`, or at once when `until` is set (the server is closing)."""

    async def answer(_call: Call, _n: int) -> Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), seconds)
        return JSONResponse({"ok": True})

    return answer


@dataclass
class Gateway:
    """Every call is recorded, whatever the answer; `answers` maps a path to its behaviour."""

    port: int
    calls: list[Call] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    async def wait_for_calls(
        self, path: str, count: int, timeout: float = PATIENCE_SECONDS
    ) -> list[Call]:
        try:
            async with asyncio.timeout(timeout):
                while len(self.calls_to(path)) < count:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(
                f"{len(self.calls_to(path))} of {count} calls to {path} in {timeout}s"
            ) from None
        return self.calls_to(path)


@contextlib.asynccontextmanager
async def loopback_gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway(free_port())

    async def receive(request: Request) -> Response:
        call = Call(
            path=request.url.path,
            query=dict(request.query_params),
            raw_query=request.url.query,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
            at=time.monotonic(),
        )
        gateway.calls.append(call)
        gateway.counts[call.path] += 1
        return await gateway.answers.get(call.path, ok)(call, gateway.counts[call.path])

    app = Starlette(routes=[Route("/{path:path}", receive, methods=["POST", "GET"])])
    async with serving(app, gateway.port, timeout_graceful_shutdown=1):
        try:
            yield gateway
        finally:
            gateway.closing.set()


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


class Inbox:
    """An aiosmtpd handler that keeps every mail and refuses recipients in `refused`."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refused: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def to(self, address: str) -> list[Mail]:
        return [mail for mail in self.mails if address in mail.recipients]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()
