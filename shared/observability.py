"""Metrics (Prometheus, one registry per service process) and JSON logs with trace ids."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "emergency"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# The incident a log line is about: set by consumers per record and by routes per request.
current_incident: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_incident", default=None
)

ScrapeHook = Callable[[], Awaitable[None]]


class ServiceMetrics:
    """The metrics every service has; services register their own on `registry`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._hooks: list[ScrapeHook] = []
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            ["method", "route", "status"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "events_consumed",
            "Records consumed, by outcome: applied, redelivered (a duplicate), ignored (a type "
            "the consumer reads past), dead_lettered",
            ["consumer", "topic", "outcome"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "consumer_lag_records",
            "End offset minus committed offset, per assigned partition",
            ["consumer", "topic", "partition"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "outbox_backlog_events",
            "Events written but not yet published",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "outbox_oldest_age_seconds",
            "Age of the oldest unpublished event (0 when none)",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.outbox_published = Counter(
            "outbox_published_events",
            "Events the relay published",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.outbox_republished = Counter(
            "outbox_republished_events",
            "Sent events the broker lost (a new cluster id, or offsets gone back) that the "
            "relay queued to publish again",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.retention_purged = Counter(
            "retention_purged_rows",
            "Outbox and inbox rows deleted after their retention",
            ["table"],
            namespace=NAMESPACE,
            registry=self.registry,
        )

    def add_scrape_hook(self, hook: ScrapeHook) -> None:
        """Refresh gauges that are read from the database or the broker at scrape time."""
        self._hooks.append(hook)

    async def render(self) -> bytes:
        for hook in self._hooks:
            try:
                await hook()
            except Exception:
                logging.getLogger(__name__).exception("metrics hook failed")
        return generate_latest(self.registry)


class ResponseStatus:
    """An ASGI `send` that notes the status of the response it sends (0 until it starts)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


class HttpMetricsMiddleware:
    """Request latency by method, route and status. Plain ASGI: Starlette's BaseHTTPMiddleware
    runs every request through an extra task and memory stream, a cost paid on each report."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status)
        finally:
            route = scope.get("route")
            # No answer started: the server error the client is told.
            self._metrics.http_latency.labels(
                scope["method"], getattr(route, "path", "unmatched"), str(status.code or 500)
            ).observe(time.perf_counter() - started)


class IncidentRoute(APIRoute):
    """A route whose log lines name the incident of its path (`incident_id`), if it has one.

    Every service's routers make their routes so (`APIRouter(route_class=IncidentRoute)`).
    A route without an incident in its path runs as any other: a request to it pays nothing
    (as a dependency of every route, binding cost each request FastAPI's solving of one more)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "incident_id" not in self.param_convertors:
            return handler

        async def bound(request: Request) -> Response:
            current_incident.set(str(request.path_params["incident_id"]))
            return await handler(request)

        return bound


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace, span and incident the line belongs to."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        incident = current_incident.get()
        if incident:
            entry["incident_id"] = incident
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # No access log (sqjz-serve runs uvicorn without one): requests are measured in /metrics
    # and traced. uvicorn writes a request's line when its logger has any handler, the root's
    # included, and one line per request is a cost every report pays.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
