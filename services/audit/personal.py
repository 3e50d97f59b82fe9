"""Personal data in the log's leaves: which fields hold it, sealing them under the incident's data
key as the leaf is written, opening them to read, and what an erased field reads as; pure.

A leaf is the event as published with its personal fields replaced by {"sealed": {kid, nonce,
ct}} (AES-GCM under the data key of the incident the event is published under; the field's
name is authenticated with it). The leaf hash commits to the ciphertext, so erasing the key
after the retention period changes no leaf, no hash, no proof and no checkpoint: the fields
just can no longer be opened, by anyone.

Personal, sealed: the names of people (reporters, actors, the person of a commendation or
discipline), phones and contacts, the subjects as published (masked names, 编号, masked ID
numbers) and intake's sealed copy of them, and free text (report text, notes, reasons,
locations, summaries, a finding's detail and the fact values it quotes). In clear,
for accountability: ids, event types, times, parties, rule ids, kinds, actions, statuses,
townships, categories, phases, decisions (a review's, a commendation's or discipline's), and who
reviewed or read what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag

from shared.pii import SEALED, PersonalDataKeyError, PiiCipher, is_sealed

# People named by the events: reporters, actors, the person of a commendation or discipline.
PERSON_NAMES = frozenset({"name", "actor_name", "person", "reporter_name"})
NAME_LISTS = frozenset({"subject_names"})
CONTACTS = frozenset({"phone", "contact"})
FREE_TEXT = frozenset(
    {
        "note",
        "reason",
        "text",
        "summary",
        "location",
        "measures_taken",
        "persons_involved",
        "detail",
        "error",
    }
)
# A finding quotes a fact as first stated and as corrected (R13): personal when the fact is.
QUOTED_VALUES = ("previous", "current")
# The subjects as published (masked names, 编号, masked ID numbers) and intake's sealed copy.
SUBJECTS = frozenset({"subjects", "sealed_subjects"})
PERSONAL = PERSON_NAMES | NAME_LISTS | CONTACTS | FREE_TEXT | SUBJECTS
ERASED = "已按保存期限删除"
UNREADABLE = "密文无法解密"
# An erased field reads as an empty value of its kind where a reader expects a list or an
# object (reports, findings), and as ERASED wherever it expects text.
ERASED_AS: Mapping[str, Any] = {"subjects": [], "subject_names": [], "sealed_subjects": None}
# What a field reads as when it cannot be opened: shown as it is, never masked.
MARKERS = frozenset({ERASED, UNREADABLE})
# The keys whose sealed values `open_personal` opens: the personal fields, and a finding's
# quoted fact versions.
OPENABLE = PERSONAL | frozenset(QUOTED_VALUES)
# What JSON documents hold other values in, as parsed (exact types), and their sequences.
CONTAINERS = frozenset({dict, list, tuple})
SEQUENCES = (list, tuple)


def about_incident(subject: str) -> bool:
    """Personal data is an incident's: events published under an incident hold it, others
    (checkpoints, under `log`) hold none, whatever their fields are called."""
    try:
        UUID(subject)
    except ValueError:
        return False
    return True


def personal_keys(container: Mapping[str, Any]) -> list[str]:
    """The keys of one JSON object whose values are personal data (and not null)."""
    keys = [key for key, value in container.items() if key in PERSONAL and value is not None]
    quoted = container.get("field")
    if isinstance(quoted, str) and quoted in PERSONAL:
        keys += [key for key in QUOTED_VALUES if container.get(key) is not None]
    return keys


def has_personal_fields(value: Any) -> bool:
    """Whether an event's data holds any personal field (not null) to seal."""
    if isinstance(value, SEQUENCES):
        return any(type(item) in CONTAINERS and has_personal_fields(item) for item in value)
    if not isinstance(value, dict):
        return False
    return bool(personal_keys(value)) or any(
        type(item) in CONTAINERS and has_personal_fields(item) for item in value.values()
    )


def erased(key: str) -> Any:
    return ERASED_AS.get(key, ERASED)


def seal_personal(value: Any, cipher: PiiCipher | None) -> Any:
    """`value` (an event's data) with its personal fields sealed under `cipher`, the incident's
    data key; None: the incident's key was erased before this event arrived, and its personal
    fields are written as erased."""
    if isinstance(value, SEQUENCES):
        return [seal_personal(item, cipher) for item in value]
    if not isinstance(value, dict):
        return value
    personal = personal_keys(value)
    sealed = {}
    for key, item in value.items():
        if key in personal:
            sealed[key] = erased(key) if cipher is None else {SEALED: cipher.seal(item, key)}
        elif type(item) in CONTAINERS:
            sealed[key] = seal_personal(item, cipher)
        else:
            # Most values are text, numbers or null: taken as they are, without a call each.
            sealed[key] = item
    return sealed


@dataclass
class Opened:
    """What opening found: sealed fields opened, and fields whose key is erased."""

    opened: int = 0
    erased: int = 0


def open_personal(
    value: Any,
    cipher: PiiCipher | None,
    found: Opened | None = None,
    only: frozenset[str] | None = None,
) -> Any:
    """`value`, a JSON document, with every sealed field opened with `cipher`; with None (the
    key erased), each reads as erased (`erased`). A field that does not open (tampered, another
    key) reads as UNREADABLE. `found` counts what was opened and erased. With `only`, the
    sealed fields of those names alone, wherever they are; the others stay sealed."""
    found = found if found is not None else Opened()
    if isinstance(value, SEQUENCES):
        return [open_personal(item, cipher, found, only) for item in value]
    if not isinstance(value, dict):
        return value
    shown = {}
    for key, item in value.items():
        # Most values are text, numbers or null: taken as they are, without a call each.
        if type(item) not in CONTAINERS:
            shown[key] = item
        elif key in OPENABLE and is_sealed(item):
            shown[key] = (
                item
                if only is not None and key not in only
                else _opened(key, item[SEALED], cipher, found)
            )
        else:
            shown[key] = open_personal(item, cipher, found, only)
    return shown


def _opened(key: str, sealed: dict[str, str], cipher: PiiCipher | None, found: Opened) -> Any:
    if cipher is None:
        found.erased += 1
        return erased(key)
    try:
        value = cipher.open(sealed, key)
    except (PersonalDataKeyError, InvalidTag, KeyError, ValueError):
        found.erased += 1
        return ERASED_AS.get(key, UNREADABLE)
    found.opened += 1
    return value
