"""Notification: delivers alerts to each party's contacts, records every attempt, and walks the
contact list until somebody acknowledges."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.notification import api, retention
from services.notification.ack import AckSigner
from services.notification.channels.registry import build_channels, production_gaps
from services.notification.dispatch import DISPATCH_CHANNEL, Dispatcher
from services.notification.handlers import NotificationHandlers
from services.notification.metrics import NotificationMetrics
from services.notification.models import SCHEMA, messaging
from services.notification.templates import default_texts
from shared.domain.directory import Directory
from shared.events import topics
from shared.production import require_production_settings
from shared.retention import retention_worker
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings

log = logging.getLogger(__name__)


def ack_signer(settings: Settings) -> AckSigner:
    ttl, base_url = (
        settings.notification_ack_token_ttl_seconds,
        settings.notification_public_base_url,
    )
    if settings.notification_ack_secret is None:
        log.warning("NOTIFICATION_ACK_SECRET unset: acknowledgement links die with this process")
        return AckSigner.with_random_key(ttl, base_url)
    return AckSigner(settings.notification_ack_secret.get_secret_value().encode(), ttl, base_url)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    directory = Directory.load(settings.directory_file)
    require_production_settings(settings, "notification", production_gaps(settings, directory))
    signer = ack_signer(settings)
    # A broken template file stops the start, not the first alert; times in the county's zone.
    texts = default_texts(settings.county_zone)
    runtime = ServiceRuntime(
        SCHEMA, settings, messaging, relay_pace_ms=settings.notification_relay_pace_ms
    )
    handlers = NotificationHandlers(directory, runtime.outbox, texts)
    # One group for both topics. It kept the name it had when it read escalations.v1 alone, so
    # its positions there carry over; audit.v1, new to it, is read from the start once, and the
    # inbox (kept longer than the topics) absorbs what the former `notification.audit` applied.
    # R15: the CEO hears of each commendation and discipline the audit records.
    runtime.add_consumer(
        "notification.escalations", [topics.ESCALATIONS, topics.AUDIT], handlers.table
    )

    metrics = NotificationMetrics(runtime.metrics.registry)

    async def count_notifications() -> None:
        await metrics.refresh(runtime.sessions)

    runtime.metrics.add_scrape_hook(count_notifications)

    async def dispatch() -> None:
        channels = build_channels(settings)
        dispatcher = Dispatcher(
            runtime.sessions,
            runtime.outbox,
            channels,
            directory,
            runtime.listener.wakeup(DISPATCH_CHANNEL),
            settings,
            signer,
            texts,
            metrics=metrics,
        )
        handlers.dispatcher.running = dispatcher
        try:
            await dispatcher.run()
        finally:
            handlers.dispatcher.running = None
            for channel in channels.values():
                await channel.close()

    runtime.add_worker("dispatcher", dispatch)
    runtime.add_worker("retention", retention_worker(runtime, retention.purges(settings)))
    app = create_service_app(
        runtime,
        title="Notification",
        description="Alerts each party through its contacts, records every attempt, and walks "
        "the contact list until an alert is acknowledged.",
        routers=[api.router],
        public_routers=[api.ack_router],
    )
    app.state.directory = directory
    app.state.ack_signer = signer
    return app
