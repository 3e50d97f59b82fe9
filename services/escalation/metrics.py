"""Metrics of escalation: obligations by status, and how late deadlines fire."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.escalation.models import PENDING_DUTY, obligations
from shared.observability import NAMESPACE

STATUSES = ("PENDING", "MET", "MET_LATE", "MISSED", "WAIVED")


class EscalationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.obligations = Gauge(
            "obligations",
            "Obligations by status (PENDING, MET, MET_LATE, MISSED, WAIVED)",
            ["status"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.overdue = Gauge(
            "obligations_overdue",
            "PENDING obligations already past their due time (the deadline worker is behind)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.deadline_delay = Histogram(
            "deadline_timer_delay_seconds",
            "How long after its due time a deadline or rule timer fired",
            namespace=NAMESPACE,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=registry,
        )

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session:
            counts = dict(
                (
                    await session.execute(
                        select(obligations.c.status, func.count()).group_by(obligations.c.status)
                    )
                ).all()
            )
            overdue = (
                await session.execute(
                    select(func.count()).where(PENDING_DUTY, obligations.c.due_at < func.now())
                )
            ).scalar_one()
        for status in STATUSES:
            self.obligations.labels(status).set(counts.get(status, 0))
        self.overdue.set(overdue)
