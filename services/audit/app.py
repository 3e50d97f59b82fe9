"""Audit: a verifiable Merkle log of every event on every topic, signed checkpoints,
accountability findings and the investigation report."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.audit import api
from services.audit.checkpoints import (
    Checkpointer,
    load_signer,
    signing_key_gaps,
    witness_keys,
)
from services.audit.datakeys import DataKeys, key_encryption_gaps, load_key_encryption_key
from services.audit.findings import FindingRules
from services.audit.findings import compute as compute_findings
from services.audit.follower import FindingsFollower, FindingsFunction, FollowerHealth
from services.audit.handlers import CONSUMER, AuditLog, BatchingConsumer
from services.audit.metrics import AuditMetrics
from services.audit.models import SCHEMA, messaging
from services.audit.retention import RetentionJob
from services.audit.schemas import AuditContext
from shared import pii
from shared.domain.directory import Directory
from shared.events.topics import ALL_TOPICS
from shared.pii import PiiCipher
from shared.production import require_production_settings
from shared.retention import Retention
from shared.runtime import ServiceRuntime, create_service_app
from shared.settings import Settings


def party_names_of(settings: Settings) -> dict[str, str]:
    return {party.code: party.name for party in Directory.load(settings.directory_file).parties}


def findings_function_of(settings: Settings) -> FindingsFunction:
    """R9–R13 and R17 with the deployment's threshold, party names and the county's zone."""
    rules = FindingRules(
        settings.audit_concealment_threshold,
        party_names_of(settings),
        zone=settings.county_zone,
    )
    return partial(compute_findings, rules=rules)


def create_app(
    settings: Settings | None = None, findings_function: FindingsFunction | None = None
) -> FastAPI:
    """The audit service; `findings_function` replaces the findings code (tests inject a
    defect with it: nothing in the settings can)."""
    settings = settings or Settings()
    require_production_settings(
        settings,
        "audit",
        [
            *pii.production_gaps(settings),
            *signing_key_gaps(settings),
            *key_encryption_gaps(settings),
        ],
    )
    runtime = ServiceRuntime(SCHEMA, settings, messaging)
    signer = load_signer(settings)
    party_names = party_names_of(settings)
    data_keys = DataKeys(load_key_encryption_key(settings))
    audit_log = AuditLog(data_keys)
    runtime.add_consumer(
        CONSUMER,
        ALL_TOPICS,
        audit_log.table,
        partial(BatchingConsumer, audit_log),
        linger_ms=settings.audit_batch_linger_ms,
    )
    checkpointer = Checkpointer(
        runtime,
        signer,
        runtime.outbox,
        settings.audit_checkpoint_interval_seconds,
        settings.audit_confirmed_first_checkpoint_size,
    )
    runtime.add_worker("audit.checkpoints", checkpointer.run)
    metrics = AuditMetrics(runtime.metrics.registry)
    compute = findings_function or findings_function_of(settings)
    findings_health = FollowerHealth()

    async def follow_findings() -> None:
        follower = FindingsFollower(
            runtime.sessions,
            runtime.outbox,
            compute,
            runtime.listener,
            poll_seconds=settings.audit_findings_poll_interval_seconds,
            retry_max_seconds=settings.audit_findings_retry_max_seconds,
            failures=metrics.findings_review_failures,
            health=findings_health,
            data_keys=data_keys,
        )
        await follower.run()

    runtime.add_worker("audit.findings", follow_findings)
    # A detail, not a reason to leave the Service: the log and its proofs are served as ever,
    # and every replica runs the same findings code.
    runtime.add_readiness_check("findings", findings_health.readiness, required=False)

    retention = RetentionJob(
        runtime,
        runtime.outbox,
        Retention.load(settings.policy_file, settings.policy_overrides_file),
        settings.audit_retention_interval_seconds,
    )
    runtime.add_worker("audit.retention", retention.run)

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
        signer.verifier,
        tuple(witness_keys(settings)),
        party_names,
        cipher,
        settings.county_zone,
        data_keys,
    )
    return app
