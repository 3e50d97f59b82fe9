"""One leaf of the log as audit's judgements (findings, reports) read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

# A leaf as stored: its index in the log and its canonical JSON.
StoredLeaf = tuple[int, bytes]


@dataclass(frozen=True)
class LoggedEvent:
    """One leaf of the log; `subject` is the incident it was published under (None: the
    incident being judged, as a test may leave it)."""

    index: int
    id: str
    type: str
    time: datetime
    data: Mapping[str, Any]
    subject: str | None = None

    @classmethod
    def from_leaf(cls, index: int, leaf: bytes) -> LoggedEvent:
        return cls.from_document(index, orjson.loads(leaf))

    @classmethod
    def from_document(cls, index: int, document: Mapping[str, Any]) -> LoggedEvent:
        return cls(
            index=index,
            id=document["id"],
            type=document["type"],
            time=datetime.fromisoformat(document["time"]),
            data=document["data"],
            subject=document.get("subject"),
        )


@dataclass(frozen=True)
class UnreadableLeaf:
    """A stored leaf the judgements cannot read (not JSON, or without an event's fields): a
    review of a history that holds it fails with `error` (`readable`), and the others go on."""

    index: int
    error: Exception


# A leaf as a history the judgements read holds it.
Read = LoggedEvent | UnreadableLeaf
Incident = TypeVar("Incident")


def read_leaves(
    histories: Mapping[Incident, Sequence[StoredLeaf]],
) -> dict[int, dict[str, Any] | UnreadableLeaf]:
    """Each leaf of the histories as its JSON document, read once however many histories hold
    it (a link is in both incidents')."""
    documents: dict[int, dict[str, Any] | UnreadableLeaf] = {}
    for history in histories.values():
        for index, leaf in history:
            if index not in documents:
                try:
                    documents[index] = orjson.loads(leaf)
                except orjson.JSONDecodeError as error:
                    documents[index] = UnreadableLeaf(index, error)
    return documents


def events_of(
    histories: Mapping[Incident, Sequence[StoredLeaf]],
    documents: Mapping[int, Mapping[str, Any] | UnreadableLeaf] | None = None,
) -> dict[Incident, list[Read]]:
    """The histories as the judgements read them, from `documents` (by default
    `read_leaves`), one event of each leaf shared by every history that holds it."""
    if documents is None:
        documents = read_leaves(histories)
    events = {index: _event(index, document) for index, document in documents.items()}
    return {
        incident: [events[index] for index, _ in history] for incident, history in histories.items()
    }


def _event(index: int, document: Mapping[str, Any] | UnreadableLeaf) -> Read:
    if isinstance(document, UnreadableLeaf):
        return document
    try:
        return LoggedEvent.from_document(index, document)
    except (KeyError, TypeError, ValueError) as error:
        return UnreadableLeaf(index, error)


def readable(history: Iterable[Read]) -> list[LoggedEvent]:
    """The history's events; the error of its first leaf that cannot be read, raised."""
    events = []
    for event in history:
        if isinstance(event, UnreadableLeaf):
            raise event.error
        events.append(event)
    return events
