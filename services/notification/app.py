"""Notification: delivers alerts to each party's contacts and records every attempt."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.notification import api
from services.notification.channels import Channel
from services.notification.channels.file import FileChannel
from services.notification.channels.webhook import WebhookChannel
from services.notification.dispatch import DISPATCH_CHANNEL, Dispatcher
from services.notification.handlers import NotificationHandlers
from services.notification.models import SCHEMA, messaging
from shared.directory import Directory
from shared.events import topics
from shared.pgnotify import Wakeup
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    directory = Directory.load(settings.directory_file)
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    runtime.add_consumer(
        "notification.escalations",
        [topics.ESCALATIONS],
        NotificationHandlers(directory).handle,
    )

    async def dispatch() -> None:
        channels: dict[str, Channel] = {
            "webhook": WebhookChannel(httpx.AsyncClient(timeout=httpx.Timeout(10.0))),
            "file": FileChannel(settings.alerts_file),
        }
        dispatcher = Dispatcher(
            runtime.sessions,
            runtime.outbox,
            channels,
            directory,
            Wakeup(settings.plain_database_url, DISPATCH_CHANNEL),
            settings.outbox_poll_interval_seconds,
        )
        try:
            await dispatcher.run()
        finally:
            for channel in channels.values():
                await channel.close()

    runtime.add_worker("dispatcher", dispatch)
    app = create_service_app(
        runtime,
        title="Notification",
        description="Alerts each party through its contacts and records every attempt.",
        routers=[api.router],
    )
    app.state.directory = directory
    return app
