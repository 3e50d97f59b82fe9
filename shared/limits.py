"""Input discipline at the edge: a cap on body size and a rate limit per caller (429)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import Problem, problem_response

if TYPE_CHECKING:
    from shared.auth import TokenVerifier

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class TokenBuckets:
    """One token bucket per caller, at most `capacity` of them: a new caller evicts the one
    seen longest ago, so no stream of new callers grows the memory. Pure apart from the clock
    it is given."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    capacity: int = 10_000
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def take(self, caller: str) -> float:
        """0 when the caller may go ahead; else the seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._buckets[caller] = (tokens - 1 if allowed else tokens, now)  # now the newest
        if len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def caller_of(scope: Scope, verifier: TokenVerifier | None) -> str:
    """Whose bucket a request draws on: the verified principal of its bearer token, kept for
    `authenticate` to use; else (no token, or one that does not verify) the client's address,
    one bucket for each, as the server trusts it (uvicorn takes X-Forwarded-For only from
    FORWARDED_ALLOW_IPS). A made-up token is no new caller."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and verifier is not None:
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                try:
                    principal = verifier.verify(token.strip())
                except Problem:
                    break
                scope.setdefault("state", {})["principal"] = principal
                return f"principal:{principal.party}/{principal.subject}"
            break
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, rate: float, burst: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.buckets = TokenBuckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        app = scope.get("app")
        verifier = getattr(app.state, "token_verifier", None) if app is not None else None
        wait = self.buckets.take(caller_of(scope, verifier))
        if wait > 0:
            response = problem_response(
                request,
                429,
                "Too many requests",
                f"Slow down: try again in {math.ceil(wait)} s.",
                "rate-limited",
                headers={"Retry-After": str(math.ceil(wait))},
            )
            await response(scope, receive, send)
            return
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(request, scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send)
        except BodyTooLarge:
            await self._too_large(request, scope, receive, send)

    async def _too_large(
        self, request: Request, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = problem_response(
            request,
            413,
            "Request body too large",
            f"Bodies are limited to {self.max_body_bytes} bytes.",
            "body-too-large",
        )
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass
