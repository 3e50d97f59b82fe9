"""Metrics of audit: how large the log is, how old its last signed checkpoint, and how far
the findings lag behind the log."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import store
from services.audit.follower import findings_position
from shared.observability import NAMESPACE


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.log_size = Gauge(
            "audit_log_size", "Leaves in the Merkle log", namespace=NAMESPACE, registry=registry
        )
        self.checkpoint_size = Gauge(
            "audit_checkpoint_size",
            "Leaves covered by the latest signed checkpoint",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "audit_checkpoint_age_seconds",
            "Time since the latest checkpoint was signed (-1 before the first)",
            namespace=NAMESPACE,
            registry=registry,
        )

        self.findings_lag = Gauge(
            "audit_findings_lag_leaves",
            "Leaves appended but not yet reviewed for findings (log size - findings cursor)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.findings_review_failures = Counter(
            "audit_findings_review_failures",
            "Passes of the findings follower stopped by a review that raised",
            namespace=NAMESPACE,
            registry=registry,
        )

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            await store.act_as_writer(session)
            size = await store.log_size(session)
            latest = await store.latest_checkpoint(session)
            reviewed = await findings_position(session)
        self.log_size.set(size)
        self.findings_lag.set(max(size - reviewed, 0))
        if latest is None:
            self.checkpoint_size.set(0)
            self.checkpoint_age.set(-1)
        else:
            self.checkpoint_size.set(latest.size)
            self.checkpoint_age.set((datetime.now(UTC) - latest.signed_at).total_seconds())
