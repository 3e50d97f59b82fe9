"""Escalation: applies the response plan's rules and tracks who must do what by when."""

from __future__ import annotations

from fastapi import FastAPI

from services.escalation import api
from services.escalation.deadlines import DeadlineWorker
from services.escalation.handlers import EscalationHandlers
from services.escalation.metrics import EscalationMetrics
from services.escalation.models import SCHEMA, messaging
from services.escalation.rules import Policy
from services.escalation.store import DEADLINES_CHANNEL, Store
from shared.domain.directory import Directory
from shared.events import topics
from shared.production import require_production_settings
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    require_production_settings(settings, "escalation", ())
    directory = Directory.load(settings.directory_file)
    policy = Policy.load(settings.policy_file, settings.policy_overrides_file).model_copy(
        update={"time_zone": settings.county_time_zone}
    )
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    store = Store(policy, runtime.outbox, {party.code: party.name for party in directory.parties})
    runtime.add_consumer(
        "escalation.incidents",
        [topics.INCIDENTS, topics.NOTIFICATIONS],
        EscalationHandlers(store).table,
    )

    metrics = EscalationMetrics(runtime.metrics.registry)

    async def fire_deadlines() -> None:
        wakeup = runtime.listener.wakeup(DEADLINES_CHANNEL)
        worker = DeadlineWorker(
            runtime.sessions,
            store,
            wakeup,
            settings.deadline_poll_interval_seconds,
            metrics.deadline_delay,
        )
        # This process's writers wake it in process (`Nudge`): any replica's worker fires
        # whatever is due.
        store.deadlines.attach(wakeup)
        try:
            await worker.run()
        finally:
            store.deadlines.detach()

    async def count_obligations() -> None:
        await metrics.refresh(runtime.sessions)

    runtime.add_worker("deadlines", fire_deadlines)
    runtime.metrics.add_scrape_hook(count_obligations)
    app = create_service_app(
        runtime,
        title="Escalation",
        description="Routes each incident under the bureau's response plan: obligations with "
        "deadlines, rule ids and explanations, the incident lifecycle, durable deadlines and "
        "the escalation ladder.",
        routers=[api.router],
    )
    app.state.directory = directory
    app.state.policy = policy
    return app
