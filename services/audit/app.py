"""Audit: an append-only, hash-chained log of every event on every topic."""

from __future__ import annotations

from fastapi import FastAPI

from services.audit import api, handlers
from services.audit.models import SCHEMA, messaging
from shared.events.topics import ALL_TOPICS
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    runtime.add_consumer("audit.log", ALL_TOPICS, handlers.append)
    return create_service_app(
        runtime,
        title="Audit",
        description="Append-only, hash-chained record of every event, per incident and whole.",
        routers=[api.router],
    )
