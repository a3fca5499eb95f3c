"""Masking phone numbers before they reach a log line or an exception message (DESIGN §9)."""

from __future__ import annotations

import re

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

__all__ = ["mask_phone", "scrub"]

_E164 = re.compile(r"\+\d{7,15}")
_KEEP = 4


def mask_phone(number: str) -> str:
    """`+8613912341234` -> `+86*******1234`: the country code and the last four digits, the shape
    `arrears.masking.mask_phone` gives in logs and audit text (this layer may not import it)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) <= _KEEP:
        return "*" * len(digits)
    if number.lstrip().startswith("+"):
        cc = next((size for size in (1, 2, 3) if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE), 0)
        return "+" + digits[:cc] + "*" * (len(digits) - cc - _KEEP) + digits[-_KEEP:]
    return "*" * (len(digits) - _KEEP) + digits[-_KEEP:]


def scrub(text: str, *numbers: str) -> str:
    """`text` with the given numbers, and anything else written in E.164, masked."""
    for number in numbers:
        if number:
            text = text.replace(number, mask_phone(number))
            bare = number.lstrip("+")
            if bare:
                text = text.replace(bare, mask_phone(bare))
    return _E164.sub(lambda m: mask_phone(m.group(0)), text)
