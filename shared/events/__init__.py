"""Events of the four topics: the CloudEvents envelope, typed models and their registry."""

from shared.events import models, topics
from shared.events.envelope import CloudEvent, UndecodableEvent, decode, type_of
from shared.events.registry import EVENT_TYPES, topic_of

__all__ = [
    "EVENT_TYPES",
    "CloudEvent",
    "UndecodableEvent",
    "decode",
    "models",
    "topic_of",
    "topics",
    "type_of",
]
