"""Which consumers let a fetch's records wait for more (`EventConsumer.linger_seconds`), as the
services compose them: intake's status projection and audit, off the alerts' path, by their
settings, and let the broker hold their fetches as long; none on the alerts' path. And which
outbox relay keeps a pace (`OutboxRelay`): intake's, the source of the alerts' path, and
notification's, off it, by their settings. The waiting itself, on a real broker and database:
tests/integration/test_consumer_linger.py, tests/integration/test_relay_pace.py. Nothing
connects."""

from __future__ import annotations

import importlib
from typing import Any

from shared.kafka import LINGERING_FETCH_MAX_WAIT_MS, EventConsumer
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from tools import contracts


def runtime_of(service: str, settings: Settings) -> ServiceRuntime:
    """The service's runtime as its app composes it (not started)."""
    runtime: ServiceRuntime = (
        importlib.import_module(f"services.{service}.app").create_app(settings).state.runtime
    )
    return runtime


def members(service: str, settings: Settings) -> dict[str, EventConsumer]:
    """The service's consumer group members as its runtime builds them, by group."""
    runtime = runtime_of(service, settings)
    unused: Any = None  # nothing is reached before a member runs
    return {
        spec.group: spec.member(unused, runtime.messaging.inbox_table, unused, settings)
        for spec in runtime.consumer_specifications
    }


def test_intakes_status_projection_lingers_as_its_setting_says() -> None:
    settings = contracts.document_settings()
    assert members("intake", settings)["intake.status-projection"].linger_seconds == 0.25
    quicker = settings.model_copy(update={"intake_status_linger_ms": 40})
    assert members("intake", quicker)["intake.status-projection"].linger_seconds == 0.04
    never = settings.model_copy(update={"intake_status_linger_ms": 0})
    assert members("intake", never)["intake.status-projection"].linger_seconds == 0


def test_the_alerts_path_does_not_linger_and_audit_keeps_its_own() -> None:
    settings = contracts.document_settings().model_copy(update={"audit_batch_linger_ms": 70})
    assert members("escalation", settings)["escalation.incidents"].linger_seconds == 0
    assert members("notification", settings)["notification.escalations"].linger_seconds == 0
    (audit,) = members("audit", settings).values()
    assert audit.linger_seconds == 0.07


def test_a_lingering_consumer_lets_the_broker_hold_its_fetches_as_long_and_no_other_does() -> None:
    settings = contracts.document_settings().model_copy(
        update={"kafka_fetch_max_wait_ms": 20, "audit_batch_linger_ms": 300}
    )
    (audit,) = members("audit", settings).values()
    assert audit.fetch_max_wait_ms == 300
    assert members("intake", settings)["intake.status-projection"].fetch_max_wait_ms == 250
    assert members("escalation", settings)["escalation.incidents"].fetch_max_wait_ms == 20
    assert members("notification", settings)["notification.escalations"].fetch_max_wait_ms == 20
    # Never longer than LINGERING_FETCH_MAX_WAIT_MS, never shorter than the setting.
    longest = settings.model_copy(update={"audit_batch_linger_ms": 1000})
    (audit,) = members("audit", longest).values()
    assert audit.fetch_max_wait_ms == LINGERING_FETCH_MAX_WAIT_MS == 500
    briefly = settings.model_copy(update={"audit_batch_linger_ms": 5})
    (audit,) = members("audit", briefly).values()
    assert audit.fetch_max_wait_ms == 20


def relay_pace_ms(service: str, settings: Settings) -> int:
    return runtime_of(service, settings).relay_pace_ms


def test_intakes_and_notifications_relays_keep_the_pace_their_settings_say_and_no_other() -> None:
    settings = contracts.document_settings()
    assert relay_pace_ms("intake", settings) == 60
    assert relay_pace_ms("notification", settings) == 200
    unpaced = settings.model_copy(
        update={"intake_relay_pace_ms": 0, "notification_relay_pace_ms": 0}
    )
    assert relay_pace_ms("intake", unpaced) == relay_pace_ms("notification", unpaced) == 0
    paced = settings.model_copy(
        update={"intake_relay_pace_ms": 75, "notification_relay_pace_ms": 120}
    )
    assert relay_pace_ms("intake", paced) == 75
    assert relay_pace_ms("notification", paced) == 120
    # Escalation's relay sends the duties the alerts are sent for: it keeps none.
    for service in ("escalation", "audit", "console"):
        assert relay_pace_ms(service, paced) == 0
