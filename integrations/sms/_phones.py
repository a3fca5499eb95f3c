"""Phone number shapes: E.164 (ours, Twilio's) and Aliyun's (national for mainland China).

Aliyun takes mainland mobiles as 11 national digits. Other numbers go out in E.164, `+`
included: without it a +1 number's digits (`13125550100`) read as a mainland mobile.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["from_aliyun", "is_e164", "phone_tag", "to_aliyun"]

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NON_DIGITS = re.compile(r"\D")


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def to_aliyun(e164: str) -> str:
    """`+8613900001111` → `13900001111`; any other number stays in E.164."""
    if e164.startswith("+86"):
        return e164[3:]
    return e164


def from_aliyun(number: str) -> str:
    """E.164 of a number in any form the vendor accepts: `+…`, `00…`, `86…`, or 11 national digits."""
    number = number.strip()
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    if len(number) == 11 and number.startswith("1"):
        return "+86" + number
    if len(number) == 13 and number.startswith("861"):
        return "+" + number
    return "+" + number


def phone_tag(number: str) -> str:
    """A short tag telling apart the numbers of one Aliyun request (one OutId), without writing
    a number into a provider id that may be logged. It hashes the last 11 digits only, so any
    form of one number (`+86…`, `86…`, national) gets the same tag."""
    digits = _NON_DIGITS.sub("", number)[-11:]
    return hashlib.blake2b(digits.encode(), digest_size=6).hexdigest()
