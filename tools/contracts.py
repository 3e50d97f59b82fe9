"""The services' contracts, generated from the code and committed under `docs/`.

- `docs/api/<service>.json`: each service's OpenAPI 3.1 document, as its app serves it;
- `docs/events/asyncapi.yaml`: an AsyncAPI 3.0 document of every topic and its dead letters,
  who sends and who receives what;
- `docs/events/schemas/<ce_type>.json`: the JSON Schema of each event type's data, for other
  services to subscribe with, and the baseline of the compatibility check.

`sqjz-contracts` (`make contracts`) writes them; tests/contracts fails when the code
and the committed documents differ. Within a topic version an event type may only grow optional
properties (readers ignore properties they do not know, writers write only those they declare),
so writing refuses a schema that new readers of old records or old readers of new records would
refuse (`breaking_changes`): publish a new topic version or a new type instead.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from pydantic import SecretStr
from pydantic.json_schema import models_json_schema

from shared.dlq import DLQ_HEADERS
from shared.events import envelope, topics
from shared.events.registry import EVENT_TYPES
from shared.kafka import HandlerTable
from shared.runtime import RELEASE
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES, Settings

API_DIR = Path("docs") / "api"
EVENTS_DIR = Path("docs") / "events"
ASYNCAPI_FILE = EVENTS_DIR / "asyncapi.yaml"
SCHEMAS_DIR = EVENTS_DIR / "schemas"
REGENERATE = "run `make contracts` to regenerate them, and review the diff"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"

# Each topic has one owner, the service that owns the facts it carries.
PRODUCERS: dict[str, str] = {
    topics.INCIDENTS: "intake",
    topics.ESCALATIONS: "escalation",
    topics.NOTIFICATIONS: "notification",
    topics.AUDIT: "audit",
}
TOPIC_DESCRIPTIONS: dict[str, str] = {
    topics.INCIDENTS: "Reports (首报), recorded actions and follow-ups (续报) or corrections.",
    topics.ESCALATIONS: "Routing decisions under the response plan: obligations, their "
    "deadlines and outcomes, lifecycle changes and refused actions.",
    topics.NOTIFICATIONS: "Every delivery attempt of an alert, acknowledgements, and alerts "
    "nobody acknowledged.",
    topics.AUDIT: "Checkpoints of the hash-chained log and accountability findings.",
}
DLQ_HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "dlq_reason": {"type": "string", "description": "Why the record could not be applied."},
    "dlq_consumer": {"type": "string", "description": "The consumer group that gave up on it."},
    "dlq_original_topic": {"type": "string", "description": "The topic it was read from."},
    "dlq_original_partition": {
        "type": "string",
        "pattern": r"^\d+$",
        "description": "Its partition there, in decimal.",
    },
    "dlq_original_offset": {
        "type": "string",
        "pattern": r"^\d+$",
        "description": "Its offset there, in decimal.",
    },
    "dlq_failed_at": {
        "type": "string",
        "format": "date-time",
        "description": "When it was dead-lettered (ISO 8601, UTC).",
    },
    "dlq_value_truncated_from": {
        "type": "string",
        "pattern": r"^\d+$",
        "description": "Present when the value was too large to keep whole: its length in "
        "bytes. The letter keeps the head; replay it from its original position instead.",
    },
}
DLQ_REPLAYER = "dlq-replay"


def document_settings() -> Settings:
    """Settings that build every app without reaching a database or broker: nothing connects
    before the lifespan starts. Files are pinned so the environment cannot change a document."""
    return Settings(
        database_url="postgresql://contracts@127.0.0.1:1/unused",
        kafka_bootstrap_servers="127.0.0.1:1",
        log_json=False,
        otel_exporter_otlp_endpoint=None,
        otel_traces_file=None,
        directory_file=REPOSITORY_ROOT / "config" / "directory.yaml",
        policy_file=REPOSITORY_ROOT / "services" / "escalation" / "policy.yaml",
        policy_overrides_file=None,
        notification_ack_secret=SecretStr("documents-only"),
        # A fixed log key: without one, building audit writes a development key to disk.
        audit_signing_key_seed=base64.b64encode(bytes(32)).decode(),
    )


# --- the services as their apps build them ----------------------------------------------------


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer group a service's `create_app` registers."""

    service: str
    group: str
    topics: tuple[str, ...]
    handlers: HandlerTable


def build_service(service: str, settings: Settings) -> tuple[FastAPI, list[ConsumerSpec]]:
    """The service's FastAPI app from its `create_app`, and the consumers it registered."""
    module = importlib.import_module(f"services.{service}.app")
    app = module.create_app(settings)
    consumers = [
        ConsumerSpec(service, group, topics, handlers)
        for group, topics, handlers in app.state.runtime.consumer_registrations
    ]
    return app, consumers


def services(
    settings: Settings | None = None,
) -> dict[str, tuple[FastAPI, list[ConsumerSpec]]]:
    """Every service's app and consumers, built with `settings` (`document_settings`)."""
    settings = settings or document_settings()
    return {service: build_service(service, settings) for service in SERVICE_NAMES}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return _plain(app.openapi())


# --- event schemas ----------------------------------------------------------------------------


def event_schema(ce_type: str) -> dict[str, Any]:
    """The data of one event type as a standalone JSON Schema, with its topic."""
    spec = EVENT_TYPES[ce_type]
    return _plain(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "x-ce-type": ce_type,
            "x-topic": spec.topic,
            **spec.model.model_json_schema(),
        }
    )


def event_schemas() -> dict[str, dict[str, Any]]:
    return {ce_type: event_schema(ce_type) for ce_type in EVENT_TYPES}


# --- AsyncAPI ---------------------------------------------------------------------------------


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(_escape(part) for part in path)}


def _cloudevent_headers() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "ce_specversion": {"type": "string", "const": envelope.SPEC_VERSION},
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "The event's id; with ce_source it identifies the event, so "
            "consumers apply a redelivered event once.",
        },
        "ce_source": {"type": "string", "description": "The service that published it."},
        "ce_type": {"type": "string", "description": "The event type; selects the payload."},
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "When it happened, with its time zone.",
        },
        "ce_subject": {
            "type": "string",
            "description": "The incident's id; also the record key, so one incident's events "
            "stay in order.",
        },
        "content-type": {"type": "string", "const": envelope.CONTENT_TYPE},
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C trace context of the trace the event belongs to.",
        },
        "tracestate": {"type": "string", "description": "W3C trace state."},
    }
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode, each header a UTF-8 "
        "string.",
        "required": list(envelope.REQUIRED_HEADERS),
        "properties": properties,
    }


def _dead_letter_headers(topic: str, groups: Sequence[str]) -> dict[str, Any]:
    if set(DLQ_HEADER_SCHEMAS) != DLQ_HEADERS:
        raise RuntimeError("describe every header shared.dlq.DLQ_HEADERS names, and only those")
    properties = {name: dict(schema) for name, schema in DLQ_HEADER_SCHEMAS.items()}
    properties["dlq_consumer"]["enum"] = list(groups)
    properties["dlq_original_topic"]["const"] = topic
    return {
        "type": "object",
        "description": "The original record's headers, unchanged (whatever they were), plus these.",
        "required": list(DLQ_HEADER_SCHEMAS),
        "properties": properties,
    }


def _schema_components() -> dict[str, Any]:
    models = list(dict.fromkeys(spec.model for spec in EVENT_TYPES.values()))
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(definitions["$defs"])
    names = {spec.model.__name__ for spec in EVENT_TYPES.values()}
    if not names <= set(schemas):
        raise RuntimeError("two event models share a name; the document could not tell them apart")
    return {"CloudEventHeaders": _cloudevent_headers(), **schemas}


def _message(ce_type: str) -> dict[str, Any]:
    model = EVENT_TYPES[ce_type].model
    message: dict[str, Any] = {
        "name": ce_type,
        "title": model.__name__,
        "contentType": envelope.CONTENT_TYPE,
        "headers": {
            "allOf": [
                _ref("components", "schemas", "CloudEventHeaders"),
                {"type": "object", "properties": {"ce_type": {"const": ce_type}}},
            ]
        },
        "payload": _ref("components", "schemas", model.__name__),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The incident's id (ce_subject)."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    if model.__doc__:
        message["summary"] = " ".join(model.__doc__.split())
    return message


def _dead_letter_message(topic: str, groups: Sequence[str]) -> dict[str, Any]:
    return {
        "name": f"dead-letter.{topic}",
        "title": f"A record of {topic} a consumer could not apply",
        "summary": "The original record, key and value byte for byte, with its headers and the "
        "dlq_* headers saying who gave up on it and why. Replay it once the cause is fixed: "
        f"`sqjz-dlq-replay {topic} --consumer <group>`.",
        "contentType": "application/octet-stream",
        "headers": _dead_letter_headers(topic, groups),
        "payload": {
            "description": f"The original value: the data of an event of {topic} that was "
            "refused, or bytes that never were one (not JSON, no value at all ...)."
        },
    }


def asyncapi_document(specs: Sequence[ConsumerSpec]) -> dict[str, Any]:
    """Channels, operations and messages of every topic; `specs` are the consumers the apps
    register (`services`), so the document names the groups the code runs."""
    readers = {
        topic: [spec for spec in specs if topic in spec.topics] for topic in topics.ALL_TOPICS
    }
    types_of = {
        topic: [ce_type for ce_type, spec in EVENT_TYPES.items() if spec.topic == topic]
        for topic in topics.ALL_TOPICS
    }
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics.ALL_TOPICS:
        dlq = topics.dead_letter_topic(topic)
        groups = [spec.group for spec in readers[topic]]
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": TOPIC_DESCRIPTIONS[topic],
            "messages": {
                ce_type: _ref("components", "messages", ce_type) for ce_type in types_of[topic]
            },
            "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        channels[dlq] = {
            "address": dlq,
            "title": dlq,
            "description": f"Records of {topic} that a consumer could not decode, validate or "
            "apply; nothing is dropped.",
            "messages": {"deadLetter": _ref("components", "messages", f"dead-letter.{topic}")},
            "bindings": {"kafka": {"topic": dlq, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for ce_type in types_of[topic]:
            messages[ce_type] = _message(ce_type)
        messages[f"dead-letter.{topic}"] = _dead_letter_message(topic, groups)
        topic_messages = [_ref("channels", topic, "messages", t) for t in types_of[topic]]
        producer = PRODUCERS[topic]
        operations[f"{producer}.send.{topic}"] = {
            "action": "send",
            "channel": _ref("channels", topic),
            "title": f"{producer} publishes {topic}",
            "summary": f"{producer} writes these events with its state change (outbox) and "
            "publishes them in order, keyed by incident.",
            "messages": topic_messages,
        }
        for spec in readers[topic]:
            handled = [t for t in types_of[topic] if t in spec.handlers.handled]
            ignored = [t for t in types_of[topic] if t in spec.handlers.ignored]
            operations[f"{spec.group}.receive.{topic}"] = {
                "action": "receive",
                "channel": _ref("channels", topic),
                "title": f"{spec.service} ({spec.group}) reads {topic}",
                "summary": "Each event of these types is applied in one transaction with the "
                "inbox, so a redelivered one changes nothing; what cannot be applied goes to "
                f"{dlq}."
                + (
                    f" It reads past {', '.join(ignored)} on purpose, by the ce_type header"
                    " alone, leaving no trace."
                    if ignored
                    else ""
                ),
                "messages": [_ref("channels", topic, "messages", t) for t in handled],
                "x-ignored-messages": ignored,
                "bindings": _group_binding(spec.group),
            }
            operations[f"{spec.group}.dead-letter.{topic}"] = {
                "action": "send",
                "channel": _ref("channels", dlq),
                "title": f"{spec.group} dead-letters records of {topic}",
                "messages": [_ref("channels", dlq, "messages", "deadLetter")],
            }
        replayer = f"{DLQ_REPLAYER}.{topic}"
        operations[f"{replayer}.receive.{dlq}"] = {
            "action": "receive",
            "channel": _ref("channels", dlq),
            "title": f"The replayer reads {dlq}",
            "summary": f"`sqjz-dlq-replay {topic}` puts each dead letter back on {topic} "
            "without its dlq_* headers.",
            "messages": [_ref("channels", dlq, "messages", "deadLetter")],
            "bindings": _group_binding(replayer),
        }
        operations[f"{replayer}.send.{topic}"] = {
            "action": "send",
            "channel": _ref("channels", topic),
            "title": f"The replayer puts dead letters back on {topic}",
            "messages": topic_messages,
        }
    return _plain(
        {
            "asyncapi": "3.0.0",
            "info": {
                "title": "社区矫正突发事件应急处置 — events",
                "version": RELEASE,
                "description": "The topics the services of 乌审旗司法局's incident escalation "
                "talk over. CloudEvents 1.0 in Kafka binary mode: the attributes are `ce_*` "
                "headers, the value is the event's data as JSON. Within a topic version, types "
                "only gain optional properties; a breaking change is a new topic version or a "
                "new type. Brokers: `KAFKA_BOOTSTRAP_SERVERS`.",
            },
            "defaultContentType": envelope.CONTENT_TYPE,
            "channels": channels,
            "operations": operations,
            "components": {"schemas": _schema_components(), "messages": messages},
        }
    )


def _group_binding(group: str) -> dict[str, Any]:
    return {
        "kafka": {
            "groupId": {"type": "string", "enum": [group]},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


# --- compatibility ----------------------------------------------------------------------------

_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """How a change from `old` to `new` breaks a reader, property by property; empty when
    compatible both ways. Pure: two JSON Schemas in, messages out.

    New readers must read every record written under `old` (records stay on the topic and come
    back from the DLQ): removing a property, narrowing a type, a format, an enum or a bound,
    making an optional property required or adding a required one breaks them. Old readers
    must read every record written under `new` (a subscriber upgraded after its producer):
    readers ignore properties they do not know, and producers write only what their schema
    declares, so a new optional property is fine; but widening what old readers refuse (an enum
    value added, a type or bound widened, null allowed, a format or pattern dropped, a required
    property made optional) breaks them. Messages about old readers say so.
    """
    new_readers = _Comparison(old, new, old_readers=False).compare(old, new, "", frozenset())
    old_readers = _Comparison(new, old, old_readers=True).compare(new, old, "", frozenset())
    reported = {problem.split(": ", 1)[0] for problem in new_readers}
    return new_readers + [
        problem for problem in old_readers if problem.split(": ", 1)[0] not in reported
    ]


def registry_breaking_changes(
    committed: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Breaking changes between two sets of event schemas keyed by ce_type (`event_schema`):
    a type removed from its topic or moved to another, or a type's data changed so that new or
    old readers refuse it."""
    problems: list[str] = []
    for ce_type, old in committed.items():
        new = current.get(ce_type)
        topic = old.get("x-topic")
        if new is None:
            problems.append(f"{ce_type}: removed from {topic}")
        elif new.get("x-topic") != topic:
            problems.append(f"{ce_type}: moved from {topic} to {new.get('x-topic')}")
        else:
            problems += [f"{ce_type}: {problem}" for problem in breaking_changes(old, new)]
    return problems


OLD_READERS = " (old readers refuse it)"


class _Comparison:
    """What a reader with one schema refuses of what a writer with another may write.

    `old_readers=False`: the writer is the old schema, the reader the new one (messages say
    what changed). `old_readers=True`: the writer is the new schema, the reader the old one;
    messages still say what changed, old to new, and that old readers refuse it."""

    def __init__(
        self, writer_root: Mapping[str, Any], reader_root: Mapping[str, Any], *, old_readers: bool
    ) -> None:
        self._roots = (writer_root, reader_root)
        self._old_readers = old_readers

    def _said(self, for_new_readers: str, for_old_readers: str) -> str:
        return for_old_readers + OLD_READERS if self._old_readers else for_new_readers

    def compare(
        self, writer: Any, reader: Any, path: str, visiting: frozenset[tuple[str, str]]
    ) -> list[str]:
        refs = (_ref_of(writer), _ref_of(reader))
        if refs in visiting:  # a recursive definition compared with itself: nothing new
            return []
        if refs != ("", ""):
            visiting = visiting | {refs}
        writer, reader = _resolve(writer, self._roots[0]), _resolve(reader, self._roots[1])
        if reader is True or not _constrains(reader):
            return []
        if writer is False:
            return []
        if writer is True or not _constrains(writer):
            at = _at(path)
            return [
                self._said(
                    f"{at}: accepted anything, now constrained", f"{at}: constraints dropped"
                )
            ]
        writer_choices, reader_choices = _alternatives(writer), _alternatives(reader)
        if len(writer_choices) == 1 and len(reader_choices) == 1:
            return self._compare_one(writer, reader, path, visiting)
        problems: list[str] = []
        for choice in writer_choices:
            outcomes: list[list[str]] = [
                self.compare(choice, other, path, visiting) for other in reader_choices
            ]
            if all(outcomes):
                fewest = min(outcomes, key=len)
                problems += fewest
        return problems

    def _compare_one(
        self,
        writer: Mapping[str, Any],
        reader: Mapping[str, Any],
        path: str,
        visiting: frozenset[tuple[str, str]],
    ) -> list[str]:
        at = _at(path)
        said = self._said
        problems: list[str] = []
        writer_types, reader_types = _types(writer), _types(reader)
        if reader_types is not None:
            if writer_types is None:
                problems.append(
                    said(
                        f"{at}: now restricted to {_names(reader_types)}",
                        f"{at}: no longer restricted to {_names(reader_types)}",
                    )
                )
            elif lost := {t for t in writer_types if not _type_within(t, reader_types)}:
                problems.append(
                    said(
                        f"{at}: type changed from {_names(writer_types)} to {_names(reader_types)}",
                        f"{at}: now also {_names(lost)}",
                    )
                )
                if lost == writer_types:
                    return problems  # nothing below compares like with like
        if "format" in reader and reader["format"] != (written := writer.get("format")):
            expected = reader["format"]
            problems.append(
                said(
                    f"{at}: format changed from {written} to {expected}"
                    if written
                    else f"{at}: format now {expected}",
                    f"{at}: format changed from {expected} to {written}"
                    if written
                    else f"{at}: format {expected} dropped",
                )
            )
        writer_values, reader_values = _values(writer), _values(reader)
        if reader_values is not None:
            if writer_values is None:
                problems.append(
                    said(
                        f"{at}: now limited to {_listed(reader_values)}",
                        f"{at}: no longer limited to {_listed(reader_values)}",
                    )
                )
            elif refused := [value for value in writer_values if value not in reader_values]:
                problems.append(
                    said(
                        f"{at}: values removed: {_listed(refused)}",
                        f"{at}: values added: {_listed(refused)}",
                    )
                )
        for key in _LOWER_BOUNDS:
            if key in reader and (key not in writer or reader[key] > writer[key]):
                problems.append(
                    said(
                        f"{at}: {key} raised to {reader[key]}",
                        f"{at}: {key} lowered to {writer[key]}"
                        if key in writer
                        else f"{at}: {key} dropped",
                    )
                )
        for key in _UPPER_BOUNDS:
            if key in reader and (key not in writer or reader[key] < writer[key]):
                problems.append(
                    said(
                        f"{at}: {key} lowered to {reader[key]}",
                        f"{at}: {key} raised to {writer[key]}"
                        if key in writer
                        else f"{at}: {key} dropped",
                    )
                )
        if "pattern" in reader and reader["pattern"] != writer.get("pattern"):
            problems.append(
                said(f"{at}: pattern now {reader['pattern']!r}", f"{at}: pattern changed")
            )
        if reader.get("uniqueItems") and not writer.get("uniqueItems"):
            problems.append(
                said(f"{at}: items must now be unique", f"{at}: items need no longer be unique")
            )
        problems += self._compare_objects(writer, reader, path, visiting)
        if "items" in reader:
            problems += self.compare(
                writer.get("items", True), reader["items"], f"{path}[]", visiting
            )
        return problems

    def _compare_objects(
        self,
        writer: Mapping[str, Any],
        reader: Mapping[str, Any],
        path: str,
        visiting: frozenset[tuple[str, str]],
    ) -> list[str]:
        writer_properties: Mapping[str, Any] = writer.get("properties", {})
        reader_properties: Mapping[str, Any] = reader.get("properties", {})
        writer_required = set(writer.get("required", ()))
        reader_required = set(reader.get("required", ()))
        reader_extra = reader.get("additionalProperties", True)
        problems: list[str] = []
        for name, schema in writer_properties.items():
            where = f"{path}.{name}" if path else name
            if name in reader_properties:
                problems += self.compare(schema, reader_properties[name], where, visiting)
            elif not self._old_readers:
                problems.append(f"{where}: property removed")
            elif reader_extra is False:
                problems.append(f"{where}: property added, other properties refused{OLD_READERS}")
            else:  # a tolerant reader ignores it, or reads it as one of its other properties
                problems += self.compare(schema, reader_extra, where, visiting)
        for name in sorted(reader_required - writer_required):
            where = f"{path}.{name}" if path else name
            if name in writer_properties:
                problems.append(
                    self._said(
                        f"{where}: optional property made required",
                        f"{where}: required property made optional",
                    )
                )
            elif not self._old_readers:
                problems.append(f"{where}: new required property")
        # Producers write only the properties their schema declares, so what else an object
        # with properties may hold is for readers to ignore; free-form objects are compared.
        writer_extra = writer.get("additionalProperties", True)
        if self._old_readers and writer_properties:
            return problems
        if writer_extra is not False and reader_extra is not True:
            if reader_extra is False:
                problems.append(
                    self._said(
                        f"{_at(path)}: other properties no longer accepted",
                        f"{_at(path)}: other properties now allowed",
                    )
                )
            else:
                problems += self.compare(writer_extra, reader_extra, f"{path}.*", visiting)
        return problems


def _at(path: str) -> str:
    return path or "(data)"


def _ref_of(schema: Any) -> str:
    return schema.get("$ref", "") if isinstance(schema, Mapping) else ""


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    """Follow local `$ref`s; keywords beside a `$ref` (a description ...) are kept."""
    seen: set[str] = set()
    while isinstance(schema, Mapping) and "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            raise ValueError(f"circular $ref {ref}")
        seen.add(ref)
        target = resolve_pointer(root, ref)
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**target, **siblings} if isinstance(target, Mapping) else target
    return schema


def resolve_pointer(document: Any, ref: str) -> Any:
    """The value a local JSON reference (`#/a/b`) points at in `document`; KeyError if none."""
    if not ref.startswith("#"):
        raise KeyError(f"not a local reference: {ref}")
    node = document
    for raw in filter(None, ref[1:].split("/")):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise KeyError(f"{ref} does not resolve: no {part!r}")
    return node


_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
        "$schema",
        "$id",
        "$defs",
        "definitions",
    }
)


def _constrains(schema: Any) -> bool:
    if isinstance(schema, bool):
        return not schema
    return any(key not in _ANNOTATIONS and not key.startswith("x-") for key in schema)


def _alternatives(schema: Mapping[str, Any]) -> list[Any]:
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            return list(schema[keyword])
    return [schema]


_JSON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
    list: "array",
    dict: "object",
}


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is not None:
        return frozenset([declared] if isinstance(declared, str) else declared)
    values = _values(schema)
    if values is None:
        return None
    return frozenset(_JSON_TYPES.get(type(value), "object") for value in values)


def _type_within(name: str, types: frozenset[str]) -> bool:
    return name in types or (name == "integer" and "number" in types)


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _names(types: Iterable[str]) -> str:
    return " or ".join(sorted(types))


def _listed(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(value, ensure_ascii=False) for value in values)


# --- the files --------------------------------------------------------------------------------


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """JSON types only (lists, not tuples), as the documents read back from their files."""
    plain: dict[str, Any] = json.loads(json.dumps(document, ensure_ascii=False))
    return plain


def render_json(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_yaml(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)


def document_paths() -> list[Path]:
    """Where the documents go, under the repository root, without building anything."""
    return [
        *(API_DIR / f"{service}.json" for service in SERVICE_NAMES),
        ASYNCAPI_FILE,
        *(SCHEMAS_DIR / f"{ce_type}.json" for ce_type in EVENT_TYPES),
    ]


def expected_files(settings: Settings | None = None) -> dict[Path, Any]:
    """Every generated document, by its path under the repository root."""
    built = services(settings)
    files: dict[Path, Any] = {
        API_DIR / f"{service}.json": openapi_document(app) for service, (app, _) in built.items()
    }
    files[ASYNCAPI_FILE] = asyncapi_document(
        [spec for _, specs in built.values() for spec in specs]
    )
    for ce_type, schema in event_schemas().items():
        files[SCHEMAS_DIR / f"{ce_type}.json"] = schema
    return files


def load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)


def committed_event_schemas(root: Path = REPOSITORY_ROOT) -> dict[str, dict[str, Any]]:
    folder = root / SCHEMAS_DIR
    return {
        path.name.removesuffix(".json"): load_document(path)
        for path in sorted(folder.glob("*.json"))
    }


def _generated_paths(root: Path) -> set[Path]:
    found = {path.relative_to(root) for path in (root / API_DIR).glob("*.json")}
    found |= {path.relative_to(root) for path in (root / SCHEMAS_DIR).glob("*.json")}
    if (root / ASYNCAPI_FILE).exists():
        found.add(ASYNCAPI_FILE)
    return found


def drift(root: Path = REPOSITORY_ROOT, expected: Mapping[Path, Any] | None = None) -> list[str]:
    """Which committed documents differ from the code (missing, stale or changed)."""
    expected = expected if expected is not None else expected_files()
    problems: list[str] = []
    for path, document in expected.items():
        if not (root / path).exists():
            problems.append(f"{path}: missing")
        elif (committed := load_document(root / path)) != document:
            problems.append(f"{path}: differs at {first_difference(committed, document)}")
    for path in sorted(_generated_paths(root) - set(expected)):
        problems.append(f"{path}: nothing generates it any more")
    return problems


def first_difference(committed: Any, generated: Any, path: str = "") -> str:
    """Where two JSON documents first differ, as a JSON pointer."""
    if isinstance(committed, dict) and isinstance(generated, dict):
        for key in [*committed, *(key for key in generated if key not in committed)]:
            if committed.get(key, _MISSING) != generated.get(key, _MISSING):
                here = f"{path}/{_escape(str(key))}"
                if key not in committed or key not in generated:
                    return here
                return first_difference(committed[key], generated[key], here)
    if isinstance(committed, list) and isinstance(generated, list):
        for index, (left, right) in enumerate(zip(committed, generated, strict=False)):
            if left != right:
                return first_difference(left, right, f"{path}/{index}")
        if len(committed) != len(generated):
            return f"{path}/{min(len(committed), len(generated))}"
    return path or "/"


_MISSING = object()


def write(root: Path = REPOSITORY_ROOT, *, accept_breaking: bool = False) -> list[Path]:
    """Write every document; refuses event schemas that break the committed ones."""
    expected = expected_files()
    current = {
        path.name.removesuffix(".json"): document
        for path, document in expected.items()
        if path.parent == SCHEMAS_DIR
    }
    breaking = registry_breaking_changes(committed_event_schemas(root), current)
    if breaking and not accept_breaking:
        raise SystemExit(
            "Refusing to overwrite docs/events/schemas with breaking changes:\n  "
            + "\n  ".join(breaking)
            + "\nPublish them as a new topic version or a new event type instead "
            "(--accept-breaking only for a type no one has consumed yet)."
        )
    written: list[Path] = []
    for path, document in expected.items():
        target = root / path
        text = render_yaml(document) if path.suffix == ".yaml" else render_json(document)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(path)
    for stale in sorted(_generated_paths(root) - set(expected)):
        (root / stale).unlink()
        written.append(stale)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqjz-contracts", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    parser.add_argument(
        "--accept-breaking",
        action="store_true",
        help="overwrite event schemas even with breaking changes",
    )
    arguments = parser.parse_args(argv)
    if arguments.check:
        problems = drift()
        for problem in problems:
            print(problem)
        if problems:
            print(f"The committed contracts are out of date: {REGENERATE}.", file=sys.stderr)
        return 1 if problems else 0
    written = write(accept_breaking=arguments.accept_breaking)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} file(s) changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
