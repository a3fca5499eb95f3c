"""An arrears SMS provider for a generic JSON-over-HTTP gateway (see README.md for the wire format).

It uses only arrears' public provider API: the protocol and types (`integrations.sms.protocol`),
the error tree (`integrations.errors`), the callback answer (`integrations.callbacks`), capped
retries (`integrations.retries`) and the metadata (`integrations.metadata`). Each step of
docs/adding-a-provider.md is marked `# step N`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from integrations.callbacks import CallbackAnswer
from integrations.errors import (
    ConfigError,
    Duplicate,
    InvalidAddress,
    InvalidCallback,
    OptedOut,
    Permanent,
    ProviderError,
    Transient,
    UnknownOutcome,
    UnverifiedCallback,
)
from integrations.metadata import ProviderInfo
from integrations.retries import RetryPolicy, call_with_retries
from integrations.sms.protocol import (
    Callback,
    DeliveryReport,
    InboundMessage,
    SmsRequest,
    SmsResult,
    SmsStatus,
)

__all__ = ["JsonHttpSettings", "JsonHttpSmsProvider", "error_from_response", "signature"]

log = logging.getLogger(__name__)  # idempotency keys only: never a number, a text or a token

SIGNATURE_HEADER = "X-Gateway-Signature"
_STATUS: dict[str, SmsStatus] = {  # the gateway's words -> ours
    "accepted": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "expired": "undelivered",
}
_PHONE = re.compile(r"\+?\d{7,15}")


def _mask(text: str) -> str:
    """Error text reaches logs: keep a number's first 4 and last 2 characters only."""
    return _PHONE.sub(lambda m: m.group(0)[:4] + "*" * (len(m.group(0)) - 6) + m.group(0)[-2:], text)


def signature(token: str, body: bytes) -> str:
    """`X-Gateway-Signature` of a callback body: `sha256=` + hex HMAC-SHA256 keyed with the token."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


# step 2: settings, validated; secrets are SecretStr, so they print as '**********'
class JsonHttpSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Root URL of the gateway (or of its sandbox), without /v1.")
    auth_token: SecretStr = Field(description="Bearer token of the account; also signs callbacks.")
    sender: str = Field(default="ARREARS", min_length=1, max_length=11, description="Alphanumeric sender id.")
    callback_url: str | None = Field(default=None, description="Our webhook for delivery reports.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Read timeout of one HTTP request.")
    connect_timeout_seconds: float = Field(default=3.0, gt=0, description="Connect timeout.")
    concurrency: int = Field(default=8, ge=1, le=64, description="Requests in flight per batch.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per request, the first included.")
    retry_total_seconds: float = Field(
        default=30.0, gt=0, description="Time budget of one send, waits included."
    )


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


# step 3: every vendor answer becomes a class of arrears' error tree, at the boundary
def error_from_response(response: httpx.Response, key: str | None = None) -> ProviderError:
    try:
        error = response.json()["error"]
        code, reason = str(error["code"]), _mask(str(error.get("message", "")))
    except (ValueError, KeyError, TypeError):
        code, reason = f"http_{response.status_code}", response.reason_phrase or "no error message"
    status = response.status_code
    if status in (429, 503):  # throttled or down: not sent, safe to send again
        return Transient(reason, retry_after=_retry_after(response), code=code, idempotency_key=key)
    if status >= 500:  # may have been sent: look it up before sending again
        return UnknownOutcome(reason, code=code, idempotency_key=key)
    if status in (401, 403, 404):  # wrong token, or wrong base URL
        return ConfigError(reason, code=code, idempotency_key=key)
    if status == 409:
        return Duplicate(reason, code=code, idempotency_key=key)
    if code == "invalid_number":
        return InvalidAddress(code, reason, idempotency_key=key)
    if code == "opted_out":
        return OptedOut(code, reason, idempotency_key=key)
    return Permanent(code, reason, idempotency_key=key)


def _instant(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _result(payload: Mapping[str, Any], key: str) -> SmsResult:
    return SmsResult(
        idempotency_key=key,
        provider_id=str(payload["id"]),
        status=_STATUS.get(str(payload.get("status")), "queued"),
        accepted_at=_instant(payload["created_at"]),
        error_code=payload.get("error_code") or None,
    )


class JsonHttpSmsProvider:
    """One request per message over kept-alive connections, `settings.concurrency` in flight."""

    # step 1: the protocol's `info`, with the metadata operators and tools read
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="jsonhttp",
        kind="sms",
        title="Generic JSON-over-HTTP SMS gateway (example plugin)",
        settings=JsonHttpSettings,
        batch_size=1,
        deduplicates=True,
        setup_url="https://example.invalid/sms-gateway/docs",
    )

    def __init__(self, settings: JsonHttpSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        # step 4: retries are capped in attempts and in time; only Transient is retried
        self.retry_policy = RetryPolicy(
            attempts=settings.retry_attempts, total_seconds=settings.retry_total_seconds
        )
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/v1",
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=settings.concurrency),
            headers={"Authorization": f"Bearer {settings.auth_token.get_secret_value()}"},
        )

    @classmethod
    def from_config(cls, base_url: str, credentials: Mapping[str, str]) -> Self:
        """What `build_provider` calls: unknown keys ignored, bad fields named, their values never."""
        values: dict[str, Any] = {k: v for k, v in credentials.items() if k in JsonHttpSettings.model_fields}
        try:
            settings = JsonHttpSettings.model_validate({**values, "base_url": base_url})
        except ValidationError as e:
            fields = ", ".join(".".join(map(str, err["loc"])) for err in e.errors(include_input=False))
            raise ConfigError(f"sms.jsonhttp settings are invalid: {fields}") from None
        return cls(settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------------

    def send(self, request: SmsRequest) -> SmsResult:
        try:
            return call_with_retries(lambda: self._create(request), self.retry_policy)
        except UnknownOutcome:
            found = self.status(request)  # this gateway finds a message by our reference
            if found is not None:
                return found
            log.warning(
                "sms.jsonhttp: outcome unknown for %s, not found: sending again", request.idempotency_key
            )
            return call_with_retries(lambda: self._create(request), self.retry_policy)

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult | ProviderError]:
        outcomes: list[SmsResult | ProviderError | None] = [None] * len(requests)
        todo: list[int] = []
        seen: set[str] = set()
        for i, request in enumerate(requests):
            if request.idempotency_key in seen:
                outcomes[i] = Duplicate(
                    "idempotency key repeated within one batch", idempotency_key=request.idempotency_key
                )
            else:
                seen.add(request.idempotency_key)
                todo.append(i)
        pending = iter(todo)
        lock = threading.Lock()
        stop: list[ConfigError] = []

        def worker() -> None:
            while not stop:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                try:
                    outcomes[i] = self.send(requests[i])
                except ConfigError as e:  # nothing will succeed: stop starting new ones
                    stop.append(e)
                except ProviderError as e:  # this message's outcome; the batch goes on
                    outcomes[i] = e

        threads = [
            threading.Thread(target=worker, daemon=True)
            for _ in range(min(self.settings.concurrency, len(todo)))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if stop:
            stop[0].outcomes = list(outcomes)  # None: not attempted
            raise stop[0]
        return [o for o in outcomes if o is not None]

    def _create(self, request: SmsRequest) -> SmsResult:
        message = {
            "to": request.to,
            "text": request.body,
            "sender": self.settings.sender,
            "reference": request.idempotency_key,
            "callback_url": self.settings.callback_url,
        }
        response = self._http(
            "POST", "/messages", json=message, headers={"Idempotency-Key": request.idempotency_key}
        )
        if response.status_code not in (200, 201):
            raise error_from_response(response, request.idempotency_key)
        return _result(response.json(), request.idempotency_key)

    # -- looking up -------------------------------------------------------------------------------

    def status(self, request: SmsRequest, provider_id: str | None = None) -> SmsResult | None:
        if provider_id:
            response = self._http("GET", f"/messages/{provider_id}")
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise error_from_response(response, request.idempotency_key)
            return _result(response.json(), request.idempotency_key)
        response = self._http("GET", "/messages", params={"reference": request.idempotency_key})
        if response.status_code != 200:
            raise error_from_response(response, request.idempotency_key)
        found = response.json().get("messages", [])
        return _result(found[0], request.idempotency_key) if found else None

    def check(self) -> str:
        """What `arrears providers list --check` calls: an authenticated read of the messages
        collection, which exists whatever we sent, so a 404 means a wrong base URL (one ending in
        `/v1`, which this client adds). Without it the check looked a message id up, and a 404
        for "no such message" passed a base URL every send would fail on."""
        response = self._http("GET", "/messages", params={"reference": "arrears-health-check"})
        if response.status_code != 200:
            raise error_from_response(response)
        return "authenticated lookup answered"

    # -- callbacks --------------------------------------------------------------------------------

    # step 6: inbound. Verify first (UnverifiedCallback: 403), then read (InvalidCallback: 400);
    # the webhook server stores what comes back and answers with `acknowledge`.
    def check_callbacks(self) -> None:
        if not self.settings.auth_token.get_secret_value():
            raise ConfigError("sms.jsonhttp: auth_token is empty: callbacks cannot be verified")

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[Callback]:
        given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        expected = signature(self.settings.auth_token.get_secret_value(), body)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise UnverifiedCallback("callback signature does not verify")
        try:
            events = json.loads(body)["events"]
            if event == "inbound":  # {"events": [{"id", "from", "text", "at"}]}
                return [
                    InboundMessage(
                        sender=str(e["from"]),
                        text=str(e["text"]),
                        at=_instant(e["at"]),
                        message_id=str(e["id"]),
                    )
                    for e in events
                ]
            if event != "status":
                raise InvalidCallback(f"no callback event {event[:20]!r}")
            return [
                DeliveryReport(
                    provider_id=str(e["id"]),
                    status=_STATUS[str(e["status"])],
                    at=_instant(e["at"]),
                    error_code=e.get("error_code") or None,
                    reference=e.get("reference"),
                    vendor_status=str(e["status"]),
                )
                for e in events
            ]
        except (ValueError, KeyError, TypeError):
            raise InvalidCallback("callback is not a list of events") from None

    def acknowledge(self, event: str) -> CallbackAnswer:
        return CallbackAnswer(204)

    # -- HTTP -------------------------------------------------------------------------------------

    def _http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One exchange: no connection is Transient, a request sent but unanswered is UnknownOutcome."""
        try:
            return self._client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise Transient(f"sms.jsonhttp: could not connect ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise UnknownOutcome(f"sms.jsonhttp: no answer after sending ({type(e).__name__})") from None
