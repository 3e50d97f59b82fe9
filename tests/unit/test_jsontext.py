"""shared.jsontext: the services' JSON, written by orjson as the standard library wrote it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.jsontext import from_json, json_bytes, json_text


def standard(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# JSON's values without floats: orjson and the standard library write floats alike in value,
# not always in form (1e+16 against 1e16).
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(documents)
def test_written_as_the_standard_library_writes_it(document: Any) -> None:
    assert json_bytes(document) == standard(document)
    assert json_text(document) == standard(document).decode()
    assert from_json(json_bytes(document)) == document
    assert json_bytes(document, sort_keys=True) == (
        json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    )


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_reads_back_as_itself(number: float) -> None:
    assert from_json(json_text({"value": number})) == {"value": number}


def test_chinese_is_written_as_it_is_in_utf8() -> None:
    assert json_bytes({"township": "图克镇", "note": "对象1人"}) == (
        '{"township":"图克镇","note":"对象1人"}'.encode()
    )


def test_integers_beyond_64_bits_are_written_whole() -> None:
    assert json_text({"n": 2**70, "m": -(2**65)}) == f'{{"n":{2**70},"m":{-(2**65)}}}'


def test_integer_keys_are_written_as_strings() -> None:
    assert json_text({1: "a", 2: ["b"]}) == '{"1":"a","2":["b"]}'
    assert json_bytes({2: "b", 1: "a"}, sort_keys=True) == b'{"1":"a","2":"b"}'


@dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [datetime(2026, 12, 3, tzinfo=UTC), Point(1), {1, 2}, b"\x00"])
def test_what_json_has_no_word_for_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json_bytes({"value": value})


def test_a_document_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        from_json(b'{"open": ')
    assert from_json('{"a":[1,"二"]}') == {"a": [1, "二"]}
