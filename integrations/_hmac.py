"""Webhook signatures of the letters and agency kinds: hex HMAC-SHA256 over `<timestamp>.<body>`.

Lob signs its webhooks this way (`Lob-Signature` and `Lob-Signature-Timestamp`), and so does the
generic repossession-assignment API (`X-Agency-Signature`, `X-Agency-Timestamp`); only the header
names differ, so the arithmetic and the refusals live here once. The timestamp is inside the
signed text, so a captured webhook cannot be replayed under a fresh one, and one more than five
minutes away from our clock is refused. (The court kind signs the same text under one combined
header, in `integrations.court._signing`.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

from integrations.errors import InvalidCallback

__all__ = ["TOLERANCE", "header", "sign", "verify"]

TOLERANCE = timedelta(minutes=5)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the shared secret."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (webhook servers differ)."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _seconds(timestamp: str) -> float:
    """Unix seconds from the timestamp header: seconds, or milliseconds when it is that long."""
    value = float(timestamp)
    return value / 1000 if value > 10**11 else value


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    signature_header: str,
    timestamp_header: str,
) -> None:
    """Return if the webhook is signed with `secret` within TOLERANCE of `now`; else InvalidCallback.

    The messages say what is wrong, never what was expected: they end up in logs."""
    given = header(headers, signature_header)
    timestamp = header(headers, timestamp_header)
    if not given:
        raise InvalidCallback(f"webhook has no {signature_header} header", code="signature.missing")
    if not timestamp:
        raise InvalidCallback(f"webhook has no {timestamp_header} header", code="signature.missing")
    try:
        at = _seconds(timestamp.strip())
    except ValueError:
        raise InvalidCallback("webhook timestamp is not a number", code="signature.malformed") from None
    skew = now.timestamp() - at
    if skew > TOLERANCE.total_seconds():
        raise InvalidCallback(f"webhook signed {skew:.0f}s ago: older than 5 minutes", code="signature.stale")
    if skew < -TOLERANCE.total_seconds():
        raise InvalidCallback("webhook signed more than 5 minutes in the future", code="signature.stale")
    expected = sign(secret, timestamp.strip(), body).encode()
    if not hmac.compare_digest(expected, given.strip().lower().encode()):
        raise InvalidCallback("webhook signature does not verify", code="signature.mismatch")
