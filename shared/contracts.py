"""The services' contracts, generated from the code and committed under `docs/`.

- `docs/api/<service>.json`: each service's OpenAPI 3.1 document, as its app serves it;
- `docs/events/asyncapi.yaml`: an AsyncAPI 3.0 document of every topic and its dead letters,
  who sends and who receives what;
- `docs/events/schemas/<ce_type>.json`: the JSON Schema of each event type's data, for other
  services to subscribe with, and the baseline of the compatibility check.

`sqjz-contracts` (`make contracts`) writes them; tests/contracts fails when the code
and the committed documents differ. Within a topic version an event type may only grow optional
properties, so writing refuses an incompatible schema (`breaking_changes`): publish a new topic
version or a new type instead.
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
from pydantic.json_schema import models_json_schema

from shared.dlq import DLQ_HEADERS
from shared.events import envelope, topics
from shared.events.registry import EVENT_TYPES
from shared.kafka import HandlerTable
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES, Settings

API_DIR = Path("docs") / "api"
EVENTS_DIR = Path("docs") / "events"
ASYNCAPI_FILE = EVENTS_DIR / "asyncapi.yaml"
SCHEMAS_DIR = EVENTS_DIR / "schemas"
REGENERATE = "run `make contracts` to regenerate them, and review the diff"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"
DOCUMENT_VERSION = "1.0.0"

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
        notification_ack_secret="documents-only",
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
                    f" It reads past {', '.join(ignored)} on purpose, leaving no trace."
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
                "version": DOCUMENT_VERSION,
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
    """How `new` refuses data `old` accepted, property by property; empty when compatible.

    A consumer built on `new` must still read every event written under `old` (events stay on
    the topic and come back from the DLQ), and one built on `old` must find every property it
    knew. So removing a property, narrowing a type, a format, an enum or a bound, making an
    optional property required or adding a required one is breaking; adding an optional
    property, or widening, is not. Pure: two JSON Schemas in, messages out.
    """
    return _Comparison(old, new).compare(old, new, "", frozenset())


def registry_breaking_changes(
    committed: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Breaking changes between two sets of event schemas keyed by ce_type (`event_schema`):
    a type removed from its topic or moved to another, or a type's data narrowed."""
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


class _Comparison:
    def __init__(self, old_root: Mapping[str, Any], new_root: Mapping[str, Any]) -> None:
        self._roots = (old_root, new_root)

    def compare(
        self, old: Any, new: Any, path: str, visiting: frozenset[tuple[str, str]]
    ) -> list[str]:
        refs = (_ref_of(old), _ref_of(new))
        if refs in visiting:  # a recursive definition compared with itself: nothing new
            return []
        if refs != ("", ""):
            visiting = visiting | {refs}
        old, new = _resolve(old, self._roots[0]), _resolve(new, self._roots[1])
        if new is True or not _constrains(new):
            return []
        if old is False:
            return []
        if old is True or not _constrains(old):
            return [f"{_at(path)}: accepted anything, now constrained"]
        old_choices, new_choices = _alternatives(old), _alternatives(new)
        if len(old_choices) == 1 and len(new_choices) == 1:
            return self._compare_one(old, new, path, visiting)
        problems: list[str] = []
        for choice in old_choices:
            outcomes = [self.compare(choice, other, path, visiting) for other in new_choices]
            if all(outcomes):
                problems += min(outcomes, key=len)
        return problems

    def _compare_one(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: str,
        visiting: frozenset[tuple[str, str]],
    ) -> list[str]:
        at = _at(path)
        problems: list[str] = []
        old_types, new_types = _types(old), _types(new)
        if new_types is not None:
            if old_types is None:
                problems.append(f"{at}: now restricted to {_names(new_types)}")
            elif lost := {t for t in old_types if not _type_within(t, new_types)}:
                problems.append(
                    f"{at}: type changed from {_names(old_types)} to {_names(new_types)}"
                )
                if lost == old_types:
                    return problems  # nothing below compares like with like
        if "format" in new and new["format"] != (before := old.get("format")):
            problems.append(
                f"{at}: format changed from {before} to {new['format']}"
                if before
                else f"{at}: format now {new['format']}"
            )
        old_values, new_values = _values(old), _values(new)
        if new_values is not None:
            if old_values is None:
                problems.append(f"{at}: now limited to {_listed(new_values)}")
            elif removed := [value for value in old_values if value not in new_values]:
                problems.append(f"{at}: values removed: {_listed(removed)}")
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                problems.append(f"{at}: {key} raised to {new[key]}")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                problems.append(f"{at}: {key} lowered to {new[key]}")
        if "pattern" in new and new["pattern"] != old.get("pattern"):
            problems.append(f"{at}: pattern now {new['pattern']!r}")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            problems.append(f"{at}: items must now be unique")
        problems += self._compare_objects(old, new, path, visiting)
        if "items" in new:
            problems += self.compare(old.get("items", True), new["items"], f"{path}[]", visiting)
        return problems

    def _compare_objects(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        path: str,
        visiting: frozenset[tuple[str, str]],
    ) -> list[str]:
        old_properties: Mapping[str, Any] = old.get("properties", {})
        new_properties: Mapping[str, Any] = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        problems: list[str] = []
        for name, schema in old_properties.items():
            where = f"{path}.{name}" if path else name
            if name not in new_properties:
                problems.append(f"{where}: property removed")
            else:
                problems += self.compare(schema, new_properties[name], where, visiting)
        for name in sorted(new_required - old_required):
            where = f"{path}.{name}" if path else name
            if name in old_properties:
                problems.append(f"{where}: optional property made required")
            else:
                problems.append(f"{where}: new required property")
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if old_extra is not False and new_extra is not True:
            if new_extra is False:
                problems.append(f"{_at(path)}: other properties no longer accepted")
            else:
                problems += self.compare(old_extra, new_extra, f"{path}.*", visiting)
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


def _plain(document: Any) -> Any:
    """JSON types only (lists, not tuples), as the documents read back from their files."""
    return json.loads(json.dumps(document, ensure_ascii=False))


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
