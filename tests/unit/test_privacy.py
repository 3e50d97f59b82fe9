"""ID numbers keep region and last four only, phone numbers their last digits, and names their
family name (shared/domain/privacy.py; 个人信息保护法 Art. 28)."""

from __future__ import annotations

import pytest

from shared.domain.privacy import mask_id_number, mask_numbers_in_text, masked_phone


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
        # 19 digits are no ID number and no phone: a reference, left as typed.
        ("编号1234567890123456789", "编号1234567890123456789"),
        ("无证件号", "无证件号"),
        # Typed with spaces or dashes, the old 15-digit form, mobiles and landlines.
        ("证号 150626 19900101 123X", "证号 150626 ******** 123X"),
        ("证号150626-1990-0101-1234", "证号150626-****-****-1234"),
        ("旧证150626900101123", "旧证150626******123"),
        ("电话13904770105，或139 0477 0105", "电话139****0105，或139 **** 0105"),
        ("座机0477-7512345，0477 75123456", "座机0477-*****45，0477 ******56"),
        # Dates and times are no numbers of a person.
        ("2026-11-30 14:05 发现", "2026-11-30 14:05 发现"),
    ],
)
def test_personal_numbers_typed_into_free_text_are_masked(text: str, shown: str) -> None:
    assert mask_numbers_in_text(text) == shown


def test_free_text_masks_numbers_and_every_name_given() -> None:
    from shared.domain.privacy import masked_text

    text = "王某某（150626199001011234）与王某、李四冲突，联系人电话13900000000"
    assert masked_text(text, ("王某", "王某某", "李四")) == (
        "王**（150626********1234）与王*、李*冲突，联系人电话139****0000"
    )


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13912345678", "139****5678"),
        ("0477-1234567", "****-***4567"),
        ("+86 139 1234 5678", "+** *** **** 5678"),
        ("110", "**0"),
    ],
)
def test_a_reporters_phone_keeps_a_mobiles_prefix_and_the_last_four_digits(phone, masked):
    assert masked_phone(phone) == masked
