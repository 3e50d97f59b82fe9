"""Which event type travels on which topic, validated by which model."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import models, topics


@dataclass(frozen=True)
class EventSpec:
    topic: str
    model: type[models.EventData]


def _specs(topic: str, *event_models: type[models.EventData]) -> dict[str, EventSpec]:
    return {model.ce_type: EventSpec(topic, model) for model in event_models}


EVENT_TYPES: dict[str, EventSpec] = {
    **_specs(
        topics.INCIDENTS,
        models.IncidentReported,
        models.ActionRecorded,
        models.ReportFiled,
        models.PersonalDataRead,
        models.IncidentLinked,
        models.IncidentMerged,
        models.IncidentUnlinked,
    ),
    **_specs(
        topics.ESCALATIONS,
        models.ObligationCreated,
        models.ObligationMet,
        models.ObligationWaived,
        models.DeadlineMissed,
        models.IncidentStatusChanged,
        models.ActionRejected,
        models.ObligationOmitted,
        models.IncidentWentQuiet,
        models.IncidentUpdated,
    ),
    **_specs(
        topics.NOTIFICATIONS,
        models.NotificationDelivered,
        models.NotificationFailed,
        models.NotificationAcknowledged,
        models.NotificationUnacknowledged,
        models.NotificationWithdrawn,
        models.NoticeAttempted,
    ),
    **_specs(
        topics.AUDIT,
        models.LogCheckpoint,
        models.AccountabilityFinding,
        models.FindingReviewed,
        models.AccountabilityRecorded,
        models.PersonalDataReadInAudit,
        models.PersonalDataErased,
    ),
}


def topic_of(data: models.EventData) -> str:
    return EVENT_TYPES[data.ce_type].topic
