"""Intake: the REST edge where officers and the county platform report emergencies."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake import api, handlers, retention
from services.intake.first_report import FirstReports
from services.intake.models import SCHEMA, messaging
from shared import pii
from shared.domain.correlation import Correlation
from shared.domain.directory import Directory
from shared.events import topics
from shared.pii import PiiCipher
from shared.production import require_production_settings
from shared.retention import retention_worker
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    require_production_settings(settings, "intake", pii.production_gaps(settings))
    runtime = ServiceRuntime(
        SCHEMA, settings, messaging, relay_pace_ms=settings.intake_relay_pace_ms
    )
    runtime.add_consumer(
        "intake.status-projection",
        [topics.ESCALATIONS],
        handlers.HANDLERS,
        linger_ms=settings.intake_status_linger_ms,
    )
    runtime.add_worker("retention", retention_worker(runtime, retention.purges(settings)))
    app = create_service_app(
        runtime,
        title="Intake",
        description="Reports of community-correction emergencies (社区矫正突发事件) and "
        "the actions and follow-ups recorded against them.",
        routers=[api.router],
    )
    app.state.directory = Directory.load(settings.directory_file)
    app.state.correlation = Correlation.load(settings.policy_file, settings.policy_overrides_file)
    app.state.first_reports = FirstReports(lambda: runtime.sessions, runtime.outbox.local)
    app.state.pii = cipher = PiiCipher.from_settings(settings)
    runtime.add_readiness_check("personal_data_key", lambda: cipher.readiness)
    return app
