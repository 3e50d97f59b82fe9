"""ID numbers keep region and last four only (shared/privacy.py; 个人信息保护法 Art. 28)."""

from __future__ import annotations

import pytest

from shared.privacy import mask_id_number, mask_id_numbers_in_text


@pytest.mark.parametrize(
    ("id_number", "masked"),
    [
        ("150626199001011234", "150626********1234"),
        ("15062619900101123X", "150626********123X"),
        ("15062619900101123x", "150626********123x"),
    ],
)
def test_valid_id_numbers_keep_region_and_last_four(id_number, masked):
    assert mask_id_number(id_number) == masked
    assert len(masked) == 18


@pytest.mark.parametrize("malformed", ["12345", "1506261990010112345", "15062619900101123Y", "abc"])
def test_malformed_id_numbers_are_masked_entirely(malformed):
    assert mask_id_number(malformed) == "*" * len(malformed)


@pytest.mark.parametrize("empty", [None, ""])
def test_no_id_number_gives_none(empty):
    assert mask_id_number(empty) is None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("对象身份证150626199001011234，持刀", "对象身份证150626********1234，持刀"),
        (
            "两人：15062619900101123X、150626198505050011",
            "两人：150626********123X、150626********0011",
        ),
        ("电话13904770105，编号1234567890123456789", "电话13904770105，编号1234567890123456789"),
        ("无证件号", "无证件号"),
    ],
)
def test_id_numbers_typed_into_free_text_are_masked(text: str, shown: str) -> None:
    assert mask_id_numbers_in_text(text) == shown
