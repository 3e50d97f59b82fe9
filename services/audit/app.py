"""Audit: a verifiable Merkle log of every event on every topic, signed checkpoints,
accountability findings and the investigation report."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.audit import api
from services.audit.checkpoints import Checkpointer, load_signer, witness_keys
from services.audit.findings import FindingRules
from services.audit.handlers import CONSUMER, AuditLog, BatchingConsumer
from services.audit.metrics import AuditMetrics
from services.audit.models import SCHEMA, messaging
from services.audit.schemas import AuditContext
from shared.directory import Directory
from shared.events.topics import ALL_TOPICS
from shared.pii import PiiCipher
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def party_names_of(settings: Settings) -> dict[str, str]:
    return {party.code: party.name for party in Directory.load(settings.directory_file).parties}


def audit_log_of(settings: Settings) -> AuditLog:
    """What the log consumer applies each event with."""
    return AuditLog(
        messaging.outbox,
        FindingRules(settings.audit_concealment_threshold, party_names_of(settings)),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    signer = load_signer(settings)
    party_names = party_names_of(settings)
    audit_log = audit_log_of(settings)
    runtime.add_consumer(
        CONSUMER, ALL_TOPICS, audit_log.append, partial(BatchingConsumer, audit_log)
    )
    checkpointer = Checkpointer(
        runtime, signer, messaging.outbox, settings.audit_checkpoint_interval_seconds
    )
    runtime.add_worker("audit.checkpoints", checkpointer.run)
    metrics = AuditMetrics(runtime.metrics.registry)

    async def measure_log() -> None:
        await metrics.refresh(runtime.sessions)

    runtime.metrics.add_scrape_hook(measure_log)
    app = create_service_app(
        runtime,
        title="Audit",
        description="A verifiable (RFC 9162) log of every event, signed checkpoints, "
        "accountability findings and investigation reports.",
        routers=[api.router],
        public_routers=[api.proof_router],
    )
    cipher = PiiCipher.from_settings(settings)
    runtime.add_readiness_check("personal_data_key", lambda: cipher.readiness)
    app.state.audit = AuditContext(
        signer.verifier, tuple(witness_keys(settings)), party_names, cipher
    )
    return app
