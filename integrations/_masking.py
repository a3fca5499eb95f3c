"""Masking phone numbers before they reach a log line or an exception message (DESIGN §9)."""

from __future__ import annotations

import re

__all__ = ["mask_phone", "scrub"]

_E164 = re.compile(r"\+\d{7,15}")


def mask_phone(number: str) -> str:
    """Keep the country code's first digits and the last two: enough to tell numbers apart by eye."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def scrub(text: str, *numbers: str) -> str:
    """`text` with the given numbers, and anything else written in E.164, masked."""
    for number in numbers:
        if number:
            text = text.replace(number, mask_phone(number))
            bare = number.lstrip("+")
            if bare:
                text = text.replace(bare, mask_phone(bare))
    return _E164.sub(lambda m: mask_phone(m.group(0)), text)
