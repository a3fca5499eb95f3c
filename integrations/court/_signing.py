"""Callback signatures of the court gateways: HMAC-SHA256 over `timestamp.body`, shared by client and sandbox.

Header: `X-Arrears-Signature: t=1767225600,v1=<hex>[,v1=<hex>…]`. Several `v1` values let a
gateway sign with the old and the new secret while a secret is rotated; one match suffices. The
timestamp is inside the signed text, so a captured callback cannot be replayed with a fresh one,
and one more than five minutes away from our clock is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

from integrations.errors import UnverifiedCallback

__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "sign", "signature_header", "verify"]

SIGNATURE_HEADER = "X-Arrears-Signature"
TOLERANCE = timedelta(minutes=5)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the shared secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    """Return if the callback is signed with `secret` within TOLERANCE of `now`; else UnverifiedCallback.

    The messages say what is wrong, never what was expected: they end up in logs.
    """
    given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    if not given:
        raise UnverifiedCallback(f"callback has no {SIGNATURE_HEADER} header", code="signature.missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in given.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise UnverifiedCallback(
                    "callback signature timestamp is not an integer", code="signature.malformed"
                ) from None
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise UnverifiedCallback("callback signature lacks t= or v1=", code="signature.malformed")
    skew = now.timestamp() - timestamp
    if skew > TOLERANCE.total_seconds():
        raise UnverifiedCallback(
            f"callback signed {skew:.0f}s ago: older than 5 minutes", code="signature.stale"
        )
    if skew < -TOLERANCE.total_seconds():
        raise UnverifiedCallback("callback signed more than 5 minutes in the future", code="signature.stale")
    expected = sign(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        raise UnverifiedCallback("callback signature does not verify", code="signature.mismatch")
