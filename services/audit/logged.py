"""One leaf of the log as audit's judgements (findings, reports) read it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
        return cls.from_document(index, json.loads(leaf))

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
