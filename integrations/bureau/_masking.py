"""Masking national ids (US SSNs and the like) before they reach a repr, a log line or an error.

Phone numbers are masked by `integrations._masking`; national ids are worse to leak (identity
theft, GLBA safeguards), so only their last four characters ever leave this package in text.
"""

from __future__ import annotations

import re

from integrations._masking import scrub

__all__ = ["mask_national_id", "scrub_identity"]

# 9 digits, written plain or as 123-45-6789: what a vendor might echo back in an error message
_SSN_LIKE = re.compile(r"(?<!\d)\d{3}-?\d{2}-?\d{4}(?!\d)")


def mask_national_id(national_id: str | None) -> str | None:
    """`***-**-6789`-style: the last four characters, the rest starred (None stays None)."""
    if national_id is None:
        return None
    text = national_id.strip()
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


def scrub_identity(text: str, *, national_id: str | None = None, phone: str | None = None) -> str:
    """`text` with the given national id and phone masked, and anything shaped like either too."""
    if national_id:
        bare = national_id.strip()
        text = text.replace(bare, mask_national_id(bare) or "")
        digits = re.sub(r"\D", "", bare)
        if digits and digits != bare:
            text = text.replace(digits, mask_national_id(digits) or "")
    text = _SSN_LIKE.sub(lambda m: mask_national_id(m.group(0)) or "", text)
    return scrub(text, phone or "")
