"""Topic names of DESIGN.md. A breaking change of an event is a new topic or type."""

from __future__ import annotations

INCIDENTS = "incidents.v1"
ESCALATIONS = "escalations.v1"
NOTIFICATIONS = "notifications.v1"
AUDIT = "audit.v1"

ALL_TOPICS = (INCIDENTS, ESCALATIONS, NOTIFICATIONS, AUDIT)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics_with_dead_letters() -> list[str]:
    return [name for topic in ALL_TOPICS for name in (topic, dead_letter_topic(topic))]
