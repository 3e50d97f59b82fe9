"""Least personal data (社区矫正法 Arts. 26, 29, 54; 个人信息保护法 Art. 28)."""

from __future__ import annotations

import re
from functools import partial

ID_NUMBER_PATTERN = r"^\d{17}[\dXx]$"
_ID_NUMBER = re.compile(ID_NUMBER_PATTERN)


def mask_id_number(id_number: str | None) -> str | None:
    """`150626199001011234` → `150626********1234`: region and last four only."""
    if not id_number:
        return None
    if not _ID_NUMBER.match(id_number):
        return "*" * len(id_number)
    return id_number[:6] + "*" * 8 + id_number[-4:]


# Numbers as people type them into free text: digits with, at most, one space or dash between
# them. (pattern, digits kept in front, characters kept at the end), longest forms first.
_SEPARATED = r"[ \-]?"
_NUMBERS_IN_TEXT = (
    # 身份证号, 18 characters (the last may be X), and the old 15-digit form.
    (re.compile(rf"(?<![\dXx])\d(?:{_SEPARATED}\d){{16}}{_SEPARATED}[\dXx](?![\dXx])"), 6, 4),
    (re.compile(rf"(?<![\dXx])\d(?:{_SEPARATED}\d){{14}}(?![\dXx])"), 6, 3),
    # Mobile numbers, with or without +86.
    (re.compile(rf"(?<![\d+])(?:\+?86{_SEPARATED})?1[3-9]\d(?:{_SEPARATED}\d){{8}}(?!\d)"), 3, 4),
    # Landlines: an area code (0 and 2–3 digits), then 7 or 8 digits.
    (re.compile(rf"(?<!\d)0\d{{2,3}}{_SEPARATED}\d(?:{_SEPARATED}\d){{6,7}}(?!\d)"), 4, 2),
)


def _masked_number(match: re.Match[str], front: int, back: int) -> str:
    text = match[0]
    digits = [index for index, character in enumerate(text) if character.isalnum()]
    hidden = set(digits[front : len(digits) - back])
    return "".join("*" if index in hidden else c for index, c in enumerate(text))


def mask_numbers_in_text(text: str) -> str:
    """Mask every ID number (18 or 15 characters, typed with spaces or dashes too) and every
    mobile or landline number a reporter typed into free text."""
    for pattern, front, back in _NUMBERS_IN_TEXT:
        text = pattern.sub(partial(_masked_number, front=front, back=back), text)
    return text


def masked_phone(phone: str) -> str:
    """`13912345678` → `139****5678`, `0477-1234567` → `****-***4567`: a mobile's network
    prefix and the last four digits of any number; a short one keeps less."""
    digits = [index for index, character in enumerate(phone) if character.isdigit()]
    front = 3 if len(digits) == 11 and phone.lstrip("+").startswith("1") else 0
    back = 4 if len(digits) >= 8 else len(digits) // 3
    hidden = set(digits[front : len(digits) - back])
    return "".join("*" if index in hidden else c for index, c in enumerate(phone))


def masked_name(name: str) -> str:
    """张三丰 → 张**: enough for the recipient to ask for the record, no more."""
    return name[:1] + "*" * max(len(name) - 1, 1)


def mask_names_in_text(text: str, names: tuple[str, ...] | list[str]) -> str:
    """Reporters write subjects' names into free text too; mask those wherever they stand,
    the longer name first (王某某 before 王某, so it is masked whole)."""
    for name in sorted(set(names), key=len, reverse=True):
        if name:
            text = text.replace(name, masked_name(name))
    return text


def masked_text(text: str, names: tuple[str, ...] | list[str] = ()) -> str:
    """Free text as anyone without pii:read may read it: ID, mobile and landline numbers and
    the given names (the incident's current and former subjects) masked."""
    return mask_names_in_text(mask_numbers_in_text(text), names)
