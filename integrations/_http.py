"""What the HTTP clients of every provider kind share: construction from settings, one exchange
with transport failures translated, Retry-After, and the status codes every vendor means alike.

Each client keeps its own wire format; the pieces here are the ones that were the same in all of
them. The court, letters and agency clients also share their vendors' habits: an httpx client
with a token (`VendorClient`), errors as `{"error": {"code", "message"}}` mapped the same way
but for a few vendor codes (`vendor_error`), instants in ISO 8601 (`iso_instant`), reads that
are safe to repeat (`read_once`) and creates the vendor deduplicates by key (`send_deduplicated`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from integrations.errors import (
    ConfigError,
    Duplicate,
    Permanent,
    ProviderError,
    Transient,
    UnknownOutcome,
    bounded_retry_after,
)
from integrations.metadata import ProviderInfo
from integrations.retries import RetryPolicy, call_with_retries

__all__ = [
    "SERVER_KEEP_ALIVE_S",
    "BearerAuth",
    "ConfiguredClient",
    "VendorClient",
    "VendorError",
    "error_for_status",
    "exchange",
    "iso_instant",
    "read_once",
    "retry_after",
    "send_deduplicated",
    "tls",
    "vendor_error",
]

T = TypeVar("T")

# Seconds the sandbox servers keep an idle connection: longer than a client
# keeps one (httpx: 5 s, uvicorn's own default too). At equal limits the server may close a
# connection just as the client reuses it, and that request fails: "connection reset by peer".
SERVER_KEEP_ALIVE_S = 65


@cache
def tls() -> ssl.SSLContext:
    """The TLS context of every client this process makes, the one httpx makes by default
    (certifi's authorities, or SSL_CERT_FILE or SSL_CERT_DIR as set when first asked for): made
    once, since loading the authorities takes ~30 ms, and a provider is made for each dispatch
    batch and each cycle. A context is safe to share between clients and threads."""
    return httpx.create_ssl_context()


def retry_after(response: httpx.Response) -> float | None:
    """Seconds in the answer's Retry-After (a number or an HTTP date), or None; within [0,
    `MAX_RETRY_AFTER`] (an hour), read the same by every client: a date past or a negative number
    is now, and a hint of years (`1e12`, `inf`, a date in 2100) is an hour, so that no client waits,
    and no message is parked, for longer than we would retry it anyway."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return bounded_retry_after(seconds)


def error_for_status(
    response: httpx.Response, reason: str, code: str, *, idempotency_key: str | None = None
) -> ProviderError | None:
    """The error a status means whatever the vendor: 429 and 503 not executed (`Transient`, with
    Retry-After), any other 5xx perhaps executed (`UnknownOutcome`), 401 and 403 refused credentials
    (`ConfigError`). None for the statuses the vendor's own codes decide."""
    status = response.status_code
    key = idempotency_key
    if status in (429, 503):
        return Transient(reason, retry_after=retry_after(response), code=code, idempotency_key=key)
    if status >= 500:
        return UnknownOutcome(reason, code=code, idempotency_key=key)
    if status in (401, 403):
        return ConfigError(reason, code=code, idempotency_key=key)
    return None


def exchange(
    send: Callable[[], httpx.Response],
    label: str,
    *,
    idempotency_key: str | None = None,
    no_answer: str = "no answer after the request was sent",
    no_answer_code: str | None = None,
) -> httpx.Response:
    """`send()`, with transport failures as `Transient` (surely not sent: no connection) or
    `UnknownOutcome` (read timeout, reset, protocol error: the request went out)."""
    try:
        return send()
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
        raise Transient(
            f"{label}: could not connect ({type(e).__name__})", idempotency_key=idempotency_key
        ) from None
    except httpx.TransportError as e:
        raise UnknownOutcome(
            f"{label}: {no_answer} ({type(e).__name__})", code=no_answer_code, idempotency_key=idempotency_key
        ) from None


class ConfiguredClient:
    """Base of the provider clients: built from settings, `repr` without secrets, a context manager.

    A subclass sets `info` and `settings_model`, takes its settings in `__init__` and implements
    `close()`."""

    info: ClassVar[ProviderInfo]
    settings_model: ClassVar[type[BaseModel]]
    settings: Any

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @classmethod
    def from_config(cls, base_url: str, credentials: Mapping[str, str]) -> Self:
        """Build from a base URL and a flat mapping; keys the settings do not know are ignored, so
        one mapping (a sandbox's) can serve every provider. Raises `ConfigError`, naming the
        fields at fault but never their values."""
        known = cls.settings_model.model_fields
        values: dict[str, Any] = {k: v for k, v in credentials.items() if k in known}
        values["base_url"] = base_url
        try:
            settings = cls.settings_model.model_validate(values)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}"
                for err in e.errors(include_input=False, include_url=False)
            )
            raise ConfigError(f"{cls.info.entry_point} settings are invalid: {problems}") from None
        return cls(settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"  # SecretStr fields print as '**********'

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- what the court, letters and agency clients share ----------------------------------------------


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>` on every request; the token stays a `SecretStr` until sent."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class VendorClient(ConfiguredClient):
    """Base of the court, letters and agency clients: one kept-alive httpx client to the vendor's
    `api_root` under the configured base URL, with the settings' read and connect timeouts, our
    `user_agent`, the API key as a Bearer token (a subclass overrides `auth` for another scheme)
    and no redirects (a redirected POST could go out twice, or elsewhere); retries capped by the
    settings; a clock that webhook timestamps are checked against (a test's, or the wall's).

    A subclass sets `info`, `settings_model`, `api_root` and `user_agent`."""

    api_root: ClassVar[str]
    user_agent: ClassVar[str]

    def __init__(
        self,
        settings: Any,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.retry_policy = RetryPolicy(
            attempts=settings.retry_attempts, total_seconds=settings.retry_total_seconds
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + self.api_root,
            transport=transport,
            auth=self.auth(),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            headers={"User-Agent": self.user_agent},
            follow_redirects=False,
            verify=tls(),
        )

    def auth(self) -> httpx.Auth:
        """How requests are authenticated: the settings' `api_key` as a Bearer token."""
        return BearerAuth(self.settings.api_key)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class VendorError:
    """A non-2xx answer, read once: the HTTP status, the vendor's code and message, and the
    error object itself (for the fields only one vendor sends)."""

    status: int
    code: str
    reason: str
    body: Mapping[str, Any]


def vendor_error(
    response: httpx.Response,
    *,
    idempotency_key: str | None,
    no_message: str,
    duplicate_code: str | None,
    specific: Callable[[VendorError], ProviderError | None] = lambda error: None,
) -> ProviderError:
    """Translate a non-2xx answer whose body is `{"error": {"code", "message"}}` into our error
    tree. The vendor's `specific` reading comes first (not found, an unusable address …); then
    the statuses every vendor means alike (`error_for_status`); then a 404 is a wrong base URL
    (no such route), a 409 with `duplicate_code` (any 409 when None) a `Duplicate`, and the rest
    `Permanent`. `no_message` is the reason when the body carries none."""
    try:
        body = response.json()["error"]
        code = str(body.get("code") or f"http_{response.status_code}")
        reason = str(body.get("message") or response.reason_phrase)
    except (ValueError, KeyError, TypeError, AttributeError):
        body, code, reason = {}, f"http_{response.status_code}", no_message
    error = VendorError(response.status_code, code, reason, body)
    key = idempotency_key
    if (found := specific(error)) is not None:
        return found
    if (found := error_for_status(response, reason, code, idempotency_key=key)) is not None:
        return found
    if error.status == 404:
        return ConfigError(reason, code=code, idempotency_key=key)
    if error.status == 409 and duplicate_code in (None, code):
        return Duplicate(reason, code=code, idempotency_key=key)
    return Permanent(code, reason, idempotency_key=key)


def iso_instant(value: Any) -> datetime:
    """An ISO 8601 instant as vendors write it (`…Z` included); one without an offset is UTC."""
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def read_once(
    send: Callable[[], httpx.Response],
    label: str,
    *,
    what: str,
    error: Callable[[httpx.Response], ProviderError],
    parse: Callable[[Any], T],
) -> T:
    """One try of a call that is safe to repeat (a status read, a cancel): any answer but 200 is
    `error(response)`, and every unknown outcome (no answer, a 5xx, an unreadable answer) is
    `Transient`, since asking again cannot do anything twice. `what` names the call in reasons."""
    try:
        response = exchange(send, label, no_answer=f"no answer to {what}")
    except UnknownOutcome as e:
        raise Transient(str(e.reason), code=e.code) from None
    if response.status_code != 200:
        found = error(response)
        if isinstance(found, UnknownOutcome):
            raise Transient(found.reason, code=found.code)
        raise found
    try:
        return parse(response.json())
    except (ValueError, KeyError, TypeError):
        raise Transient(f"{label}: unreadable answer to {what}", code="bad_answer") from None


def send_deduplicated(
    once: Callable[[], T], policy: RetryPolicy, *, log: logging.Logger, label: str, key: str
) -> T:
    """`once()` with retries; on an unknown outcome, the whole call once more with the same key:
    a vendor that deduplicates by key answers the first result if it went through, and acts once
    if it did not. Only once: a second unknown outcome goes up to the caller."""
    try:
        return call_with_retries(once, policy)
    except UnknownOutcome:
        log.warning("%s: outcome unknown for %s, sending it again with the same key", label, key)
        return call_with_retries(once, policy)
