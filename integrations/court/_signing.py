"""Callback signatures of the court gateways: `X-Arrears-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
HMAC-SHA256 over `<timestamp>.<body>`, shared by client and sandbox (the arithmetic and the
refusals are `integrations._hmac`'s, which the letters and agency kinds use too)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from integrations._hmac import COMBINED_HEADER as SIGNATURE_HEADER
from integrations._hmac import TOLERANCE, sign, verify_combined
from integrations._hmac import combined_header as signature_header

__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "sign", "signature_header", "verify"]


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    """Return if the callback is signed with `secret` within TOLERANCE of `now`; else UnverifiedCallback."""
    verify_combined(secret, headers, body, now, noun="callback")
