"""Webhook signatures: hex HMAC-SHA256 over `<timestamp>.<body>`, under two header layouts.

- Separate headers (Lob: `Lob-Signature` and `Lob-Signature-Timestamp`; the repossession
  assignment API: `X-Agency-Signature`, `X-Agency-Timestamp`): `verify`.
- One combined header, `X-Arrears-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` (the court gateways,
  and the SMS sandbox's signed pushes): `combined_header`, `verify_combined`. Several `v1` values
  let a sender sign with the old and the new secret while a secret is rotated; one match suffices.

The timestamp is inside the signed text, so a captured webhook cannot be replayed under a fresh
one, and one more than five minutes away from our clock is refused. The refusals say what is
wrong, never what was expected: they end up in logs.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import datetime, timedelta

from integrations.errors import UnverifiedCallback

__all__ = [
    "COMBINED_HEADER",
    "TOLERANCE",
    "combined_header",
    "header",
    "sign",
    "verify",
    "verify_combined",
]

TOLERANCE = timedelta(minutes=5)
COMBINED_HEADER = "X-Arrears-Signature"


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the shared secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def combined_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Arrears-Signature` value: `t=<unix>,v1=<hex>`."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (webhook servers differ)."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _seconds(timestamp: str) -> float:
    """Unix seconds from the timestamp header: seconds, or milliseconds when it is that long.
    ValueError for what is no instant: `float` reads "nan" and "inf", and a NaN compares false
    with every bound, so it passed as fresh."""
    value = float(timestamp)
    if not math.isfinite(value):
        raise ValueError(f"not an instant: {timestamp!r}")
    return value / 1000 if value > 10**11 else value


def _check_fresh(at: float, now: datetime, noun: str) -> None:
    skew = now.timestamp() - at
    if skew > TOLERANCE.total_seconds():
        raise UnverifiedCallback(
            f"{noun} signed {skew:.0f}s ago: older than 5 minutes", code="signature.stale"
        )
    if skew < -TOLERANCE.total_seconds():
        raise UnverifiedCallback(f"{noun} signed more than 5 minutes in the future", code="signature.stale")


def _check_match(secret: str, timestamp: str | int, body: bytes, candidates: list[str], noun: str) -> None:
    if not secret:  # anyone can sign with an empty key: such a signature proves nothing
        raise UnverifiedCallback(f"{noun} cannot be verified: no signing secret set", code="signature.unset")
    expected = sign(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, c.strip().lower().encode()) for c in candidates):
        raise UnverifiedCallback(f"{noun} signature does not verify", code="signature.mismatch")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    signature_header: str,
    timestamp_header: str,
) -> None:
    """Return if the webhook is signed with `secret` within TOLERANCE of `now`; else UnverifiedCallback."""
    given = header(headers, signature_header)
    timestamp = header(headers, timestamp_header)
    if not given:
        raise UnverifiedCallback(f"webhook has no {signature_header} header", code="signature.missing")
    if not timestamp:
        raise UnverifiedCallback(f"webhook has no {timestamp_header} header", code="signature.missing")
    try:
        at = _seconds(timestamp.strip())
    except ValueError:
        raise UnverifiedCallback("webhook timestamp is not a number", code="signature.malformed") from None
    _check_fresh(at, now, "webhook")
    _check_match(secret, timestamp.strip(), body, [given], "webhook")


def verify_combined(
    secret: str, headers: Mapping[str, str], body: bytes, now: datetime, *, noun: str = "callback"
) -> None:
    """`verify` for the one-header layout (`X-Arrears-Signature: t=…,v1=…`)."""
    given = header(headers, COMBINED_HEADER)
    if not given:
        raise UnverifiedCallback(f"{noun} has no {COMBINED_HEADER} header", code="signature.missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in given.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise UnverifiedCallback(
                    f"{noun} signature timestamp is not an integer", code="signature.malformed"
                ) from None
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise UnverifiedCallback(f"{noun} signature lacks t= or v1=", code="signature.malformed")
    _check_fresh(timestamp, now, noun)
    _check_match(secret, timestamp, body, candidates, noun)
