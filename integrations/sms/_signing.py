"""Request and callback signatures of the two vendor wire formats, shared by clients and sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "ACS3",
    "aliyun_percent_encode",
    "aliyun_signature",
    "aliyun_signed_form",
    "aliyun_string_to_sign",
    "aliyun_v3_authorization",
    "aliyun_v3_canonical_request",
    "twilio_signature",
    "twilio_url_variants",
]

ACS3 = "ACS3-HMAC-SHA256"  # the V3 signature the official SDKs send by default


_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_REPLACED_AT_MOST = 24  # distinct bytes to escape one `bytes.replace` each; beyond, `quote`


def aliyun_percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's RPC signature wants it: space as %20, `*` as %2A, `~` kept.

    `quote(value, safe="-_.~")`, byte for byte. `quote` escapes in a Python loop over every byte,
    and a SendBatchSms form carries ~20 KB, encoded by the client and again by the sandbox to check
    the signature (~4 µs a message each, on the dispatch's cores). The JSON of an ASCII batch needs
    only a few distinct bytes escaped, each one `bytes.replace` in C (`%` first: the escapes add
    more). Text beyond ASCII goes to `quote`: a batch of Chinese names holds some 70 distinct bytes
    to escape, and no way through C found measured faster."""
    if not value.isascii():
        return quote(value, safe="-_.~")
    data = value.encode()
    escaped = set(data.translate(None, _UNRESERVED))
    if not escaped:
        return value
    if len(escaped) > _REPLACED_AT_MOST:
        return quote(value, safe="-_.~")
    if ord("%") in escaped:
        data = data.replace(b"%", b"%25")
        escaped.discard(ord("%"))
    for byte in escaped:
        data = data.replace(bytes((byte,)), b"%%%02X" % byte)
    return data.decode("ascii")


def _canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The parameters sorted by name, names and values encoded (Signature left out)."""
    return "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}"
        for k, v in sorted(params)
        if k != "Signature"
    )


def _to_sign(method: str, canonical: str) -> str:
    # Encoding the canonical query again: its names and values are encoded already, so only its
    # `%`, `=` and `&` change. The same as `aliyun_percent_encode(canonical)`, without walking a
    # batch's ~25 KB byte by byte (a third of the signing, on the client and again at the server).
    encoded = canonical.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
    return f"{method.upper()}&%2F&{encoded}"


def _signed(secret: str, to_sign: str) -> str:
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_string_to_sign(method: str, params: Iterable[tuple[str, str]]) -> str:
    """`METHOD&%2F&` + the encoded canonical query (parameters sorted by name, Signature left out)."""
    return _to_sign(method, _canonical_query(params))


def aliyun_signature(secret: str, method: str, params: Iterable[tuple[str, str]]) -> str:
    """Base64 of HMAC-SHA1 keyed with the AccessKey secret followed by `&`."""
    return _signed(secret, aliyun_string_to_sign(method, params))


def aliyun_signed_form(secret: str, method: str, params: Iterable[tuple[str, str]]) -> str:
    """The form body of a signed call: the canonical query the signature was computed on, then the
    `Signature`. Each value is encoded once, for both (RFC 3986 encoding is form encoding, with
    `%20` for a space): a batch's ~20 KB encoded a second time by `urlencode` cost as much again."""
    canonical = _canonical_query(params)
    signed = f"Signature={aliyun_percent_encode(_signed(secret, _to_sign(method, canonical)))}"
    return f"{canonical}&{signed}" if canonical else signed


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """`X-Twilio-Signature`: base64 HMAC-SHA1 over the full URL + each POST name and value, sorted.

    As Twilio's own `RequestValidator.compute_signature` builds it: the names sorted, and under a
    name repeated in the form (`MediaUrl`, a gateway's array) each of its values sorted, a value
    given twice signed once (the SDK walks `sorted(set(values))`). Sorting the (name, value) pairs
    orders them alike; a repeated pair signed twice made a form with a duplicate pair fail."""
    payload = url + "".join(k + v for k, v in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_url_variants(url: str) -> list[str]:
    """`url`, then the same with its port left off, or with the scheme's default port written out.

    Twilio signs the URL as configured in its console, and a proxy may add or drop `:443`; Twilio's
    own `RequestValidator` accepts either form, and a URL with any port also signed without it
    (its `remove_port`: Twilio's signing drops ports inconsistently), so a receiver must too."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or not parts.hostname:
        return [url]
    try:
        port = parts.port
    except ValueError:
        return [url]
    userinfo, at, hostport = parts.netloc.rpartition("@")
    # the host as written (its case kept, an IPv6 address in its brackets), without the port
    host = hostport.rstrip(":") if port is None else hostport[: hostport.rfind(":")]
    other = userinfo + at + (f"{host}:{default}" if port is None else host)
    return [url, urlunsplit(parts._replace(netloc=other))]


def aliyun_v3_canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    hashed_payload: str,
) -> str:
    """The canonical request of Aliyun's V3 signature (`ACS3-HMAC-SHA256`), as the official SDK
    builds it: method, path, the query sorted by name with values percent-encoded (`~` kept), each
    signed header `name:value` (lower-case name, trimmed value), their names, the payload's hash."""
    pairs = sorted(query)
    canonical_query = "&".join(f"{k}={quote(v, safe='~')}" for k, v in pairs)
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value.strip())
    names = sorted({n.lower() for n in signed_headers})
    canonical_headers = "".join(f"{n}:{','.join(sorted(lowered.get(n, [''])))}\n" for n in names)
    return "\n".join(
        [method.upper(), path or "/", canonical_query, canonical_headers, ";".join(names), hashed_payload]
    )


def aliyun_v3_authorization(secret: str, access_key_id: str, canonical_request: str, signed: str) -> str:
    """The `Authorization` header value of a V3 request with this canonical request."""
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    signature = hmac.new(secret.encode(), f"{ACS3}\n{digest}".encode(), hashlib.sha256).hexdigest()
    return f"{ACS3} Credential={access_key_id},SignedHeaders={signed},Signature={signature}"
