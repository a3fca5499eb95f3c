"""A client of the Twilio Messages API (and of any gateway, or sandbox, that speaks it).

Wire format: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic
auth (the account SID and auth token, or an API key `SK…` and its secret), one message per request.
Callbacks (status callbacks and incoming messages) are form posts signed with `X-Twilio-Signature`
under the account's auth token. Our idempotency key goes out as an `Idempotency-Key` header:
the sandbox drops a resend with the same key, Twilio itself ignores the header, so after an
unknown outcome the client always looks the message up before it sends again.

Looking up: Twilio keeps nothing of ours on a message (no reference, no key: the resource shows
its SID, numbers, body and times), so a message is found by the SID its create answered, and
never by its text alone (DESIGN §5): an identical reminder sent to the same number days ago is
another message. The client remembers, per idempotency key, when it first tried the create and
the SID it got back; a create whose answer was lost is looked for only among the messages to the
number created since that try, less those it knows are other requests'. A request this client
never tried (one of a crashed process) is looked for among those created since it was decided
(`SmsRequest.since`, which dispatch gives from the outbox row), and without that instant cannot be
tied to any Twilio message: `status` answers None. Matching the text within the message's own
lifetime is the one way left where Twilio keeps no reference of ours: a difference from DESIGN §5's
"never by matching text", kept to the smallest window the outbox knows.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from pydantic import Field, SecretStr, model_validator

from integrations._http import error_for_status, retry_after
from integrations._masking import scrub
from integrations.callbacks import CallbackAnswer, header
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
from integrations.retries import call_with_retries
from integrations.sms._base import HttpProviderSettings, HttpSmsProvider
from integrations.sms._signing import twilio_signature, twilio_url_variants
from integrations.sms.protocol import (
    Callback,
    DeliveryReport,
    InboundMessage,
    SmsRequest,
    SmsResult,
    SmsStatus,
)

log = logging.getLogger(__name__)  # idempotency keys only: never a number, a text or a secret

__all__ = ["TwilioSettings", "TwilioSmsProvider", "error_from_response", "normalise_status"]


class TwilioSettings(HttpProviderSettings):
    base_url: str = Field(default="https://api.twilio.com", description="API root, without /2010-04-01.")
    account_sid: str = Field(min_length=1, description="Account SID (AC…): the Basic-auth user.")
    auth_token: SecretStr | None = Field(
        default=None,
        description="Auth token: the Basic-auth password (without an API key) and the callback signing key.",
    )
    api_key_sid: str | None = Field(
        default=None, description="API key SID (SK…): the Basic-auth user instead of the account SID."
    )
    api_key_secret: SecretStr | None = Field(default=None, description="The API key's secret.")
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

    @model_validator(mode="after")
    def _has_credentials(self) -> TwilioSettings:
        for name in ("auth_token", "api_key_secret"):
            value = getattr(self, name)
            if value is not None and not value.get_secret_value():
                raise ValueError(f"{name} is empty")
        if bool(self.api_key_sid) != bool(self.api_key_secret):
            raise ValueError("api_key_sid and api_key_secret go together")
        if self.auth_token is None and not self.api_key_sid:
            raise ValueError("auth_token, or api_key_sid with api_key_secret, is required")
        return self


# Twilio's API error codes (https://www.twilio.com/docs/api/errors) that we tell apart
_INVALID_ADDRESS = {21211, 21614, 21612}  # invalid To, not a mobile, no route to that number
_OPTED_OUT = {21610}  # the recipient texted STOP to our sender: Twilio refuses or fails every message
_OPTED_OUT_TEXT = frozenset(str(code) for code in _OPTED_OUT)  # as a status callback's ErrorCode
# Not 30004, "Message blocked": Twilio's page gives it five causes, of which an opt-out is one ("The
# recipient previously opted out"), beside "The device is unavailable", "The destination cannot
# receive SMS (for example, a landline destination)", "Carrier or compliance filtering blocked the
# content or sender" and a national Do-Not-Disturb list. Read as a STOP, a wave of 30004 from our
# filtered content would put every borrower under an opt-out that only their START lifts; read as
# our fault, a number that refuses us would be texted for ever. It stays an ordinary failure of
# the number: the policy's run of them marks it unreachable. Twilio's own opt-out says 21610.
# Delivery errors about the number itself, not this message: an unknown handset, a landline or an
# unreachable carrier (Twilio says not to retry those). Not 30003, "unreachable destination
# handset": the phone is off or out of coverage, which passes (providers.md: transient). It is
# one failed delivery, and marks the number only after the policy's run of them in a row.
_CANNOT_TEXT = frozenset({"30005", "30006"})
# Delivery errors about our message, our sender or our account, never the borrower's number
# (https://www.twilio.com/docs/api/errors): every number fails alike until a person changes the
# template or the sender, so none counts towards marking a number unreachable (and skip tracing it).
# 30001 queue overflow, 30002 account suspended, 30007 message filtered (content, spam), 30008
# unknown error (nothing said of the number), 30010 price above MaxPrice, 30022 10DLC rate limit,
# 30023 10DLC daily cap, 30027 T-Mobile daily limit, 30032 toll-free number not verified, 30034
# unregistered 10DLC number, 30036 validity period expired in the queue, 30500 Twilio internal error.
_SENDER_FAULT = frozenset(
    {
        "30001",
        "30002",
        "30007",
        "30008",
        "30010",
        "30022",
        "30023",
        "30027",
        "30032",
        "30034",
        "30036",
        "30500",
    }
)
# The account's or the sender's settings, never the borrower's number: every send fails alike until a
# person changes them, so dispatch stops and says so. 21408: the destination region is not enabled
# in the account's geo permissions; 30002: account suspended; 21606, 21212, 21603, 21659, 21660: the
# sender; 21705, 21701: the messaging service; 20003, 20005, 20404: authentication, account.
_CONFIG = {20003, 20005, 20404, 21212, 21408, 21603, 21606, 21659, 21660, 21701, 21705, 30002}
_STATUS: dict[str, SmsStatus] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "partially_delivered": "delivered",  # final: some segments reached the handset, so it is reachable
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


# How far Twilio's clock (a message's date_created) may be from ours when a lost create is looked for
_CLOCK_SKEW = timedelta(minutes=2)
# Creates remembered per client (key -> first try, SID): a process's provider lives for days and
# sends millions, and a lookup follows its create within one batch or one retry of it.
_REMEMBERED = 50_000


def _parse_time(value: str | None) -> datetime:
    return _when(value) or datetime.now(UTC)


def _when(value: str | None) -> datetime | None:
    """An RFC 2822 time of Twilio's (date_created, date_sent), or None if absent or unreadable."""
    if value:
        try:
            parsed = parsedate_to_datetime(value)
            if parsed.tzinfo is not None:
                return parsed
        except (TypeError, ValueError):
            pass
    return None


def _result(payload: Mapping[str, Any], key: str) -> SmsResult:
    code = payload.get("error_code")
    error_code = str(code) if code not in (None, "") else None
    return SmsResult(
        idempotency_key=key,
        provider_id=str(payload["sid"]),
        status=normalise_status(str(payload.get("status", "queued"))),
        accepted_at=_parse_time(payload.get("date_created")),
        error_code=error_code,
        number_cannot_text=error_code in _CANNOT_TEXT,
        recipient_opted_out=error_code in _OPTED_OUT_TEXT,
        sender_fault=error_code in _SENDER_FAULT,
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
        if settings.api_key_sid and settings.api_key_secret is not None:
            user, password = settings.api_key_sid, settings.api_key_secret.get_secret_value()
        else:
            assert settings.auth_token is not None  # the settings validator requires one of them
            user, password = settings.account_sid, settings.auth_token.get_secret_value()
        token = base64.b64encode(f"{user}:{password}".encode())
        self._headers["Authorization"] = "Basic " + token.decode()  # not in repr: that shows the settings
        self._api = f"/2010-04-01/Accounts/{settings.account_sid}"
        # idempotency key -> (when this client first tried its create, the SID Twilio answered)
        self._tried: OrderedDict[str, tuple[datetime, str | None]] = OrderedDict()
        self._tried_lock = threading.Lock()

    def _tried_at(self, key: str, sid: str | None = None) -> None:
        """Note a create of `key` about to go out (keeping the first try's time), or its SID."""
        with self._tried_lock:
            first, known = self._tried.pop(key, (datetime.now(UTC), None))
            self._tried[key] = (first, sid or known)
            while len(self._tried) > _REMEMBERED:
                self._tried.popitem(last=False)

    def _tried_of(self, key: str) -> tuple[datetime, str | None] | None:
        with self._tried_lock:
            return self._tried.get(key)

    def _sids_of_others(self, key: str) -> set[str]:
        with self._tried_lock:
            return {sid for k, (_, sid) in self._tried.items() if sid and k != key}

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
        self._tried_at(request.idempotency_key)
        response = self._request(
            "POST",
            f"{self._api}/Messages.json",
            form=form,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        if response.status_code not in (200, 201):
            raise error_from_response(response, request)
        try:
            result = _result(response.json(), request.idempotency_key)
        except (ValueError, KeyError, TypeError, AttributeError):  # accepted, but the answer is unreadable
            raise UnknownOutcome(
                "sms.twilio: unreadable answer to a create",
                code="bad_answer",
                idempotency_key=request.idempotency_key,
            ) from None
        self._tried_at(request.idempotency_key, result.provider_id)
        return result

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
        tried = self._tried_of(request.idempotency_key)
        if tried is None:
            # Not tried by this client (a crashed process's send): nothing at Twilio carries our
            # reference or key, so only the messages since it was decided can be it; without that
            # instant, a message with the same text to the same number is not this one (DESIGN §5).
            return None if request.since is None else self._search(request, request.since)
        first_try, sid = tried
        if sid is not None:
            return self.status(request, sid)
        return self._search(request, first_try)

    def _search(self, request: SmsRequest, first_try: datetime) -> SmsResult | None:
        """The message a create of `request` whose answer was lost made, if Twilio has one: among
        the messages to the number created since the first try (less the clock skew, at most
        `lookback_days` back), newest first, those this client knows are other requests' left
        out. An older message is never this one, whatever its text (DESIGN §5). No `DateSent`
        filter: a message still queued has no date_sent, and it is the one looked for."""
        since = max(first_try - _CLOCK_SKEW, datetime.now(UTC) - timedelta(days=self.settings.lookback_days))
        others = self._sids_of_others(request.idempotency_key)
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
                created = _when(message.get("date_created"))
                if (
                    created is not None
                    and created >= since
                    and str(message.get("sid")) not in others
                    and message.get("to") == request.to
                    and message.get("body") == request.body
                    and message.get("direction", "outbound-api") == "outbound-api"
                ):
                    return _result(message, request.idempotency_key)
            url, params = page.get("next_page_uri"), None
        return None

    # -- health ------------------------------------------------------------------------------

    def check(self) -> str:
        """Fetch the account resource: proves the base URL, the account SID and the credentials.

        A message lookup cannot: its 404 means "no such message" and a wrong path answers 404 too."""
        response = self._request("GET", f"{self._api}.json")
        if response.status_code != 200:
            error = error_from_response(response)
            if response.status_code == 404:
                error = ConfigError(f"no account resource at this base URL ({error.reason})", code=error.code)
            raise error
        try:
            status = str(response.json().get("status", "?"))
        except (ValueError, AttributeError):
            raise ConfigError("the account resource is not Twilio's JSON: is the base URL right?") from None
        return f"account {self.settings.account_sid[:6]}… is {status}"

    # -- callbacks ----------------------------------------------------------------------------

    def check_callbacks(self) -> None:
        if self.settings.auth_token is None or not self.settings.auth_token.get_secret_value():
            raise ConfigError(
                f"{self.info.entry_point}: auth_token is required to verify Twilio's callback signatures"
            )

    def _verified_form(self, headers: Mapping[str, str], body: bytes, url: str | None) -> dict[str, str]:
        """The callback's form, once its `X-Twilio-Signature` verifies over `url` (default port or not)."""
        given = header(headers, "X-Twilio-Signature")
        token = self.settings.auth_token.get_secret_value() if self.settings.auth_token else ""
        if not given:
            raise UnverifiedCallback("callback has no X-Twilio-Signature", code="signature.missing")
        if not token or not url:
            raise UnverifiedCallback("callback cannot be verified without the auth token and URL")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            pairs = None
        # A body that is not a form is signed over the URL alone (it then carries bodySHA256)
        signed = pairs if pairs is not None else []
        if not any(
            hmac.compare_digest(given.encode(), twilio_signature(token, candidate, signed).encode())
            for candidate in twilio_url_variants(url)
        ):
            raise UnverifiedCallback("callback signature does not verify", code="signature.mismatch")
        if pairs is None:
            raise InvalidCallback("callback is not form-encoded", code="body.malformed")
        return dict(pairs)

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None, event: str = "status"
    ) -> list[Callback]:
        form = self._verified_form(headers, body, url)
        sid = form.get("MessageSid") or form.get("SmsSid")
        if event == "inbound":
            sender, text = form.get("From", ""), form.get("Body")
            if not sender or text is None or not sid:
                raise InvalidCallback(
                    "incoming message lacks From, Body or MessageSid", code="body.malformed"
                )
            return [
                InboundMessage(
                    sender=sender,
                    text=text,
                    at=datetime.now(UTC),  # Twilio's webhooks carry no time of their own
                    message_id=sid,
                    recipient=form.get("To") or None,
                    vendor_keyword=(form.get("OptOutType") or "").upper() or None,
                    media=_media(form),
                )
            ]
        if event != "status":
            raise InvalidCallback(f"no callback event {event[:20]!r}", code="event.unknown")
        vendor_status = form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not vendor_status:
            raise InvalidCallback("status callback lacks MessageSid or MessageStatus", code="body.malformed")
        return [
            DeliveryReport(
                provider_id=sid,
                status=normalise_status(vendor_status),
                at=datetime.now(UTC),
                error_code=form.get("ErrorCode") or None,
                vendor_status=vendor_status,
                number_cannot_text=form.get("ErrorCode") in _CANNOT_TEXT,
                # providers.md: Twilio "reports opt-outs with error 21610": the number works
                recipient_opted_out=form.get("ErrorCode") in _OPTED_OUT_TEXT,
                sender_fault=form.get("ErrorCode") in _SENDER_FAULT,
                recipient=form.get("To") or None,
            )
        ]

    def acknowledge(self, event: str) -> CallbackAnswer:
        """Empty TwiML: Twilio takes any 2xx, and for an incoming message it means "no auto-reply"."""
        return CallbackAnswer(200, _TWIML_EMPTY, "text/xml")


def _media(form: Mapping[str, str]) -> tuple[str, ...]:
    """The URLs of an incoming MMS's attachments (`NumMedia`, `MediaUrl0`…), in order."""
    try:
        count = int(form.get("NumMedia") or 0)
    except ValueError:
        count = 0
    return tuple(url for n in range(min(count, 10)) if (url := form.get(f"MediaUrl{n}")))


_TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
