"""A client of Lob's print-and-mail API (and of the sandbox imitating it): letters that reach people.

- `POST /v1/letters`: multipart form, `to[...]` and `from[...]` addresses in Lob's field names,
  `file` (the PDF), `mail_type=usps_first_class` with `extra_service` for certified mail,
  `use_type=operational` (a notice, not marketing), `metadata[idempotency_key]`; the
  `Idempotency-Key` header makes a resend answer the first letter instead of mailing a second.
- `GET /v1/letters/{id}`: the letter with its `tracking_events`.
- `GET /v1/letters?metadata[idempotency_key]=…`: the letter sent under our key, asked before a
  letter in doubt goes again (Lob keeps an idempotency key for 24 hours, the metadata for good).
- Webhooks: one event per POST, signed `Lob-Signature` (hex HMAC-SHA256 of `timestamp + "." +
  body` with the webhook secret) and `Lob-Signature-Timestamp`; older than 5 minutes is refused.

Auth is HTTP Basic with the API key as user and no password; errors are
`{"error": {"message", "status_code", "code"}}`. Because Lob deduplicates by key, an unknown
outcome (a 5xx or a timeout after sending) is reconciled by sending again with the same key
within the call, and by `find` before any later resend.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import date
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations import _hmac
from integrations._http import (
    VendorClient,
    VendorError,
    exchange,
    iso_instant,
    read_once,
    retry_after,
    send_deduplicated,
    vendor_error,
)
from integrations.errors import (
    ConfigError,
    InvalidAddress,
    InvalidCallback,
    ProviderError,
    Transient,
    UnknownOutcome,
)
from integrations.letters._wire import KIND_OF_EVENT, KIND_OF_NAME, extra_service, mail_type_of
from integrations.letters.protocol import Letter, LetterNotFound, LetterRequest, PostalAddress, TrackingEvent
from integrations.metadata import ProviderInfo
from integrations.retries import call_with_retries

log = logging.getLogger(__name__)  # idempotency keys and letter ids only: never an address or a secret

__all__ = [
    "API_ROOT",
    "NAME_LIMIT",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "LobLettersProvider",
    "LobSettings",
    "address_fields",
    "error_from_response",
    "letter_from_wire",
    "wire_key",
]

API_ROOT = "/v1"
SIGNATURE_HEADER = "Lob-Signature"
TIMESTAMP_HEADER = "Lob-Signature-Timestamp"
# Lob: an `Idempotency-Key` of at most 256 characters; metadata values of at most 500, without `"` or `\\`.
KEY_LIMIT = 256
_UNSAFE = frozenset('"\\')
# Lob: an address's `name` (and `company`) "must be no longer than 40 characters".
NAME_LIMIT = 40
# Lob's codes for an address it will not mail to: the contact point is unusable, not the request.
_ADDRESS_CODES = {"failed_deliverability_strictness", "invalid_address", "undeliverable_address"}


class LobSettings(BaseModel):
    """Lob's settings; the two secrets print as `**********`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(
        default="https://api.lob.com", description="Root URL of Lob (or of the sandbox), without /v1."
    )
    api_key: SecretStr = Field(description="Lob API key (test_… or live_…), sent as the Basic auth user.")
    webhook_secret: SecretStr = Field(description="Secret Lob signs webhooks with (Lob-Signature).")
    color: bool = Field(default=False, description="Print in colour (notices are black and white).")
    double_sided: bool = Field(default=False, description="Print on both sides of the page.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Read timeout of one HTTP request.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="Connect timeout.")
    retry_attempts: int = Field(default=4, ge=1, description="Attempts per call, the first included.")
    retry_total_seconds: float = Field(
        default=60.0, gt=0, description="Time budget of one call, waits included."
    )


def _name_line(name: str) -> str:
    """`name` as Lob takes it: at most `NAME_LIMIT` characters, cut at the last space that fits
    (at the limit when none does). Lob refuses a longer one (422), and a notice refused for the
    borrower's name would wait for another address that could never help; the letter itself
    (the PDF) names the borrower in full."""
    name = " ".join(name.split())
    if len(name) <= NAME_LIMIT:
        return name
    cut = name.rfind(" ", 0, NAME_LIMIT + 1)
    return name[: cut if cut > 0 else NAME_LIMIT].rstrip()


def wire_key(key: str) -> str:
    """Our idempotency key as it travels to Lob, in the `Idempotency-Key` header and the
    `metadata[idempotency_key]` value: the key itself when both take it (printable ASCII, which an
    HTTP header needs; no `"` nor `\\`, which Lob's metadata refuses; at most `KEY_LIMIT`
    characters). Otherwise (an account id in Chinese, say) its safe beginning, which keeps the
    installation's prefix, and a digest of the whole: the same key always travels the same way,
    and two keys never share one."""
    safe = next((n for n, c in enumerate(key) if not " " < c <= "~" or c in _UNSAFE), len(key))
    if safe == len(key) <= KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: min(safe, KEY_LIMIT - 33)]}~{digest}"


def address_fields(prefix: str, address: PostalAddress) -> dict[str, str]:
    """`to[name]`, `to[address_line1]`…: an address in Lob's form field names."""
    fields = {
        "name": _name_line(address.name),
        "address_line1": address.line1,
        "address_line2": address.line2,
        "address_city": address.city,
        "address_state": address.state,
        "address_zip": address.postal_code,
        "address_country": address.country,
    }
    return {f"{prefix}[{k}]": v for k, v in fields.items() if v}


def error_from_response(
    response: httpx.Response, *, idempotency_key: str | None = None, letter_id: str | None = None
) -> ProviderError:
    """Translate a non-2xx answer into our error tree (pure: unit-tested with `httpx.MockTransport`)."""
    key = idempotency_key

    def lob_only(error: VendorError) -> ProviderError | None:
        if error.status >= 500 and error.status != 503 and response.headers.get("Retry-After") is not None:
            # Lob asks to come back later: it did not take the request (and would deduplicate anyway).
            return Transient(
                error.reason, retry_after=retry_after(response), code=error.code, idempotency_key=key
            )
        if error.status == 404 and letter_id is not None:
            return LetterNotFound(letter_id, error.reason)
        if error.status == 422 and (error.code in _ADDRESS_CODES or "address" in error.code):
            return InvalidAddress(error.code, error.reason, idempotency_key=key)
        return None

    return vendor_error(
        response,
        idempotency_key=key,
        no_message=f"HTTP {response.status_code} from Lob",
        duplicate_code=None,
        specific=lob_only,
    )


def _tracking(letter_id: str, item: Mapping[str, Any]) -> TrackingEvent | None:
    kind = KIND_OF_NAME.get(str(item.get("name")))
    if kind is None:  # a step of Lob's we do not follow
        return None
    return TrackingEvent(
        letter_id=letter_id,
        kind=kind,
        at=iso_instant(item.get("time") or item["date_created"]),
        event_id=str(item.get("id") or ""),
        vendor_event=str(item.get("name")),
        location=item.get("location") or None,
    )


def letter_from_wire(payload: Mapping[str, Any], idempotency_key: str = "") -> Letter:
    """Our `Letter` from Lob's letter object; KeyError or ValueError if it is not one."""
    letter_id = str(payload["id"])
    events = [e for item in payload.get("tracking_events") or () if (e := _tracking(letter_id, item))]
    mailed = [e.at for e in events if e.kind == "mailed"]
    expected = payload.get("expected_delivery_date")
    metadata = payload.get("metadata") or {}
    return Letter(
        id=letter_id,
        # Ours when we asked by it: the metadata holds it as it travelled (`wire_key`).
        idempotency_key=idempotency_key or str(metadata.get("idempotency_key") or ""),
        status=Letter.furthest(events),
        created_at=iso_instant(payload["date_created"]),
        mailed_at=min(mailed) if mailed else None,
        expected_delivery=date.fromisoformat(str(expected)) if expected else None,
        tracking=events,
        mail_type=mail_type_of(payload.get("extra_service")),
        tracking_number=payload.get("tracking_number") or None,
    )


class LobLettersProvider(VendorClient):
    """One HTTP request per operation over a kept-alive connection; retries capped by the settings."""

    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="lob",
        kind="letters",
        title="Lob print-and-mail letters",
        settings=LobSettings,
        deduplicates=True,
        setup_url="https://docs.lob.com/#tag/Letters",
    )
    settings_model: ClassVar[type[LobSettings]] = LobSettings
    # Lob prints in the US and posts by USPS: a letter to another country "originates in the US and
    # is mailed abroad by the USPS", First Class only, "an additional 5-7 business days", with no
    # certified mail (domestic only) and no registered mail internationally (help.lob.com, Print &
    # Mail: International mail; the API's `extra_service`). Its PDF pages must be 8.5"x11".
    posts_in: ClassVar[frozenset[str] | None] = frozenset({"US"})

    api_root: ClassVar[str] = API_ROOT
    user_agent: ClassVar[str] = "arrears-letters/1"
    settings: LobSettings

    def auth(self) -> httpx.Auth:
        """Lob's scheme: HTTP Basic with the API key as the user and no password."""
        return httpx.BasicAuth(self.settings.api_key.get_secret_value(), "")

    # -- operations ---------------------------------------------------------------------------

    def form(self, request: LetterRequest) -> dict[str, str]:
        """The form fields of `POST /v1/letters` for `request` (the PDF goes as the `file` part)."""
        fields = {
            **address_fields("to", request.recipient),
            **address_fields("from", request.sender),
            "mail_type": "usps_first_class",
            "use_type": "operational",
            "color": str(self.settings.color).lower(),
            "double_sided": str(self.settings.double_sided).lower(),
            "metadata[idempotency_key]": wire_key(request.idempotency_key),
            "metadata[sha256]": request.sha256,
        }
        if (extra := extra_service(request.mail_type)) is not None:
            fields["extra_service"] = extra
        if request.description:
            fields["description"] = request.description
        return fields

    def send(self, request: LetterRequest) -> Letter:
        key = request.idempotency_key
        fields = self.form(request)
        header = wire_key(key)

        def once() -> Letter:
            response = exchange(
                lambda: self._client.post(
                    "/letters",
                    data=fields,
                    files={"file": ("letter.pdf", request.pdf, "application/pdf")},
                    headers={"Idempotency-Key": header},
                ),
                self.info.entry_point,
                idempotency_key=key,
                no_answer="no answer to POST /v1/letters after sending it",
            )
            if response.status_code not in (200, 201):
                raise error_from_response(response, idempotency_key=key)
            try:
                return letter_from_wire(response.json(), key)
            except (ValueError, KeyError, TypeError):  # taken, but the answer is unreadable
                raise UnknownOutcome(
                    f"{self.info.entry_point}: unreadable answer to POST /v1/letters",
                    code="bad_answer",
                    idempotency_key=key,
                ) from None

        return send_deduplicated(once, self.retry_policy, log=log, label=self.info.entry_point, key=key)

    def status(self, letter_id: str) -> Letter:
        """A read, safe to repeat: an unknown outcome is retried like a transient one."""

        def once() -> Letter:
            return read_once(
                lambda: self._client.get(f"/letters/{letter_id}"),
                self.info.entry_point,
                what="GET /v1/letters",
                error=lambda response: error_from_response(response, letter_id=letter_id),
                parse=letter_from_wire,
            )

        return call_with_retries(once, self.retry_policy)

    def find(self, idempotency_key: str) -> Letter | None:
        """`GET /v1/letters` filtered by the key we send as metadata: Lob keeps an idempotency key
        for 24 hours only, the metadata for as long as the letter. Lob lists the newest first."""

        def parse(payload: Any) -> Letter | None:
            found = [letter_from_wire(item, idempotency_key) for item in payload["data"]]
            return min(found, key=lambda letter: letter.created_at) if found else None

        def once() -> Letter | None:
            return read_once(
                lambda: self._client.get(
                    "/letters", params={"metadata[idempotency_key]": wire_key(idempotency_key), "limit": 10}
                ),
                self.info.entry_point,
                what="GET /v1/letters",
                error=error_from_response,
                parse=parse,
            )

        return call_with_retries(once, self.retry_policy)

    def check_callbacks(self) -> None:
        if not self.settings.webhook_secret.get_secret_value():
            raise ConfigError(
                f"{self.info.entry_point}: webhook_secret is empty: letters webhooks cannot be verified"
            )

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> list[TrackingEvent]:
        # The signature covers the timestamp and the body, not the URL: `url` is not needed.
        _hmac.verify(
            self.settings.webhook_secret.get_secret_value(),
            headers,
            body,
            self._clock(),
            signature_header=SIGNATURE_HEADER,
            timestamp_header=TIMESTAMP_HEADER,
        )
        try:
            event = json.loads(body)
            event_type = str(event["event_type"]["id"])
            kind = KIND_OF_EVENT.get(event_type)
            if kind is None:  # letter.created, letter.rendered_pdf…: not a step through the post
                return []
            letter = event.get("body") or {}
            letter_id = str(event.get("reference_id") or letter["id"])
            return [
                TrackingEvent(
                    letter_id=letter_id,
                    kind=kind,
                    at=iso_instant(event["date_created"]),
                    event_id=str(event.get("id") or ""),
                    vendor_event=event_type,
                    location=(event.get("location") or None),
                    idempotency_key=str((letter.get("metadata") or {}).get("idempotency_key") or ""),
                )
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidCallback("Lob webhook is not a letter event", code="body.malformed") from None
