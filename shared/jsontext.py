"""JSON as the services write it for PostgreSQL, the outbox and the channels, and read it back:
compact, UTF-8 as it is (Chinese unescaped), by orjson.

These documents are many a report, an alert and an event, and the standard library takes four
to ten times longer over each. Where orjson would write what the standard library refuses (a
date, a dataclass) or cannot write what it writes (an integer beyond 64 bits), the standard
library decides, so what is written is what was written before, byte for byte aside (and NaN,
which JSON has no word for: orjson writes null where the standard library wrote what PostgreSQL
refuses).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Dates and dataclasses go on to the standard library, which refuses them. Integer keys are
# written as strings, as the standard library writes them; sorted, they go to the standard
# library too (orjson's option for them costs a third more on every document, and the sorted
# documents, the audit's canonical leaves, have none).
_REFUSED = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_OPTIONS = _REFUSED | orjson.OPT_NON_STR_KEYS
_SORTED = _REFUSED | orjson.OPT_SORT_KEYS


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as compact JSON in UTF-8; with `sort_keys`, object members by their keys' code
    points."""
    try:
        return orjson.dumps(value, option=_SORTED if sort_keys else _OPTIONS)
    except TypeError:  # an integer beyond 64 bits, or a value that is not JSON's
        return json.dumps(
            value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":")
        ).encode()


def json_text(value: Any) -> str:
    """`value` as compact JSON text (a `jsonb` parameter, a column of JSON)."""
    return json_bytes(value).decode()


def from_json(document: str | bytes) -> Any:
    """A JSON document's value; `orjson.JSONDecodeError` (a `ValueError`) when it is not JSON."""
    return orjson.loads(document)
