"""Console: the duty console in the browser (port 8000). Pages read and act through the four
services' REST APIs with the logged-in user's token; live updates come from the topics."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import select

from services.console import api, retention
from services.console.gateway import ServiceGateway, SigningKey, TokenMinter
from services.console.handlers import HANDLERS
from services.console.live import LiveFeed, LiveHub
from services.console.login import Oidc
from services.console.models import SCHEMA, incident_places, messaging
from services.console.sessions import SessionStore
from services.console.traces import SpansIntoStore, TraceStore
from services.console.views import Screens
from shared.domain.directory import Directory
from shared.events import topics
from shared.problems import problem_response
from shared.production import Gap, file_gaps, public_url_gaps, require_production_settings
from shared.retention import retention_worker
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import CONSOLE, Settings
from shared.telemetry import configure_tracing, instrument_http_clients

STATIC = Path(__file__).parent / "static"


def production_gaps(settings: Settings) -> list[Gap]:
    """A console in production signs with its own key and logs people in through the county's
    identity provider; the page that lets anybody choose a party must never be there."""
    gaps = [
        *file_gaps("CONSOLE_SIGNING_KEY_FILE", settings.console_signing_key_file),
        *public_url_gaps("CONSOLE_PUBLIC_URL", settings.console_public_url),
    ]
    for setting, value in (
        ("CONSOLE_OIDC_ISSUER", settings.console_oidc_issuer),
        ("CONSOLE_OIDC_CLIENT_ID", settings.console_oidc_client_id),
    ):
        if not value:
            gaps.append(Gap(setting, "not set: people log in through the identity provider"))
    if settings.console_trace_receiver:
        gaps.append(
            Gap(
                "CONSOLE_TRACE_RECEIVER",
                "on: anybody could send spans; production's traces go to its trace backend "
                "(CONSOLE_TRACE_URL_TEMPLATE)",
            )
        )
    return gaps


def keep_own_spans(runtime: ServiceRuntime, store: TraceStore) -> None:
    """A console that receives spans keeps its own with them (sent elsewhere as well, when an
    endpoint is set): its page views and forms lead into the services' traces."""
    into_store = SpansIntoStore(store)
    if runtime.tracer_provider is not None:
        runtime.tracer_provider.add_span_processor(BatchSpanProcessor(into_store))
        return
    runtime.tracer_provider = configure_tracing(runtime.settings, CONSOLE, [into_store])
    instrument_http_clients()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    require_production_settings(settings, CONSOLE, production_gaps(settings))
    directory = Directory.load(settings.directory_file)
    key = SigningKey.from_settings(settings)
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    runtime.add_consumer("console.places", [topics.INCIDENTS], HANDLERS)
    hub = LiveHub()

    async def place_of(incident_id: str) -> str | None:
        async with runtime.sessions() as session:
            return (
                await session.execute(
                    select(incident_places.c.township_code).where(
                        incident_places.c.incident_id == incident_id
                    )
                )
            ).scalar_one_or_none()

    feed = LiveFeed(settings, hub, place_of)
    runtime.add_worker("live-feed", feed.run)
    runtime.add_worker("retention", retention_worker(runtime, retention.purges()))
    runtime.add_readiness_check("live_feed", lambda: "ok" if feed.ready.is_set() else "starting")

    app = create_service_app(
        runtime,
        title="Console",
        description="The duty console: board, duties, incidents, findings and reports in the "
        "browser, live.",
        routers=[],
        # The trace receiver exists only where it is turned on: nowhere else are spans taken.
        public_routers=[
            api.router,
            *([api.trace_receiver] if settings.console_trace_receiver else []),
        ],
    )

    @app.exception_handler(api.LoginRequired)
    async def to_login(request: Request, _: Exception) -> Response:
        if request.method == "GET" and request.url.path != "/live":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return problem_response(
            request, 401, "Login required", "log in at /login", kind="unauthorized"
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.settings = settings
    app.state.directory = directory
    app.state.hub = hub
    app.state.traces = TraceStore() if settings.console_trace_receiver else None
    if app.state.traces is not None:
        keep_own_spans(runtime, app.state.traces)
    app.state.local_login = key.is_local_development_key and (
        settings.deployment_environment != "production"
    )
    # Signs the login's state on its way through the identity provider; every replica has it.
    app.state.login_key = hashlib.sha256(b"console-login\x00" + key.pem).digest()
    app.state.screens = Screens(settings, directory)
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with outer(app):
            minter = TokenMinter(
                key, settings.auth_issuer, settings.auth_audience, settings.console_token_seconds
            )
            app.state.gateway = ServiceGateway.from_settings(settings, minter)
            app.state.oidc_client = httpx.AsyncClient(timeout=10.0)
            app.state.oidc = (
                Oidc(settings, app.state.oidc_client) if settings.console_oidc_issuer else None
            )
            app.state.sessions = SessionStore(
                runtime.sessions, timedelta(hours=settings.console_session_hours)
            )
            try:
                yield
            finally:
                await app.state.gateway.close()
                await app.state.oidc_client.aclose()

    app.router.lifespan_context = lifespan
    return app
