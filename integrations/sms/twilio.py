"""A client of the Twilio Messages API (and of any gateway, or sandbox, that speaks it).

Wire format: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic
auth, one message per request. Our idempotency key goes out as an `Idempotency-Key` header:
the sandbox drops a resend with the same key, Twilio itself ignores the header, so after an
unknown outcome the client always looks the message up before it sends again.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from pydantic import Field, SecretStr, model_validator

from integrations._http import error_for_status, retry_after
from integrations._masking import scrub
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
)
from integrations.metadata import ProviderInfo
from integrations.retries import call_with_retries
from integrations.sms._base import HttpProviderSettings, HttpSmsProvider
from integrations.sms._signing import twilio_signature
from integrations.sms.protocol import DeliveryReport, SmsRequest, SmsResult, SmsStatus

log = logging.getLogger(__name__)  # idempotency keys only: never a number, a text or a secret

__all__ = ["TwilioSettings", "TwilioSmsProvider", "error_from_response", "normalise_status"]


class TwilioSettings(HttpProviderSettings):
    base_url: str = Field(default="https://api.twilio.com", description="API root, without /2010-04-01.")
    account_sid: str = Field(min_length=1, description="Account SID (AC…): the Basic-auth user.")
    auth_token: SecretStr = Field(
        description="Auth token: the Basic-auth password and the callback signing key."
    )
    from_number: str | None = Field(
        default=None, description="Sender number (E.164), unless a messaging service is set."
    )
    messaging_service_sid: str | None = Field(
        default=None, description="Messaging service (MG…), instead of From."
    )
    status_callback: str | None = Field(default=None, description="URL of our webhook for delivery reports.")
    concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight per batch.")

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioSettings:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("from_number or messaging_service_sid is required")
        return self


# Twilio's API error codes (https://www.twilio.com/docs/api/errors) that we tell apart
_INVALID_ADDRESS = {21211, 21614, 21612, 21408}  # invalid To, not a mobile, unreachable route, region off
_OPTED_OUT = {21610}
_CONFIG = {20003, 20005, 20404, 21212, 21606, 21603, 21659, 21705}  # auth, account, sender, service
_STATUS: dict[str, SmsStatus] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}


def normalise_status(vendor_status: str) -> SmsStatus:
    return _STATUS.get(vendor_status, "queued")


def error_from_response(response: httpx.Response, request: SmsRequest | None = None) -> ProviderError:
    """Translate a non-2xx answer into our error tree (pure: unit-tested with `httpx.MockTransport`)."""
    key = request.idempotency_key if request else None
    try:
        payload = response.json()
        code = int(payload.get("code") or 0)
        message = str(payload.get("message") or response.reason_phrase)
    except (ValueError, AttributeError, TypeError):
        code, message = 0, response.reason_phrase or "no error message"
    reason = scrub(message, request.to) if request else scrub(message)
    status = response.status_code
    code_text = str(code) if code else f"http_{status}"
    if code == 20429:  # throttled, whatever the status says
        return Transient(reason, retry_after=retry_after(response), code=code_text, idempotency_key=key)
    if (error := error_for_status(response, reason, code_text, idempotency_key=key)) is not None:
        return error
    if code in _CONFIG:
        return ConfigError(reason, code=code_text, idempotency_key=key)
    if status == 409:
        return Duplicate(reason, code=code_text, idempotency_key=key)
    if code in _INVALID_ADDRESS:
        return InvalidAddress(code_text, reason, idempotency_key=key)
    if code in _OPTED_OUT:
        return OptedOut(code_text, reason, idempotency_key=key)
    if status == 404:
        return ConfigError(reason, code=code_text, idempotency_key=key)  # wrong account or base URL
    return Permanent(code_text, reason, idempotency_key=key)


def _parse_time(value: str | None) -> datetime:
    if value:
        try:
            parsed = parsedate_to_datetime(value)
            if parsed.tzinfo is not None:
                return parsed
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _result(payload: Mapping[str, Any], key: str) -> SmsResult:
    code = payload.get("error_code")
    return SmsResult(
        idempotency_key=key,
        provider_id=str(payload["sid"]),
        status=normalise_status(str(payload.get("status", "queued"))),
        accepted_at=_parse_time(payload.get("date_created")),
        error_code=str(code) if code not in (None, "") else None,
    )


class TwilioSmsProvider(HttpSmsProvider):
    """One HTTP request per message, `settings.concurrency` in flight, connections kept alive."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="twilio",
        kind="sms",
        title="Twilio-compatible Messages API",
        settings=TwilioSettings,
        batch_size=1,
        deduplicates=False,  # Twilio ignores Idempotency-Key; the sandbox honours it
        setup_url="https://www.twilio.com/docs/messaging/api/message-resource",
    )
    settings_model: ClassVar[type[HttpProviderSettings]] = TwilioSettings
    settings: TwilioSettings

    def __init__(self, settings: TwilioSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings, transport=transport)
        token = base64.b64encode(f"{settings.account_sid}:{settings.auth_token.get_secret_value()}".encode())
        self._headers["Authorization"] = "Basic " + token.decode()  # not in repr: that shows the settings
        self._api = f"/2010-04-01/Accounts/{settings.account_sid}"

    # -- sending ----------------------------------------------------------------------------

    def send(self, request: SmsRequest) -> SmsResult:
        try:
            return call_with_retries(lambda: self._create(request), self.retry_policy)
        except UnknownOutcome:
            if not self.settings.reconcile_unknown:
                raise
            found = self._reconcile(request)
            if found is not None:
                log.warning("sms.twilio: outcome unknown for %s, found it sent", request.idempotency_key)
                return found
            log.warning(
                "sms.twilio: outcome unknown for %s, not found: sending again", request.idempotency_key
            )
            # not found: never executed. The same Idempotency-Key goes out again, so a gateway
            # that deduplicates (the sandbox) still drops it if the lookup was merely too early.
            return call_with_retries(lambda: self._create(request), self.retry_policy)

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[SmsResult | ProviderError]:
        seen: set[str] = set()
        outcomes: list[SmsResult | ProviderError | None] = [None] * len(requests)
        todo: list[int] = []
        for i, request in enumerate(requests):
            if request.idempotency_key in seen:
                outcomes[i] = Duplicate(
                    "idempotency key repeated within one batch", idempotency_key=request.idempotency_key
                )
            else:
                seen.add(request.idempotency_key)
                todo.append(i)
        try:
            sent = self._map_bounded(
                lambda i: self._send_outcome(requests[i]), todo, self.settings.concurrency
            )
        except ConfigError as e:
            for i, outcome in zip(todo, e.outcomes or [], strict=False):
                outcomes[i] = outcome
            e.outcomes = list(outcomes)
            raise
        for i, outcome in zip(todo, sent, strict=True):
            outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _send_outcome(self, request: SmsRequest) -> SmsResult | ProviderError:
        try:
            return self.send(request)
        except ConfigError:
            raise
        except ProviderError as e:
            return e

    def _create(self, request: SmsRequest) -> SmsResult:
        s = self.settings
        form = {"To": request.to, "Body": request.body}
        if s.messaging_service_sid:
            form["MessagingServiceSid"] = s.messaging_service_sid
        else:
            form["From"] = s.from_number or ""
        if s.status_callback:
            form["StatusCallback"] = s.status_callback
        response = self._request(
            "POST",
            f"{self._api}/Messages.json",
            form=form,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        if response.status_code not in (200, 201):
            raise error_from_response(response, request)
        try:
            return _result(response.json(), request.idempotency_key)
        except (ValueError, KeyError, TypeError, AttributeError):  # accepted, but the answer is unreadable
            raise UnknownOutcome(
                "sms.twilio: unreadable answer to a create",
                code="bad_answer",
                idempotency_key=request.idempotency_key,
            ) from None

    def _reconcile(self, request: SmsRequest) -> SmsResult | None:
        try:
            return call_with_retries(lambda: self.status(request), self.retry_policy)
        except ProviderError as e:
            raise UnknownOutcome(
                f"outcome unknown and the status lookup failed: {e}", idempotency_key=request.idempotency_key
            ) from None

    # -- looking up ---------------------------------------------------------------------------

    def status(self, request: SmsRequest, provider_id: str | None = None) -> SmsResult | None:
        if provider_id:
            response = self._request("GET", f"{self._api}/Messages/{provider_id}.json")
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise error_from_response(response, request)
            return _result(response.json(), request.idempotency_key)
        # No id: search the recent messages to this number (newest first) for the same text.
        # Identical text to the same number within the window counts as sent: a missed reminder
        # is cheaper than a duplicate collection message (Reg F 1006.14 contact frequency).
        url: str | None = f"{self._api}/Messages.json"
        params: dict[str, str] | None = {"To": request.to, "PageSize": "100"}
        for _ in range(5):  # pages
            if url is None:
                break
            response = self._request("GET", url, params=params)
            if response.status_code != 200:
                raise error_from_response(response, request)
            page = response.json()
            for message in page.get("messages", []):
                if message.get("body") == request.body and message.get("to") == request.to:
                    return _result(message, request.idempotency_key)
            url, params = page.get("next_page_uri"), None
        return None

    # -- callbacks ----------------------------------------------------------------------------

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> list[DeliveryReport]:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise InvalidCallback("status callback is not form-encoded") from None
        if url is not None:
            given = {k.lower(): v for k, v in headers.items()}.get("x-twilio-signature", "")
            expected = twilio_signature(self.settings.auth_token.get_secret_value(), url, pairs)
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise InvalidCallback("status callback signature does not verify")
        form = dict(pairs)
        sid = form.get("MessageSid") or form.get("SmsSid")
        vendor_status = form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not vendor_status:
            raise InvalidCallback("status callback lacks MessageSid or MessageStatus")
        return [
            DeliveryReport(
                provider_id=sid,
                status=normalise_status(vendor_status),
                at=datetime.now(UTC),  # Twilio's callbacks carry no time of their own
                error_code=form.get("ErrorCode") or None,
                vendor_status=vendor_status,
            )
        ]
