"""Metrics of notification: attempts by channel and outcome, delivery latency, open breakers."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.guard import ChannelGuard
from services.notification.models import deliveries, notifications
from shared.observability import LATENCY_BUCKETS, NAMESPACE


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "notification_attempts",
            "Delivery attempts by channel and outcome (DELIVERED, FAILED)",
            ["channel", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.latency = Histogram(
            "notification_delivery_latency_seconds",
            "How long a gateway took to answer one attempt",
            ["channel"],
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.notifications = Gauge(
            "notifications",
            "Alerts by status (NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED)",
            ["status"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.overdue_deliveries = Gauge(
            "notification_deliveries_overdue",
            "Deliveries due for an attempt more than 30 s ago (the dispatcher is behind)",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.circuit_open = Gauge(
            "notification_circuit_open",
            "1 while a gateway's circuit breaker is open (its alerts wait or move on)",
            ["channel", "gateway"],
            namespace=NAMESPACE,
            registry=registry,
        )

    def observe_guards(self, guards: Mapping[str, ChannelGuard]) -> None:
        for channel, guard in guards.items():
            for gateway, breaker in guard.breakers.items():
                self.circuit_open.labels(channel, gateway).set(breaker.state == "open")

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session:
            counts = dict(
                (
                    await session.execute(
                        select(notifications.c.status, func.count()).group_by(
                            notifications.c.status
                        )
                    )
                ).all()
            )
            overdue = (
                await session.execute(
                    select(func.count()).where(
                        deliveries.c.status == "PENDING",
                        deliveries.c.next_attempt_at < func.now() - text("interval '30 seconds'"),
                    )
                )
            ).scalar_one()
        for status in ("NEW", "PENDING", "DELIVERED", "ACKNOWLEDGED", "UNACKNOWLEDGED", "FAILED"):
            self.notifications.labels(status).set(counts.get(status, 0))
        self.overdue_deliveries.set(overdue)
