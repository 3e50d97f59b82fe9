"""What one log leaf is: the canonical JSON of a CloudEvent with its topic, partition and offset.

Canonical JSON is RFC 8785 (JCS): object members sorted by their UTF-16 code units, no
insignificant white space, strings as JSON.stringify writes them (UTF-8, only `"`, `\\` and
control characters escaped), numbers as ECMAScript prints doubles. The Merkle tree hashes
these bytes with the RFC 9162 leaf prefix (`merkle.hash_leaf`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from services.audit.merkle import hash_leaf
from shared.jsontext import json_bytes

leaf_hash = hash_leaf


def canonical_json(document: Any) -> bytes:
    """`document`, of JSON's types, as RFC 8785 writes it."""
    try:
        prepared = _for_json_module(document)
    except _NeedsFullEncoder:
        return _encode(document).encode()
    # What the walk lets through, orjson writes as JCS does (`json_bytes`: the standard library
    # where orjson cannot, or would write what it refuses).
    return json_bytes(prepared, sort_keys=True)


class _NeedsFullEncoder(Exception):
    pass


def _for_json_module(value: Any) -> Any:
    """The document in a form orjson and `json.dumps` write exactly as JCS does, or
    _NeedsFullEncoder.

    Both are many times faster than `_encode`. Their output is already JCS's but for numbers
    (integral floats keep their `.0`; they and ECMAScript switch to exponents at different
    magnitudes) and for the order of keys beyond the Basic Multilingual Plane (they sort by
    code point, JCS by UTF-16 code unit).
    """
    return value if _written_as_it_is(value) else _rewritten(value)


# What may need rewriting, or hold something that does.
_NESTED_OR_FLOAT = frozenset({dict, list, tuple, float})


def _written_as_it_is(value: Any) -> bool:
    """Whether orjson writes `value` as JCS does without a change: no float in it (they may
    need one). Every key is looked at, float or not: _NeedsFullEncoder for one only the full
    encoder orders right (or not text). Most events hold no float, and are written as they
    are, without a copy."""
    kind = type(value)
    if kind is dict:
        as_it_is = True
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _NeedsFullEncoder
            if type(item) in _NESTED_OR_FLOAT and not _written_as_it_is(item):
                as_it_is = False
        return as_it_is
    if kind is list or kind is tuple:
        as_it_is = True
        for item in value:
            if type(item) in _NESTED_OR_FLOAT and not _written_as_it_is(item):
                as_it_is = False
        return as_it_is
    return kind is not float


def _rewritten(value: Any) -> Any:
    """`value` with its floats as JCS writes them; its keys passed `_written_as_it_is`."""
    kind = type(value)
    if kind is dict:
        return {key: _rewritten(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [_rewritten(item) for item in value]
    if kind is float:
        if value.is_integer():
            if abs(value) < 2**53:
                return int(value)
            raise _NeedsFullEncoder
        if not 1e-4 <= abs(value) < 1e16:
            raise _NeedsFullEncoder
    return value


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("JSON object keys are strings")
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(f"{_encode(key)}:{_encode(value[key])}" for key in keys) + "}"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _number(value: float) -> str:
    """ECMAScript Number::toString of a double (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError("NaN and infinities have no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript requires.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + (int(exponent) if exponent else 0)  # decimal point after `point` digits
    point -= len(whole + fraction) - len((whole + fraction).lstrip("0"))
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa_text = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa_text}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def leaf_document(
    *,
    topic: str,
    partition: int,
    offset: int,
    attributes: dict[str, str],
    data: Any,
) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "specversion": attributes["ce_specversion"],
        "id": attributes["ce_id"],
        "source": attributes["ce_source"],
        "type": attributes["ce_type"],
        "time": attributes["ce_time"],
        "subject": attributes["ce_subject"],
        "datacontenttype": attributes.get("content-type", "application/json"),
        "data": data,
    }
