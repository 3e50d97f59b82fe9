"""CloudEvents 1.0 in Kafka binary mode (DESIGN.md "Event envelope").

Attributes travel as `ce_*` headers, the value is the JSON event data. Decoding validates the
data against the model registered for its `ce_type` and topic, as a tolerant reader: fields this
version does not declare are ignored (a later producer may add optional ones). Anything else
invalid is an `UndecodableEvent`, which consumers send to the dead-letter topic with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from pydantic import ValidationError

from shared.events.models import EventData
from shared.events.registry import EVENT_TYPES
from shared.telemetry import current_trace_headers

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject")

Headers = Sequence[tuple[str, bytes]]


class UndecodableEvent(ValueError):
    """A record that is not a valid event of its topic; `reason` says why, for the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CloudEvent:
    id: UUID
    source: str
    type: str
    subject: str
    time: datetime
    data: EventData
    trace_headers: dict[str, str] = field(default_factory=dict)
    # The record as received: its bytes, and their JSON decoded once. That JSON is what was
    # written, a later version's fields too, not what this version's model reads of it: audit
    # logs it.
    raw_value: bytes | None = field(default=None, compare=False, repr=False)
    raw_data: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def new(
        cls,
        source: str,
        data: EventData,
        subject: str | UUID,
        trace_headers: dict[str, str] | None = None,
    ) -> CloudEvent:
        return cls(
            id=uuid4(),
            source=source,
            type=data.ce_type,
            subject=str(subject),
            time=datetime.now(UTC),
            data=data,
            trace_headers=current_trace_headers() if trace_headers is None else trace_headers,
        )

    @property
    def key(self) -> bytes:
        """Partition key: the incident id, so one incident's events stay ordered."""
        return self.subject.encode()

    def attributes(self) -> dict[str, str]:
        return {
            "ce_specversion": SPEC_VERSION,
            "ce_id": str(self.id),
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_time": self.time.isoformat(),
            "ce_subject": self.subject,
            "content-type": CONTENT_TYPE,
            **self.trace_headers,
        }

    def headers(self) -> list[tuple[str, bytes]]:
        return [(name, value.encode()) for name, value in self.attributes().items()]

    def data_json(self) -> dict[str, Any]:
        return self.data.model_dump(mode="json")

    def value(self) -> bytes:
        """The data as JSON, written by its model in one pass (`data_json`, encoded): compact,
        UTF-8, fields in their declared order."""
        return self.data.model_dump_json().encode()


UNSTORABLE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def type_of(headers: Headers) -> str | None:
    """The record's `ce_type` from its header alone, as `decode` reads it (the last header of
    the name); None when there is none, or it is not UTF-8."""
    found = None
    for name, raw in headers or ():
        if name == "ce_type":
            found = raw
    try:
        return found.decode() if found is not None else None
    except UnicodeDecodeError:
        return None


def decode(topic: str, headers: Headers, value: bytes | None) -> CloudEvent:
    """Turn a Kafka record into a validated CloudEvent, or raise UndecodableEvent."""
    attributes: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            attributes[name] = raw.decode() if raw is not None else ""
        except UnicodeDecodeError as error:
            raise UndecodableEvent(f"header {name} is not UTF-8") from error
    missing = [name for name in REQUIRED_HEADERS if not attributes.get(name)]
    if missing:
        raise UndecodableEvent(f"missing CloudEvents headers: {', '.join(missing)}")
    # The inbox keys events on their source; PostgreSQL text holds no NUL, and no producer of
    # ours puts control characters in a header. Dead-lettered, not retried for ever.
    unstorable = [
        name for name in REQUIRED_HEADERS if UNSTORABLE_CHARACTERS.search(attributes[name])
    ]
    if unstorable:
        raise UndecodableEvent(f"control characters in headers: {', '.join(unstorable)}")
    if attributes["ce_specversion"] != SPEC_VERSION:
        raise UndecodableEvent(f"unsupported ce_specversion {attributes['ce_specversion']!r}")
    spec = EVENT_TYPES.get(attributes["ce_type"])
    if spec is None:
        raise UndecodableEvent(f"unknown ce_type {attributes['ce_type']!r}")
    if spec.topic != topic:
        raise UndecodableEvent(f"ce_type {attributes['ce_type']!r} does not belong on {topic}")
    try:
        event_id = UUID(attributes["ce_id"])
        time = datetime.fromisoformat(attributes["ce_time"])
    except ValueError as error:
        raise UndecodableEvent(f"bad ce_id or ce_time: {error}") from error
    if time.tzinfo is None:
        raise UndecodableEvent("ce_time has no time zone")
    if value is None:
        raise UndecodableEvent("record has no value")
    try:
        # RFC 8259 as it stands: no NaN or Infinity, UTF-8 only, no lone surrogates, integers
        # of 64 bits, nested at most 1,024 deep; anything else is refused as not JSON.
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise UndecodableEvent(f"value is not JSON: {error}") from error
    try:
        data = spec.model.read(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(root)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise UndecodableEvent(f"{attributes['ce_type']} data invalid: {problems}") from error
    trace_headers: dict[str, str] = {
        name: attributes[name] for name in ("traceparent", "tracestate") if name in attributes
    }
    return CloudEvent(
        id=event_id,
        source=attributes["ce_source"],
        type=attributes["ce_type"],
        subject=attributes["ce_subject"],
        time=time,
        data=data,
        trace_headers=trace_headers,
        raw_value=value,
        raw_data=payload,
    )
