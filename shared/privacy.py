"""Least personal data (社区矫正法 Arts. 26, 29, 54; 个人信息保护法 Art. 28)."""

from __future__ import annotations

import re

ID_NUMBER_PATTERN = r"^\d{17}[\dXx]$"
_ID_NUMBER = re.compile(ID_NUMBER_PATTERN)


def mask_id_number(id_number: str | None) -> str | None:
    """`150626199001011234` → `150626********1234`: region and last four only."""
    if not id_number:
        return None
    if not _ID_NUMBER.match(id_number):
        return "*" * len(id_number)
    return id_number[:6] + "*" * 8 + id_number[-4:]


_ID_NUMBER_IN_TEXT = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")


def mask_id_numbers_in_text(text: str) -> str:
    """Mask every ID number a reporter typed into free text."""
    return _ID_NUMBER_IN_TEXT.sub(lambda match: match[1] + "*" * 8 + match[2], text)


def masked_name(name: str) -> str:
    """张三丰 → 张**: enough for the recipient to ask for the record, no more."""
    return name[:1] + "*" * max(len(name) - 1, 1)
