"""What a reader without pii:read sees of the log's events: personal data masked; pure.

The log keeps every event as it was published, its personal fields sealed (`personal.py`); the
publishers already mask the subjects and the numbers and subjects' names in free text. What an
event holds in clear once opened is masked here for every reader who does not hold pii:read
(社区矫正法 Art. 54; 个人信息保护法 Art. 28): the names of the people who reported, acted, were
disciplined or commended, their phone numbers and contacts, and free text (report text, action
notes, reasons, locations, a finding's detail and the fact values it quotes).

What stays in clear is what accountability rests on: ids, event types, times, parties, rule ids,
kinds, actions, statuses, townships, categories and phases, decisions, and who reviewed or read
what (the reviewer's and reader's account: they act in office).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.audit.personal import (
    CONTACTS,
    FREE_TEXT,
    MARKERS,
    NAME_LISTS,
    PERSON_NAMES,
    QUOTED_VALUES,
)
from shared.domain.privacy import masked_name, masked_text

# What a read in clear of the log shows, as audit.personal_data_read names it.
LOG_FIELDS = ("people.name", "people.phone", "free text")


def masked_value(key: str, value: Any, names: tuple[str, ...]) -> Any:
    """One field as a reader without pii:read sees it."""
    if value is None or (isinstance(value, str) and value in MARKERS):
        return value
    if key in PERSON_NAMES and isinstance(value, str):
        return masked_name(value)
    if key in NAME_LISTS and isinstance(value, list | tuple):
        return [masked_name(name) if isinstance(name, str) else name for name in value]
    if key in CONTACTS | FREE_TEXT and isinstance(value, str):
        return masked_text(value, names)
    return masked_event(value, names)


def masked_event(value: Any, names: Iterable[str] = ()) -> Any:
    """An event (or any part of one) with personal data masked; `names`: people's names to
    look for in free text besides the numbers (the incident's subjects, when known)."""
    names = tuple(names)
    if isinstance(value, list | tuple):
        return [masked_event(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    shown = {key: masked_value(key, item, names) for key, item in value.items()}
    quoted = value.get("field")
    if isinstance(quoted, str) and quoted in PERSON_NAMES | CONTACTS | FREE_TEXT:
        for key in QUOTED_VALUES:
            if isinstance(value.get(key), str):
                shown[key] = masked_text(value[key], names)
    return shown


def holds_personal_data(event: Any) -> bool:
    """Whether masking changes the event: it holds personal data in clear."""
    return masked_event(event) != event
