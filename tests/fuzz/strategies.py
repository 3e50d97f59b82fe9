"""Hypothesis strategies: event data of every registered type, CloudEvents headers, garbage.

Two tiers. By default values look like what the services write (party codes of the directory,
the policy's rule ids, short texts, mostly Chinese and ASCII, aware times this century), so most
events are applied and the handlers' logic runs. With `wild=True` they are anything the event
schemas allow (any characters, U+0000 too, long texts, no subjects, times from year 1 to 9999),
to show that what a handler cannot store still lands in the dead-letter topic.
"""

from __future__ import annotations

import json
import string
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any
from uuid import UUID

import annotated_types
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel

from services.escalation.rules import Policy
from shared.domain.directory import Directory
from shared.events import envelope
from shared.events.models import EventData, IncidentFacts, Subject
from shared.events.registry import EVENT_TYPES
from shared.settings import REPOSITORY_ROOT

DIRECTORY = Directory.load(REPOSITORY_ROOT / "config" / "directory.yaml")
POLICY = Policy.load(REPOSITORY_ROOT / "services" / "escalation" / "policy.yaml")

HANZI = "社区矫正对象王李张赵某镇街派出所司法所突发事件已劝阻报警现场冲突群众围观续报更正"
ALPHABET = HANZI + string.ascii_letters + string.digits + " -_.,:/（）、。"
ZONES = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)))


def texts(min_size: int = 0, max_size: int = 16) -> st.SearchStrategy[str]:
    """Mostly the words of a report; sometimes any printable character."""
    characters = st.sampled_from(ALPHABET) | st.characters(exclude_categories=("Cs", "Cc"))
    return st.text(characters, min_size=min_size, max_size=max_size)


def wild_texts(min_size: int = 0, max_size: int = 300) -> st.SearchStrategy[str]:
    """Any text a JSON string can carry, control characters included, some longer than any
    column they may land in."""
    characters = st.characters(exclude_categories=("Cs",)) | st.sampled_from("\0\x1f\u2028")
    return texts(min_size, min(max_size, 16)) | st.text(
        characters, min_size=min_size, max_size=max_size
    )


def wild_datetimes() -> st.SearchStrategy[datetime]:
    offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
    return aware_datetimes() | st.datetimes(
        timezones=offsets.map(lambda minutes: timezone(timedelta(minutes=minutes)))
    )


def aware_datetimes() -> st.SearchStrategy[datetime]:
    return st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(ZONES),
    )


def township_codes() -> st.SearchStrategy[str]:
    return st.sampled_from([t.code for t in DIRECTORY.townships]) | st.from_regex(r"\A\d{9}\Z")


def party_codes() -> st.SearchStrategy[str]:
    """Codes of the shape `shared.domain.PARTY_PATTERN` allows: the directory's, and others."""
    return st.one_of(
        st.sampled_from([party.code for party in DIRECTORY.parties]),
        st.builds(
            lambda kind, code: f"{kind}:{code}",
            st.sampled_from(["SFS", "TCG", "PPS"]),
            township_codes(),
        ),
        st.sampled_from(["BLO", "BJO", "CEO", "PLATFORM", "DEPT:应急管理局", "DEPT:公安局"]),
    )


def rule_ids() -> st.SearchStrategy[str]:
    return st.sampled_from([rule.id for rule in POLICY.rules]) | st.from_regex(r"\AR\d{1,3}\Z")


def partial_facts() -> st.SearchStrategy[dict[str, Any]]:
    """What intake puts in a follow-up's `changes`: some facts, in their JSON form."""
    return st.builds(
        lambda facts, keep: {
            name: value for name, value in facts.model_dump(mode="json").items() if name in keep
        },
        model_data(IncidentFacts),
        st.sets(st.sampled_from(sorted(IncidentFacts.model_fields))),
    )


# Fields whose plain type (`str`, `UUID`) says less than what producers put there.
FIELD_STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "party": party_codes,
    "township_code": township_codes,
    "township_name": lambda: st.sampled_from([t.name for t in DIRECTORY.townships]) | texts(1),
    "rule_id": rule_ids,
    "deadline_name": lambda: st.sampled_from(sorted(POLICY.deadlines)) | texts(1, 12),
    "changes": partial_facts,
    "previous": partial_facts,
    "channel": lambda: st.sampled_from(["webhook", "sms", "voice", "email", "file", "dingtalk"]),
    "attempt": lambda: st.integers(min_value=1, max_value=10),
    "contacts_tried": lambda: st.integers(min_value=0, max_value=10),
    "size": lambda: st.integers(min_value=0, max_value=10**9),
    "status_code": lambda: st.none() | st.integers(min_value=100, max_value=599),
    "latency_ms": lambda: st.floats(min_value=0, max_value=60_000, allow_nan=False),
    "evidence_log_indexes": lambda: st.lists(st.integers(0, 10**6), max_size=4).map(tuple),
    # Intake asks for at least one subject; the wild tier sends none too.
    "subjects": lambda: st.lists(model_data(Subject), min_size=1, max_size=3).map(tuple),
}


def model_data(
    model: type[BaseModel],
    overrides: Mapping[str, st.SearchStrategy[Any]] | None = None,
    *,
    wild: bool = False,
) -> st.SearchStrategy[Any]:
    """Instances of `model`, optional fields sometimes left at their default."""
    overrides = overrides or {}
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        if name in overrides:
            strategy = overrides[name]
        else:
            strategy = for_annotation(info.annotation, info.metadata, wild=wild)
            if name in FIELD_STRATEGIES:
                realistic = FIELD_STRATEGIES[name]()
                strategy = realistic | strategy if wild else realistic
        fields[name] = strategy if info.is_required() else st.just(_DEFAULT) | strategy
    return st.fixed_dictionaries(fields).map(
        lambda values: model(**{k: v for k, v in values.items() if v is not _DEFAULT})
    )


_DEFAULT = object()


def json_values(wild: bool = False) -> st.SearchStrategy[Any]:
    text = wild_texts() if wild else texts()
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(texts(0, 8), children, max_size=3)
        ),
        max_leaves=8,
    )


def for_annotation(
    annotation: Any, metadata: list[Any] | None = None, *, wild: bool = False
) -> st.SearchStrategy[Any]:
    if annotation is Any:  # free JSON, e.g. the two versions a finding shows
        return json_values(wild)
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(for_annotation(argument, metadata, wild=wild) for argument in arguments))
    if annotation is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.sampled_from(arguments)
    if origin is tuple:
        return st.lists(for_annotation(arguments[0], wild=wild), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(texts(1, 8), json_values(wild), max_size=3)
    if annotation is AwareDatetime:
        return wild_datetimes() if wild else aware_datetimes()
    if annotation is datetime:
        naive = st.datetimes() if wild else st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1))
        return (wild_datetimes() if wild else aware_datetimes()) | naive
    if annotation is UUID:
        return st.uuids()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers() if wild else st.integers(min_value=0, max_value=10**6)
    if annotation is float:
        return st.floats(allow_nan=wild, allow_infinity=wild) if wild else st.floats(0, 10**6)
    if annotation is str:
        low, high = 0, 300 if wild else 16
        for constraint in metadata or ():
            if isinstance(constraint, annotated_types.MinLen):
                low = constraint.min_length
            if isinstance(constraint, annotated_types.MaxLen):
                high = min(high, constraint.max_length)
        return (wild_texts if wild else texts)(max(low, 0), max(high, low))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_data(annotation, wild=wild)
    raise NotImplementedError(f"no strategy for {annotation!r}")


def event_data(
    ce_type: str,
    incident_ids: st.SearchStrategy[UUID],
    obligation_ids: st.SearchStrategy[UUID] | None = None,
    *,
    wild: bool = False,
) -> st.SearchStrategy[EventData]:
    """Data of one registered type; its incident (and obligation) drawn from the given pools."""
    overrides: dict[str, st.SearchStrategy[Any]] = {"incident_id": incident_ids}
    if obligation_ids is not None:
        overrides["obligation_id"] = obligation_ids
    return model_data(EVENT_TYPES[ce_type].model, overrides, wild=wild)


def sources(wild: bool = False) -> st.SearchStrategy[str]:
    named = st.sampled_from(["intake", "escalation", "notification", "audit"])
    return named | (wild_texts(1) if wild else texts(1, 24))


def trace_headers() -> st.SearchStrategy[dict[str, str]]:
    traceparent = st.builds(
        lambda trace, span, flags: f"00-{trace:032x}-{span:016x}-{flags:02x}",
        st.integers(1, 2**128 - 1),
        st.integers(1, 2**64 - 1),
        st.sampled_from([0, 1]),
    )
    return st.fixed_dictionaries(
        {}, optional={"traceparent": traceparent, "tracestate": texts(0, 20)}
    )


def cloudevent_headers(
    ce_type: str, subject: str, event_id: UUID, source: str, time: datetime, trace: dict[str, str]
) -> list[tuple[str, bytes]]:
    attributes = {
        "ce_specversion": envelope.SPEC_VERSION,
        "ce_id": str(event_id),
        "ce_source": source,
        "ce_type": ce_type,
        "ce_time": time.isoformat(),
        "ce_subject": subject,
        "content-type": envelope.CONTENT_TYPE,
        **trace,
    }
    return [(name, value.encode()) for name, value in attributes.items()]


HEADER_NAMES = (*envelope.REQUIRED_HEADERS, "content-type", "traceparent", "tracestate")


def garbage_headers() -> st.SearchStrategy[list[tuple[str, bytes | None]]]:
    """Headers that may be CloudEvents-like, with anything as their values (not UTF-8 too)."""
    name = st.sampled_from(HEADER_NAMES) | st.text(max_size=12)
    value = st.none() | st.binary(max_size=40) | texts().map(str.encode)
    return st.lists(st.tuples(name, value), max_size=8)


def json_documents() -> st.SearchStrategy[bytes]:
    documents = st.recursive(
        st.none() | st.booleans() | st.integers() | texts(),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(texts(0, 8), children, max_size=3)
        ),
        max_leaves=8,
    )
    return documents.map(lambda document: json.dumps(document, ensure_ascii=False).encode())


def garbage_values() -> st.SearchStrategy[bytes | None]:
    return st.none() | st.binary(max_size=64) | json_documents()
