"""Request and callback signatures of the two vendor wire formats, shared by clients and sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["aliyun_percent_encode", "aliyun_signature", "aliyun_string_to_sign", "twilio_signature"]


def aliyun_percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's RPC signature wants it: space as %20, `*` as %2A, `~` kept."""
    return quote(value, safe="-_.~")


def aliyun_string_to_sign(method: str, params: Iterable[tuple[str, str]]) -> str:
    """`METHOD&%2F&` + the encoded canonical query (parameters sorted by name, Signature left out)."""
    canonical = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}"
        for k, v in sorted(params)
        if k != "Signature"
    )
    return f"{method.upper()}&%2F&{aliyun_percent_encode(canonical)}"


def aliyun_signature(secret: str, method: str, params: Iterable[tuple[str, str]]) -> str:
    """Base64 of HMAC-SHA1 keyed with the AccessKey secret followed by `&`."""
    digest = hmac.new(
        (secret + "&").encode(), aliyun_string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """`X-Twilio-Signature`: base64 HMAC-SHA1 over the full URL + each POST name and value, sorted."""
    payload = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
