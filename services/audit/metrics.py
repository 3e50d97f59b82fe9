"""Metrics of audit: how large the log is and how old its last signed checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import store
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

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            await store.act_as_writer(session)
            size = await store.log_size(session)
            latest = await store.latest_checkpoint(session)
        self.log_size.set(size)
        if latest is None:
            self.checkpoint_size.set(0)
            self.checkpoint_age.set(-1)
        else:
            self.checkpoint_size.set(latest.size)
            self.checkpoint_age.set((datetime.now(UTC) - latest.signed_at).total_seconds())
