"""Input discipline at the edge: a cap on body size and a rate limit per caller (429)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class TokenBuckets:
    """One token bucket per caller; pure apart from the clock it is given."""

    rate: float
    burst: int
    clock: object = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, caller: str) -> float:
        """0 when the caller may go ahead; else the seconds until it may."""
        now = self.clock()  # type: ignore[operator]
        tokens, last = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[caller] = (tokens - 1, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > 10_000:  # forget idle callers rather than grow without end
            self._buckets = {
                key: value for key, value in self._buckets.items() if value[1] > now - 60
            }
        return (1 - tokens) / self.rate


def caller_of(scope: Scope) -> str:
    """The bearer token (hashed by Python; never logged) or the client address."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return f"token:{hash(value)}"
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
        wait = self.buckets.take(caller_of(scope))
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
