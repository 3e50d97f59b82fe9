"""Escalation: applies the response plan's rules and tracks who must do what by when."""

from __future__ import annotations

from fastapi import FastAPI

from services.escalation import api
from services.escalation.handlers import EscalationHandlers
from services.escalation.models import SCHEMA, messaging
from services.escalation.rules import Policy
from shared.directory import Directory
from shared.events import topics
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    directory = Directory.load(settings.directory_file)
    policy = Policy.load(settings.policy_file)
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    handlers = EscalationHandlers(policy, directory, runtime.outbox)
    runtime.add_consumer("escalation.incidents", [topics.INCIDENTS], handlers.handle)
    app = create_service_app(
        runtime,
        title="Escalation",
        description="Routes each incident under the bureau's response plan: obligations with "
        "deadlines, rule ids and explanations, and the incident lifecycle.",
        routers=[api.router],
    )
    app.state.directory = directory
    app.state.policy = policy
    return app
